"""The fusion encoder (ViLT; FLAVA's contrastive loss as an option): its ITM + MLM batches, its
losses, its scores in the harness, and its export to transformers' ViltForImageAndTextRetrieval."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViltForImageAndTextRetrieval, ViltProcessor

from tests.conftest import make_tiny_cfg, make_tiny_fusion_cfg
from vlkit import api, export
from vlkit.data import build_dataset
from vlkit.data.scenes import SHAPES, Scenes, ScenesConfig
from vlkit.eval import fusion, harness
from vlkit.eval.embedded import scene_benchmarks
from vlkit.eval.fusion import rerank_similarity
from vlkit.eval.loaders import Benchmark
from vlkit.models.build import build_model, initial_parts, load_model, save_model
from vlkit.models.connectors import grid_coordinates
from vlkit.models.kinds import texts_for
from vlkit.train.fusion import (
    FusionObjective,
    group_token_ids,
    mask_groups,
    mask_tokens,
    pick_negative,
    word_labels,
)
from vlkit.train.loop import make_objective, make_optimizer


@pytest.fixture(scope="module")
def fusion_folder(tmp_path_factory):
    cfg = make_tiny_fusion_cfg()
    folder = tmp_path_factory.mktemp("fusion") / "model"
    save_model(build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data))), cfg, folder)
    return folder


def _samples(cfg, n=6):
    dataset = build_dataset(cfg.data)
    return [(i, dataset[i]) for i in range(n)]


def test_a_batch_holds_true_captions_hard_negatives_and_masked_captions():
    cfg = make_tiny_fusion_cfg()
    model = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)))
    samples = _samples(cfg)
    batch = make_objective(cfg, model).collate(samples)
    b, tk = len(samples), model.tokenizer
    assert batch["pixel_values"].shape == (b, 3, 32, 32)
    assert batch["input_ids"].shape[0] == 3 * b and batch["itm_labels"].tolist() == [1.0] * b + [0.0] * b
    texts = tk.batch_decode(batch["input_ids"], skip_special_tokens=True)
    norm = lambda t: t.lower().replace(" ", "")  # noqa: E731 (the BPE decoder joins pieces)
    others = {norm(c) for _, s in samples for c in s["captions"]}
    for k, (_, sample) in enumerate(samples):
        # (cut at the tiny model's 32 tokens) the true caption is one of the sample's; the
        # negative is one of its hard negatives or another sample's caption
        captions = {norm(c) for c in sample["captions"]}
        edits = {norm(e) for pair in sample["negative_captions"] for e in pair}
        assert any(c.startswith(norm(texts[k])) for c in captions)
        assert any(c.startswith(norm(texts[b + k])) for c in edits | (others - captions))
    masked = batch["input_ids"][2 * b :] == tk.mask_token_id
    labels = batch["mlm_labels"]
    assert masked.any(1).all()  # every masked caption has at least one blank ...
    assert torch.equal(masked, labels != -100)  # ... and the labels are exactly the blanks
    assert torch.equal(labels[masked], batch["input_ids"][:b][masked])  # the true caption's tokens


def test_negatives_follow_the_shares_and_fall_back_when_one_kind_is_missing():
    sample = {"captions": ["a red circle"], "negative_captions": [["a blue circle", "a red square"]]}
    rng = np.random.default_rng(0)
    drawn = [pick_negative(sample, 0, "a green star", [0.5, 0.25, 0.25], rng) for _ in range(400)]
    shares = {t: drawn.count(t) / len(drawn) for t in set(drawn)}
    assert shares["a blue circle"] == pytest.approx(0.5, abs=0.08)
    assert shares["a red square"] == pytest.approx(0.25, abs=0.08)
    assert shares["a green star"] == pytest.approx(0.25, abs=0.08)
    # no other image's caption to use: the colour swap stands in; nothing at all: a named error
    assert pick_negative(sample, 0, None, [0, 0, 1], rng) == "a blue circle"
    with pytest.raises(ValueError, match="sample s1: no negative caption"):
        pick_negative({"key": "s1", "captions": ["x"]}, 0, None, [1, 1, 1], rng)


def test_mask_tokens_never_masks_special_or_padding_tokens():
    ids = torch.tensor([[3, 10, 11, 12, 4, 0], [3, 13, 4, 0, 0, 0]])
    mask = (ids != 0).long()
    out, labels = mask_tokens(ids, mask, 2, [0, 3, 4], 0.5, np.random.default_rng(0))
    assert (out == 2).sum(1).tolist() == [2, 1]  # round(0.5 * 3) and at least one of one word
    assert ((out == 2) <= torch.isin(ids, torch.tensor([10, 11, 12, 13]))).all()


def test_mask_groups_masks_every_word_of_one_group_a_row_contains_and_leaves_the_rest():
    # rows: two colours (20, 21) and two shapes (30, 31); one shape only; no group word at all
    ids = torch.tensor([[3, 20, 30, 21, 31, 4], [3, 10, 31, 4, 0, 0], [3, 10, 11, 4, 0, 0]])
    masked, labels = mask_tokens(ids, (ids != 0).long(), 2, [0, 3, 4], 0.2, np.random.default_rng(0))
    groups = [torch.tensor([20, 21, 22]), torch.tensor([30, 31])]
    out, out_labels = mask_groups(ids, masked, labels, 2, groups, 1.0, np.random.default_rng(0))
    first = (out[0] == 2).nonzero()[:, 0].tolist()
    assert first in ([1, 3], [2, 4])  # every colour, or every shape: never one of each
    assert out_labels[0, first].tolist() == ids[0, first].tolist()
    assert (out_labels[0] != -100).sum() == 2
    assert out[1].tolist() == [3, 10, 2, 4, 0, 0] and out_labels[1].tolist() == [-100] * 2 + [31] + [-100] * 3
    assert torch.equal(out[2], masked[2]) and torch.equal(out_labels[2], labels[2])  # no group word
    kept, kept_labels = mask_groups(ids, masked, labels, 2, groups, 0.0, np.random.default_rng(0))
    assert torch.equal(kept, masked) and torch.equal(kept_labels, labels)  # p = 0: as mask_tokens left it


def test_a_batch_with_word_groups_masks_whole_groups_and_a_group_word_that_is_two_tokens_is_refused():
    cfg = make_tiny_fusion_cfg()
    cfg.model.mlm_word_groups = [["red", "green", "blue"], ["circle", "square"]]
    cfg.model.mlm_group_probability = 1.0
    model = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)))
    samples = _samples(cfg)
    batch = make_objective(cfg, model).collate(samples)
    b, tk = len(samples), model.tokenizer
    groups = group_token_ids(tk, cfg.model.mlm_word_groups)
    checked = 0
    for true, labels in zip(batch["input_ids"][:b], batch["mlm_labels"]):
        present = [g for g in groups if torch.isin(true, g).any()]
        if present:  # exactly the tokens of one group the caption contains
            assert any(torch.equal(labels != -100, torch.isin(true, g)) for g in present)
            checked += 1
    assert checked >= b // 2
    with pytest.raises(ValueError, match="model.mlm_word_groups: 'ultramarine' is"):
        group_token_ids(tk, [["red", "ultramarine"]])
    cfg.model.mlm_word_groups = []
    with pytest.raises(ValueError, match="model.mlm_word_groups is empty"):
        build_model(cfg, texts=["a red circle"])


def test_word_labels_mark_the_words_a_negative_changed_and_skip_pairs_that_do_not_line_up():
    # rows: two true captions, then their negatives (the first: two words changed; the second
    # another caption, one token longer)
    ids = torch.tensor(
        [[3, 10, 11, 12, 4, 0], [3, 13, 14, 4, 0, 0], [3, 15, 11, 16, 4, 0], [3, 13, 17, 18, 4, 0]]
    )
    labels = word_labels(ids, (ids != 0).long(), [0, 3, 4])
    assert labels[0].tolist() == [-1, 1, -1, 1, -1, -1] and labels[2].tolist() == [-1, 0, -1, 0, -1, -1]
    assert (labels[[1, 3]] == -1).all()


def test_word_level_matching_adds_its_loss_and_trains_its_head():
    cfg = make_tiny_fusion_cfg(0.0)
    cfg.model.token_itm_weight = 1.0
    cfg.model.negative_shares = [1.0, 0.0, 0.0]  # colour edits only: words line up
    model = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)))
    objective = FusionObjective(model)
    batch = objective.collate(_samples(cfg))
    assert (batch["word_labels"] == 0).any() and (batch["word_labels"] == 1).any()
    objective.loss(model.train(), batch).backward()
    assert "word_itm_loss" in objective.log_extras() and model.token_match.weight.grad.abs().sum() > 0


def test_grounding_adds_its_loss_on_the_true_captions_object_names():
    cfg = make_tiny_fusion_cfg(0.0)
    model = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)))
    objective = FusionObjective(model)
    samples = _samples(cfg)
    plain = objective.loss(model.eval(), objective.collate(samples))
    cfg.model.grounding_weight = 1.0
    torch.manual_seed(0)
    grounded = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)))
    grounded.load_state_dict(model.state_dict(), strict=False)  # the same weights, plus the head
    objective = FusionObjective(grounded)
    batch = objective.collate(samples)
    b = batch["pixel_values"].shape[0]
    assert batch["grounding_labels"].shape[0] == b and (batch["grounding_labels"] >= 0).any()
    rows = batch["input_ids"][:b].gather(1, batch["grounding_positions"])  # the words marked
    marked = rows[batch["grounding_labels"] >= 0].tolist()
    assert {grounded.tokenizer.decode([t]).strip() for t in marked} <= set(SHAPES)  # "red circle" → circle
    loss = objective.loss(grounded.eval(), batch)
    extras = objective.log_extras()
    assert torch.isclose(loss, plain + extras["grounding_loss"], atol=1e-5)
    loss.backward()
    assert grounded.grounding_head.cells.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("contrastive_weight", [0.0, 0.5])
def test_losses_are_finite_and_flava_adds_the_contrastive_term(contrastive_weight):
    cfg = make_tiny_fusion_cfg(contrastive_weight)
    model = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)))
    objective = FusionObjective(model)
    loss = objective.loss(model.train(), objective.collate(_samples(cfg)))
    loss.backward()
    extras = objective.log_extras()
    assert torch.isfinite(loss) and {"itm_loss", "mlm_loss"} <= set(extras)
    assert ("contrastive_loss" in extras) == (contrastive_weight > 0)
    grads = model.text_projection.weight.grad
    assert (grads is not None and grads.abs().sum() > 0) == (contrastive_weight > 0)


def test_winoground_by_itm_scores_each_pair_with_the_model(fusion_folder):
    model = api.load(fusion_folder, kind="fusion")
    (bench,) = scene_benchmarks(32, 1, 3, 7, 16, ("winoground",))
    (result,) = harness.evaluate_benchmarks(model, [bench])
    e = bench.examples[0]
    direct = model.match([e["images"][0], e["images"][1]], [e["captions"][1], e["captions"][1]])
    assert result.predictions[0]["scores"][1] == pytest.approx(direct.tolist(), abs=1e-4)
    assert set(result.metrics) == {"wino_text", "wino_image", "wino_group"}
    assert "retrieval" in harness.OPT_IN["fusion"] and "retrieval" in harness.supported_tasks(model)


def test_masked_winoground_blanks_every_listed_word_and_sums_each_captions_own_words_log_probs(fusion_folder):
    model = api.load(fusion_folder, kind="fusion")
    (bench,) = scene_benchmarks(32, 2, 2, 7, 8, ("winoground",))
    colours = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "white"]
    result = fusion.masked_winoground(model, bench, colours)
    e = bench.examples[0]
    text, found = fusion.blank_out(e["captions"][1], colours, model.MASK)
    assert text == fusion.blank_out(e["captions"][0], colours, model.MASK)[0]  # one text for both
    assert len(found) == 2 and text.count(model.MASK) == 2
    (lp,) = model.blank_log_probs([e["images"][0]], [text], colours)
    direct = lp[0, colours.index(found[0])] + lp[1, colours.index(found[1])]
    assert result.predictions[0]["scores"][1][0] == pytest.approx(direct, abs=1e-4)
    assert set(result.metrics) == {"wino_text", "wino_image", "wino_group"}
    assert fusion.blank_out("A Red circle, a red square.", ["red"], "_") == (
        "A _ circle, a _ square.",
        ["red", "red"],
    )


def test_masked_winoground_rewards_reading_the_colours_off_the_image_and_not_guessing_from_the_text():
    class Reader:  # an image is the tuple of its objects' colours, in caption order
        MASK = "[MASK]"

        def __init__(self, looks: bool):
            self.looks = looks

        def blank_log_probs(self, images, texts, choices):
            out = []
            for image in images:
                seen = image if self.looks else sorted(image)  # sorted: which colours, not where
                out.append(np.log(np.array([[0.9 if c == w else 0.1 for c in choices] for w in seen])))
            return out

    examples = [
        {"id": "0", "captions": ["a red circle and a blue star", "a blue circle and a red star"],
         "images": [("red", "blue"), ("blue", "red")]},
    ]  # fmt: skip
    bench = Benchmark("swap", "winoground", examples)
    assert fusion.masked_winoground(Reader(True), bench, ["red", "blue"]).metrics["wino_group"] == 1.0
    assert fusion.masked_winoground(Reader(False), bench, ["red", "blue"]).metrics["wino_group"] == 0.0


class _Dual:
    """A stand-in dual encoder: a fixed random unit vector per image (by identity) and per text."""

    def __init__(self, scale: float):
        self._scale, self.rng, self.vectors = scale, np.random.default_rng(0), {}

    def _vector(self, key):
        if key not in self.vectors:
            v = self.rng.normal(size=8)
            self.vectors[key] = v / np.linalg.norm(v)
        return self.vectors[key]

    def embed_images(self, images):
        return np.stack([self._vector(id(image)) for image in images])

    def embed_texts(self, texts):
        return np.stack([self._vector(text) for text in texts])

    def scale(self):
        return self._scale


def test_winoground_with_a_dual_encoder_adds_its_logit_to_each_pairs_itm(fusion_folder):
    model = api.load(fusion_folder, kind="fusion")
    (bench,) = scene_benchmarks(32, 1, 3, 7, 8, ("winoground",))
    dual = _Dual(scale=10.0)
    result = fusion.winoground(model, bench, dual=dual)
    e = bench.examples[0]
    itm = model.match([e["images"][0], e["images"][1]], [e["captions"][1], e["captions"][1]])
    cosine = dual.embed_images(e["images"]) @ dual.embed_texts([e["captions"][1]])[0]
    assert result.predictions[0]["scores"][1] == pytest.approx((itm + 10.0 * cosine).tolist(), abs=1e-4)
    alone = fusion.winoground(model, bench)
    assert alone.predictions[0]["scores"][1] == pytest.approx(itm.tolist(), abs=1e-4)


class _Matcher:
    """A stand-in model whose ITM logit is +1 exactly on the (image, text) pairs it is told are true."""

    def __init__(self, accepts):
        self.accepts = accepts

    def match(self, images, texts, batch_size=64):
        return np.array([1.0 if self.accepts(i, t) else -1.0 for i, t in zip(images, texts)])


def test_matching_by_kind_scores_each_kind_of_pair_and_object_count():
    world = Scenes(ScenesConfig(image_size=32, min_objects=1, max_objects=3, seed=5))
    scenes = [world.scene(i) for i in range(24)]
    truths = {id(s.image): s.captions[0] for s in scenes}
    perfect = fusion.matching_by_kind(_Matcher(lambda image, t: truths[id(image)] == t), scenes)
    assert set(perfect.values()) == {1.0} and len(perfect) == 12  # 4 kinds x 1-3 objects
    yes = fusion.matching_by_kind(_Matcher(lambda image, t: True), scenes)  # accepts every pair
    assert all(v == (1.0 if k.startswith("true caption") else 0.0) for k, v in yes.items())


def test_fill_mask_answers_from_the_choices_and_refuses_a_text_without_a_blank(fusion_folder):
    model = api.load(fusion_folder)
    image = np.zeros((32, 32, 3), np.uint8)
    answers = model.fill_mask([image, image], ["a [MASK] circle", "a red [MASK]"], ["red", "circle"])
    assert set(answers) <= {"red", "circle"}
    with pytest.raises(ValueError, match="a text has no \\[MASK\\]"):
        model.fill_mask([image], ["a red circle"])


def test_export_to_vilt_for_image_and_text_retrieval_gives_the_same_logits(fusion_folder, tmp_path):
    out = export.export(fusion_folder, tmp_path / "vilt")
    hf = ViltForImageAndTextRetrieval.from_pretrained(out).eval()
    processor = ViltProcessor.from_pretrained(out)
    ours = api.load(fusion_folder)
    scenes = build_dataset(ours.cfg.data)
    images = [scenes[i]["image"] for i in range(4)]
    texts = [scenes[i]["captions"][0] for i in (0, 1, 1, 3)]
    inputs = processor(images=images, text=texts, return_tensors="pt", padding=True)
    pixels = ours.model.preprocess(images)
    torch.testing.assert_close(inputs["pixel_values"], pixels, atol=1e-5, rtol=0)  # same pixels
    with torch.no_grad():
        theirs = hf(**inputs).logits[:, 0].numpy()
    np.testing.assert_allclose(theirs, ours.match(images, texts), atol=1e-4)


def test_rerank_orders_a_shortlist_by_itm_ahead_of_every_other_image():
    similarity = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.3], [0.0, 0.9]])  # (4 images, 2 texts)
    top = np.argsort(-similarity, axis=0, kind="stable")[:2]  # text 0: images 0, 1; text 1: 3, 2
    itm = np.array([[-5.0, 1.0], [3.0, 2.0]])  # (k, texts): ITM prefers image 1 for text 0, 2 for 1
    reranked = rerank_similarity(similarity, itm, top)
    assert np.argsort(-reranked[:, 0]).tolist()[:2] == [1, 0]
    assert np.argsort(-reranked[:, 1]).tolist()[:2] == [2, 3]
    assert reranked[[0, 1], 0].min() > reranked[[2, 3], 0].max()  # the shortlist stays ahead


def test_rerank_with_a_weight_adds_the_dual_encoders_similarity_to_the_itm_logit():
    similarity = np.array([[0.9], [0.8], [0.1]])  # (3 images, 1 text)
    top = np.array([[0], [1]])  # the shortlist: images 0, 1
    itm = np.array([[-0.05], [0.0]])  # ITM alone prefers image 1 by a hair
    assert np.argmax(rerank_similarity(similarity, itm, top)[:, 0]) == 1
    combined = rerank_similarity(similarity, itm, top, weight=1.0)  # BLIP: ITM + cosine
    assert np.argsort(-combined[:, 0]).tolist() == [0, 1, 2]
    assert combined[0, 0] - combined[1, 0] == pytest.approx((0.9 - 0.05) - (0.8 + 0.0))


def test_search_hits_rerank_by_the_fusion_models_match(fusion_folder, tmp_path):
    model = api.load(fusion_folder)
    scenes = build_dataset(model.cfg.data)
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(scenes[i]["image"]).save(paths[-1])
    query = scenes[2]["captions"][0]
    reranked = model.rerank(query, [(p, 0.5) for p in paths], k=3)
    scores = model.match(paths, [query] * 4)
    assert [key for key, _ in reranked] == [paths[i] for i in np.argsort(-scores, kind="stable")[:3]]
    assert [s for _, s in reranked] == pytest.approx(sorted(scores, reverse=True)[:3], abs=1e-5)


def test_negative_shares_that_draw_nothing_are_refused_naming_the_field():
    cfg = make_tiny_fusion_cfg()
    cfg.model.negative_shares = [0.0, 0.0]
    with pytest.raises(ValueError, match=r"model.negative_shares: \[0.0, 0.0\]; give 3 shares"):
        build_model(cfg, texts=["a red circle"])


def test_serve_refuses_a_fusion_model_saying_what_uses_it(fusion_folder):
    from vlkit.serve.kinds import SERVED_KINDS

    model = api.load(fusion_folder)
    with pytest.raises(ValueError, match="fusion encoders are not served yet .*match / .fill_mask"):
        SERVED_KINDS["fusion"].wrap(model, {})


# ------------------------------------------------ image embedders: ViLT's patches, a conv stem, a CLIP tower
@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny CLIP with a conv stem (batch norm in it), its weights random but its own."""
    cfg = make_tiny_cfg()
    cfg.model.vision_stem = "conv"
    folder = tmp_path_factory.mktemp("clip") / "model"
    save_model(build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data))), cfg, folder)
    return folder


