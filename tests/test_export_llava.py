"""LLaVA export: the exported LlavaForConditionalGeneration + LlavaProcessor, loaded offline, give
vlkit's prompt ids, pixels, logits and greedy tokens on the same images and chat prompts.

The tiny trained run decodes one token over and over; a seeded perturbation of its weights
makes greedy decoding vary token by token (and end some rows early), a sharper parity check.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

from tests.conftest import make_tiny_vlm_cfg
from vlkit.cli import main as cli_main
from vlkit.export import export, export_llava
from vlkit.generation import Decoding, GenerativeModel
from vlkit.models.build import build_model, load_model, save_model
from vlkit.train.checkpoint import latest_checkpoint

QUESTIONS = [
    "Describe the image in one sentence.",
    "What color is the circle? Answer with a single word or number.",
    "How many shapes are there?",
    "Is the star left of the square?",
]
TEXTS = ["a small red circle left of a large blue star.", "What color is the circle? red"] * 30


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen), alpha=0.3)
    return model


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Non-square sizes: the processors resize and crop too."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (30 + 7 * k, 44 - 3 * k, 3), dtype=np.uint8) for k in range(n)]


def conversations(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"<image>\n{QUESTIONS[k % len(QUESTIONS)]}"}] for k in range(n)]


@pytest.fixture(scope="module", params=["mlp2x_gelu", "linear", "lora", "words", "layer-2"])
def exported(request, tiny_vlm_run, tmp_path_factory):
    """(vlkit GenerativeModel, LLaVA model, processor) of one model, exported and reloaded."""
    tmp = tmp_path_factory.mktemp(f"llava-{request.param}")
    if request.param == "mlp2x_gelu":  # the trained fixture run
        model, cfg = load_model(latest_checkpoint(tiny_vlm_run))
    else:  # a linear connector, LoRA adapters (merged into the LM by the export), MiniLM's words,
        # or a connector that reads the tower's layer before the last (LLaVA's vision_feature_layer)
        cfg = make_tiny_vlm_cfg("linear" if request.param == "linear" else "mlp2x_gelu")
        cfg.vlm.vision_feature_layer = -2 if request.param == "layer-2" else -1
        if request.param == "lora":
            cfg.vlm.peft, cfg.vlm.freeze_lm = "lora", True
        if request.param == "words":  # the projected word table is exported as one matrix
            cfg.vlm.language_model = "gpt-tiny-words"
        model = build_model(cfg, texts=TEXTS)
    save_model(perturbed(model), cfg, tmp / "vlkit")
    out = export(tmp / "vlkit", tmp / "hf")  # the format follows the model's kind: llava
    hf = LlavaForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    vlkit_model, _ = load_model(tmp / "vlkit")
    return GenerativeModel(vlkit_model, cfg), hf, processor


def processor_inputs(processor, gm: GenerativeModel, convs, pics) -> dict:
    texts = [gm.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
    return processor(images=[Image.fromarray(p) for p in pics], text=texts, padding=True, return_tensors="pt")


def test_processor_gives_vlkit_inputs(exported):
    gm, hf, processor = exported
    pics, convs = images(3), conversations(3)
    got = processor_inputs(processor, gm, convs, pics)
    want = gm.encode_prompts(convs)
    assert torch.equal(got["input_ids"], want["input_ids"])  # <image> → model.image_tokens, left-padded
    assert torch.equal(got["attention_mask"], want["attention_mask"])
    assert (got["input_ids"] == hf.config.image_token_id).sum() == 3 * gm.model.image_tokens
    torch.testing.assert_close(got["pixel_values"], gm.model.vision.preprocess(pics), atol=1e-6, rtol=0)
    # HF chat messages with image parts render as vlkit's split_messages renders them
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTIONS[0]}]}]
    assert processor.apply_chat_template(
        parts, add_generation_prompt=True
    ) == gm.tokenizer.apply_chat_template(convs[0], tokenize=False, add_generation_prompt=True)


def test_logits_match(exported):
    gm, hf, processor = exported
    pics, convs = images(3, seed=1), conversations(3)
    batch = processor_inputs(processor, gm, convs, pics)
    with torch.no_grad():
        got = hf(**batch).logits
        want = gm.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=gm.model.vision.preprocess(pics),
        ).logits
    real = batch["attention_mask"].bool()  # padding positions are never read
    # A merged LoRA computes W + s*BA in one matmul instead of two: float32 rounding, ~1e-4 here
    # with the large perturbed adapters; greedy tokens stay identical (next test). So does the
    # exported word table (gpt-tiny-words): projected as one matrix, not row by row as looked up.
    tolerance = (
        2e-4 if gm.cfg.vlm.peft == "lora" else 1e-4 if gm.cfg.vlm.language_model == "gpt-tiny-words" else 1e-5
    )
    assert (got[real] - want[real]).abs().max() <= tolerance


@pytest.mark.parametrize("n", [1, 4])
def test_greedy_generation_is_identical(exported, n):
    gm, hf, processor = exported
    pics, convs = images(n, seed=2 + n), conversations(n)
    decoding = Decoding(max_new_tokens=12)
    batch = processor_inputs(processor, gm, convs, pics)
    with torch.no_grad():
        got = hf.generate(**batch, **decoding.generate_kwargs())[:, batch["input_ids"].shape[1] :]
    want = gm.model.generate(
        **gm.encode_prompts(convs),
        pixel_values=gm.model.vision.preprocess(pics),
        **decoding.generate_kwargs(),
    )
    assert torch.equal(got, want)
    assert len(set(got[0].tolist())) > 1  # the check means something: not one token repeated
    texts = [t.strip() for t in processor.batch_decode(got, skip_special_tokens=True)]
    assert texts == gm.generate(convs, pics, decoding)


def test_what_cannot_be_exported_is_named(tiny_run, tmp_path):
    cfg = make_tiny_vlm_cfg("qformer")
    save_model(build_model(cfg, texts=TEXTS), cfg, tmp_path / "qformer")
    with pytest.raises(
        ValueError,
        match=r"linear or mlp2x_gelu connector without .*; this model has 'vit-tiny' \+ 'qformer'$",
    ):
        export_llava(tmp_path / "qformer", tmp_path / "out")
    placed = make_tiny_vlm_cfg()
    placed.vlm.connector_positions = True
    save_model(build_model(placed, texts=TEXTS), placed, tmp_path / "placed")
    with pytest.raises(ValueError, match=r"features alone.*'mlp2x_gelu' with positions$"):
        export_llava(tmp_path / "placed", tmp_path / "out3")
    tagged = make_tiny_vlm_cfg()
    tagged.vlm.connector_coordinates = True
    save_model(build_model(tagged, texts=TEXTS), tagged, tmp_path / "tagged")
    with pytest.raises(ValueError, match=r"features alone.*'mlp2x_gelu' with coordinates$"):
        export_llava(tmp_path / "tagged", tmp_path / "out4")
    with pytest.raises(ValueError, match="contrastive model; LLaVA export needs a generative one"):
        export_llava(tiny_run, tmp_path / "out2")


def test_cli_export_llava(tiny_vlm_run, tmp_path, capsys):
    cli_main(["export", str(tiny_vlm_run), "--format", "llava", "--out", str(tmp_path / "hf")])
    assert "exported to" in capsys.readouterr().out
    assert LlavaForConditionalGeneration.from_pretrained(tmp_path / "hf").config.image_seq_length == 16
