"""What the benchmark scripts share (they run as `python benchmarks/NAME.py`, so this imports as `common`)."""

# A model small enough that a --smoke run builds, exports and times everything in seconds.
SMOKE_MODEL = [
    "model.embed_dim=32",
    "model.vision_width=32",
    "model.vision_layers=1",
    "model.vision_heads=2",
    "model.text_width=32",
    "model.text_layers=1",
    "model.text_heads=2",
    "model.vocab_size=256",
]

# The generative benchmarks' smoke model: recipes/llava-scenes.yaml shrunk.
SMOKE_VLM = [
    "model.image_size=32",
    "model.vision_width=32",
    "model.vision_layers=1",
    "model.vision_heads=2",
    "vlm.lm_width=32",
    "vlm.lm_layers=1",
    "vlm.lm_heads=2",
    "vlm.lm_vocab_size=300",
]