def _clip_fusion_cfg(clip_folder, freeze: bool = True):
    cfg = make_tiny_fusion_cfg()
    cfg.model.image_embedder, cfg.model.vision_init, cfg.model.freeze_vision = (
        "clip",
        str(clip_folder),
        freeze,
    )
    return cfg


def test_a_clip_embedder_feeds_the_clip_towers_patch_tokens_projected_and_keeps_a_frozen_tower(clip_folder):
    cfg = _clip_fusion_cfg(clip_folder)
    model = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)), **initial_parts(cfg))
    clip, _ = load_model(clip_folder)
    embedder = model.vilt.embeddings.patch_embeddings.projection
    tower = clip.image_tower.state_dict()
    assert {k: torch.equal(v, tower[k]) for k, v in embedder.tower.state_dict().items()} == dict.fromkeys(
        tower, True
    )
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        grid = clip.image_tower.model(pixel_values=pixels).last_hidden_state[:, 1:]  # (2, 16, 16): no CLS
        expected = embedder.proj(embedder.norm(grid))  # (2, 16, D)
        tokens = model.vilt.embeddings.patch_embeddings(pixels).flatten(2).transpose(1, 2)  # row by row
    torch.testing.assert_close(tokens, expected)
    # a training step moves the projection and the transformer, never the frozen tower (nor its BN statistics)
    objective = FusionObjective(model)
    model.train()
    assert not embedder.tower.training
    optimizer, before = make_optimizer(model, cfg), embedder.proj.weight.detach().clone()
    objective.loss(model, objective.collate(_samples(cfg))).backward()
    optimizer.step()
    assert all(torch.equal(v, tower[k]) for k, v in embedder.tower.state_dict().items())
    assert not torch.equal(embedder.proj.weight, before)


