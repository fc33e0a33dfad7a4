"""The text-prompted segmenter (CLIPSeg): prompts and targets, the frozen CLIP, `model.segment`,
`vlkit segment`, the segmentation task beside the CLIP alone, and the CLIPSeg export's parity."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import make_tiny_segmenter_cfg
from vlkit import api, export, metrics
from vlkit.data import build_dataset
from vlkit.eval.embedded import scene_benchmarks
from vlkit.eval.harness import evaluate_benchmarks
from vlkit.eval.segmentation import BASELINE
from vlkit.models.build import build_model, save_model
from vlkit.models.kinds import texts_for
from vlkit.serve.kinds import SERVED_KINDS
from vlkit.train.loop import make_objective, make_optimizer
from vlkit.train.segmentation import pick_prompt


@pytest.fixture(scope="module")
def tiny_segmenter(tmp_path_factory):
    """(folder, cfg) of an untrained tiny segmenter (patch stem: exportable)."""
    cfg = make_tiny_segmenter_cfg()
    model = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)))
    folder = tmp_path_factory.mktemp("segmenter") / "model"
    save_model(model, cfg, folder)
    return folder, cfg


def test_prompts_name_the_target_object_and_say_the_size_when_another_shares_colour_and_shape():
    objects = [
        {"color": "red", "shape": "circle", "size": "small"},
        {"color": "red", "shape": "circle", "size": "large"},
        {"color": "blue", "shape": "star", "size": "large"},
    ]
    for seed in range(40):
        text, k = pick_prompt(objects, absent=0.0, rng=np.random.default_rng(seed))
        o = objects[k]
        assert text.endswith(f"{o['color']} {o['shape']}")
        if k < 2:  # twins by colour and shape: only the size tells them apart
            assert o["size"] in text.split()
    for seed in range(10):
        text, k = pick_prompt(objects, absent=1.0, rng=np.random.default_rng(seed))
        assert k == -1 and not any(text.endswith(f"{o['color']} {o['shape']}") for o in objects)


def test_targets_are_the_prompted_objects_masks_and_only_the_decoder_learns():
    cfg = make_tiny_segmenter_cfg()
    dataset = build_dataset(cfg.data)
    model = build_model(cfg, texts=texts_for(cfg, dataset))
    objective = make_objective(cfg, model)
    samples = [(i, dataset[i]) for i in range(6)]
    batch = objective.collate(samples)
    assert batch["masks"].shape == (6, 32, 32) and batch["pixel_values"].shape == (6, 3, 32, 32)
    areas = {int(o["mask"].sum()) for _, s in samples for o in s["objects"]} | {0}
    assert all(int(m.sum()) in areas for m in batch["masks"])  # each target is one object's mask (or empty)
    clip_before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    optimizer = make_optimizer(model, cfg)
    objective.loss(model.train(), batch).backward()
    optimizer.step()
    assert all(torch.equal(v, model.clip.state_dict()[k]) for k, v in clip_before.items())
    assert not all(torch.equal(v, model.decoder.state_dict()[k]) for k, v in decoder_before.items())
    assert not model.clip.training  # a frozen CLIP's dropout stays off in training


def test_a_source_without_masks_is_refused_naming_the_source_to_use():
    cfg = make_tiny_segmenter_cfg()
    cfg.data.sources[0].kind = "scenes-boxes"
    dataset = build_dataset(cfg.data)
    objective = make_objective(cfg, build_model(cfg, texts=texts_for(cfg, dataset)))
    with pytest.raises(ValueError, match="no objects with masks; a segmenter trains on `scenes-masks`"):
        objective.collate([(0, dataset[0])])


def test_segment_gives_a_mask_per_image_at_its_own_size(tiny_segmenter):
    folder, _ = tiny_segmenter
    model = api.load(folder, kind="segmenter")
    wide = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    mask = model.segment(wide, "a red circle", threshold=0.0)  # every probability passes 0
    assert mask.dtype == bool and mask.shape == (32, 48)
    assert mask[:, 8:40].all() and not mask[:, :8].any() and not mask[:, 40:].any()  # the centre crop
    masks = model.segment([wide, wide[:, :32]], ["red circle", "blue star"])
    assert [m.shape for m in masks] == [(32, 48), (32, 32)]
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        model.segment([wide, wide], ["red circle"])


def test_segmentation_task_scores_miou_beside_the_clip_alone(tiny_segmenter):
    folder, cfg = tiny_segmenter
    model = api.load(folder, kind="segmenter")
    (bench,) = scene_benchmarks(32, 1, 3, 123, 6, ("segmentation",))
    (result,) = evaluate_benchmarks(model, [bench])
    versus = result.breakdowns[f"mIoU vs {BASELINE}"]
    assert result.metrics["mIoU"] == versus["model"] and 0 <= versus[BASELINE] <= 1
    assert len(result.predictions) == len(bench.examples)

    class Oracle:  # the true masks: mIoU 1, the baseline unchanged
        def __init__(self, truth):
            self.truth, self.model = truth, model

        def segment(self, images, phrases):
            return [self.truth[p] for p in phrases]

        def mask_probabilities(self, images, phrases):
            raise AssertionError("not used by the task")

        def clip_similarity_masks(self, images, phrases):
            return model.clip_similarity_masks(images, phrases)

    unique = [e for e in bench.examples if [x["phrase"] for x in bench.examples].count(e["phrase"]) == 1]
    bench.examples[:] = unique
    (oracle,) = evaluate_benchmarks(Oracle({e["phrase"]: e["mask"] for e in unique}), [bench])
    assert oracle.metrics["mIoU"] == 1.0


def test_clip_alone_baseline_keeps_the_patches_most_like_the_prompt(tiny_segmenter):
    folder, _ = tiny_segmenter
    model = api.load(folder, kind="segmenter")
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    (mask,) = model.clip_similarity_masks([image], ["a red circle"])
    blocks = mask.reshape(4, 8, 4, 8).transpose(0, 2, 1, 3).reshape(16, 64)
    assert mask.any() and not mask.all()  # the best patch is in, the worst out
    assert all(b.all() or not b.any() for b in blocks)  # decided patch by patch


def test_export_to_clipseg_gives_the_same_logits(tiny_segmenter, tmp_path):
    from transformers import CLIPProcessor, CLIPSegForImageSegmentation

    folder, cfg = tiny_segmenter
    out = export.export(folder, tmp_path / "hf")
    hf = CLIPSegForImageSegmentation.from_pretrained(out).eval()
    processor = CLIPProcessor.from_pretrained(out)
    ours = api.load(folder, kind="segmenter")
    images = [np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in range(3)]
    prompts = ["a red circle", "the large blue star", "green square"]
    inputs = processor(text=prompts, images=images, padding=True, return_tensors="pt")
    with torch.inference_mode():
        theirs = hf(**inputs).logits
        mine = ours.model(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])
    torch.testing.assert_close(theirs, mine, rtol=1e-4, atol=1e-4)
    probabilities = ours.mask_probabilities(images, prompts)
    torch.testing.assert_close(
        theirs.sigmoid(), torch.from_numpy(np.stack(probabilities)), rtol=1e-4, atol=1e-4
    )


def test_a_conv_stem_segmenter_is_refused_by_the_export_saying_why(tmp_path):
    cfg = make_tiny_segmenter_cfg()
    cfg.model.vision_stem = "conv"
    save_model(build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data))), cfg, tmp_path / "m")
    with pytest.raises(ValueError, match="export to CLIPSeg: this vision tower has a convolutional stem"):
        export.export(tmp_path / "m", tmp_path / "out")


def test_a_refined_segmenter_is_refused_by_the_export_naming_the_option(tmp_path):
    cfg = make_tiny_segmenter_cfg()  # the patch stem: only the refinement stands in the way
    cfg.segmenter.refine = "pixels"
    save_model(build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data))), cfg, tmp_path / "m")
    with pytest.raises(
        ValueError, match="segmenter.refine='pixels'.* CLIPSegForImageSegmentation has no place for"
    ):
        export.export(tmp_path / "m", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_unknown_refinement_is_refused_naming_the_valid_ones():
    cfg = make_tiny_segmenter_cfg()
    cfg.segmenter.refine = "crf"
    with pytest.raises(ValueError, match="segmenter.refine: 'crf'; valid: 'none' .* or 'pixels'"):
        build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data)))


def _fit_one_batch(refine: str, steps: int = 30, images: int = 8) -> tuple[float, float]:
    """A tiny segmenter fitted to one batch of scenes: (its mIoU on that batch before, after)."""
    cfg = make_tiny_segmenter_cfg()
    cfg.segmenter.refine = refine
    dataset = build_dataset(cfg.data)
    model = build_model(cfg, texts=texts_for(cfg, dataset))
    objective = make_objective(cfg, model)
    batch = objective.collate([(i, dataset[i]) for i in range(images)])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def miou() -> float:
        with torch.inference_mode():
            logits = model.eval()(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        return metrics.mean_iou((logits > 0).numpy(), batch["masks"].bool().numpy())

    before = miou()
    for _ in range(steps):
        optimizer.zero_grad()
        objective.loss(model.train(), batch).backward()
        optimizer.step()
    return before, miou()


def test_the_pixel_refinement_starts_as_the_decoder_and_learns_edges_the_token_grid_cannot():
    plain_before, plain = _fit_one_batch("none")
    refined_before, refined = _fit_one_batch("pixels")
    assert refined_before == plain_before  # its last layer starts at zero: the decoder's mask, unchanged
    # 4 × 4 tokens for 32-px scenes: the decoder alone barely draws them; from the pixels, most of each mask
    assert refined > 0.4 and refined > plain + 0.2, (plain, refined)


def test_the_refinement_passes_the_decoders_gradient_through_unchanged():
    """Deep supervision: the refinement reads the decoder's mask as an input only (the gradient
    reaching the decoder through it is the residual's identity), and the objective adds the
    decoder's own mask loss, so the decoder learns which object as it would alone."""
    from vlkit.models.segmenter import PixelRefiner

    torch.manual_seed(0)
    refiner = PixelRefiner(8)
    torch.nn.init.normal_(refiner.out.weight)  # a trained refinement: its correction depends on the mask
    logits = torch.randn(2, 16, 16, requires_grad=True)
    refined = refiner(torch.randn(2, 3, 16, 16), logits)
    assert not torch.allclose(refined, logits)
    refined.square().sum().backward()
    assert torch.allclose(logits.grad, 2 * refined.detach())  # d(refined)/d(logits) = identity

    cfg = make_tiny_segmenter_cfg()
    cfg.segmenter.refine = "pixels"
    dataset = build_dataset(cfg.data)
    model = build_model(cfg, texts=texts_for(cfg, dataset))
    objective = make_objective(cfg, model)
    batch = objective.collate([(i, dataset[i]) for i in range(4)])
    with torch.no_grad():
        refined, coarse = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], True)
        both = objective._mask_loss(refined, batch["masks"]) + objective._mask_loss(coarse, batch["masks"])
        assert torch.allclose(objective.loss(model, batch), both)


def test_serve_refuses_a_segmenter_saying_what_uses_it(tiny_segmenter):
    folder, _ = tiny_segmenter
    with pytest.raises(ValueError, match="segmenters are not served yet .*vlkit segment"):
        SERVED_KINDS["segmenter"].wrap(api.load(folder), {})


def test_vlkit_segment_writes_the_mask_the_overlay_and_a_summary(tiny_segmenter, tmp_path):
    folder, _ = tiny_segmenter
    image = tmp_path / "scene.png"
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(image)
    done = subprocess.run(
        [sys.executable, "-m", "vlkit", "segment", str(folder), str(image), "--prompt", "the large green triangle",
         "--threshold", "0", "--out", str(tmp_path / "out" / "scene")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    summary = json.loads((tmp_path / "out" / "scene.json").read_text())
    assert printed["json"] == str(tmp_path / "out" / "scene.json")
    assert summary["prompt"] == "the large green triangle" and summary["pixels"] == 32 * 32
    assert summary["box"] == [0, 0, 32, 32]
    mask = np.asarray(Image.open(summary["mask"]))
    assert mask.shape == (32, 32) and (mask == 255).all()
    assert Image.open(summary["overlay"]).size == (128, 128)
