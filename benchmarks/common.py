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