def _assert_reloads_with_the_same_logits(model, cfg, folder):
    save_model(model, cfg, folder)
    reloaded, _ = load_model(folder)
    batch = FusionObjective(model).collate(_samples(cfg, 2))
    args = (batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(*args)[0], model(*args)[0])


def test_patch_coordinates_append_each_patchs_column_and_row_to_its_clip_token(clip_folder, tmp_path):
    cfg = _clip_fusion_cfg(clip_folder)
    cfg.model.patch_coordinates = True
    model = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)), **initial_parts(cfg)).eval()
    clip, _ = load_model(clip_folder)
    embedder = model.vilt.embeddings.patch_embeddings.projection
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        grid = embedder.norm(
            clip.image_tower.model(pixel_values=pixels).last_hidden_state[:, 1:]
        )  # (2, 16, 16)
        where = grid_coordinates(16).expand(2, -1, -1)  # (2, 16, 32): a 4 x 4 grid, row by row
        expected = embedder.proj(torch.cat([grid, where], -1))
        torch.testing.assert_close(embedder.tokens(pixels), expected)
    assert embedder.proj.in_features == grid.shape[-1] + 32
    _assert_reloads_with_the_same_logits(model, cfg, tmp_path / "model")


@pytest.mark.parametrize("embedder", ["conv", "clip"])
def test_an_embedder_reloads_with_the_same_logits_and_refuses_the_vilt_export_saying_why(
    embedder, clip_folder, tmp_path
):
    cfg = _clip_fusion_cfg(clip_folder, freeze=False) if embedder == "clip" else make_tiny_fusion_cfg()
    cfg.model.image_embedder = embedder
    model = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)), **initial_parts(cfg)).eval()
    _assert_reloads_with_the_same_logits(model, cfg, tmp_path / "model")
    with pytest.raises(
        ValueError, match=f"model.image_embedder={embedder} .*train with model.image_embedder=patch"
    ):
        export.export(tmp_path / "model", tmp_path / "vilt")


@pytest.mark.parametrize(
    ("sets", "error"),
    [
        ({"image_embedder": "resnet"}, r"model.image_embedder: 'resnet'; valid: patch, conv, clip"),
        ({"image_embedder": "clip"}, r"image_embedder: clip .* set model.vision_init"),
        (
            {"vision_init": "runs/tour"},
            r"model.vision_init / freeze_vision / patch_coordinates are for model.image_embedder: clip",
        ),
        (
            {"image_embedder": "clip", "vision_init": "CLIP", "patch_size": 4},
            r"patch_size: 32 / 4, but .* 8-px patches",
        ),
    ],
)
def test_an_image_embedder_that_cannot_work_is_refused_naming_the_field(sets, error, clip_folder):
    cfg = make_tiny_fusion_cfg()
    for key, value in sets.items():
        setattr(cfg.model, key, str(clip_folder) if value == "CLIP" else value)
    with pytest.raises(ValueError, match=error):
        build_model(cfg, texts=["a red circle"], **initial_parts(cfg))
