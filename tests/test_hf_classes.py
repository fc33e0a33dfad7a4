"""transformers' VLM classes through vlkit's task API, `vlkit eval` and the task commands.

Each class is a tiny randomly initialised checkpoint built here from a config (hidden 32, one
layer, 32 px images), saved with a processor whose tokenizer comes from a small word list, so
nothing is downloaded. Every wrapper's outputs are compared with calling the transformers model
directly on the same inputs, and `vlkit eval` on scenes gives the task's metrics.
"""

import json

import numpy as np
import pytest
import torch

import vlkit
from vlkit import cli
from vlkit.eval.run import run_eval
from vlkit.models import hf_models

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "red", "blue", "green"]
WORDS += ["circle", "square", "star", "triangle", "what", "colour", "is", "the", "?", "yes", "no", "."]
WORDS += ["how", "many", "shapes", "are", "there", "question:", "answer:", "1", "2", "3", "left", "right"]
SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
VISION = SMALL | {"image_size": 32, "patch_size": 8}
TEXT = SMALL | {"vocab_size": len(WORDS), "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
SQUARE = {"height": 32, "width": 32}


def _tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})


def _images(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 30 + 4 * i, 3), dtype=np.uint8) for i in range(n)]


def _save(folder, model, processor):
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _build(name: str, folder):
    """The tiny checkpoint of transformers class `name` in `folder`."""
    import transformers as T

    torch.manual_seed(0)
    tok = _tokenizer()
    if name == "CLIPModel":
        cfg = T.CLIPConfig(
            text_config=TEXT | {"max_position_embeddings": 16}, vision_config=VISION, projection_dim=16
        )
        image = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=SQUARE)
        proc = T.CLIPProcessor(image_processor=image, tokenizer=tok)
    elif name == "SiglipModel":
        cfg = T.SiglipConfig(text_config=TEXT | {"max_position_embeddings": 16}, vision_config=VISION)
        proc = T.SiglipProcessor(image_processor=T.SiglipImageProcessor(size=SQUARE), tokenizer=tok)
    elif name in ("BlipForImageTextRetrieval", "BlipForQuestionAnswering"):
        text = TEXT | {"max_position_embeddings": 32, "bos_token_id": 5, "sep_token_id": 3, "eos_token_id": 3}
        cfg = T.BlipConfig(
            text_config=text, vision_config=VISION, projection_dim=16, image_text_hidden_size=16
        )
        proc = T.BlipProcessor(image_processor=T.BlipImageProcessor(size=SQUARE), tokenizer=tok)
    elif name == "ViltForQuestionAnswering":
        answers = ["yes", "no", "red", "2"]
        cfg = T.ViltConfig(vocab_size=len(WORDS), max_position_embeddings=40, image_size=32, patch_size=8,
                           id2label=dict(enumerate(answers)), label2id={a: i for i, a in enumerate(answers)},
                           **SMALL)  # fmt: skip
        proc = T.ViltProcessor(
            image_processor=T.ViltImageProcessor(size={"shortest_edge": 32}), tokenizer=tok
        )
    elif name == "GitForCausalLM":
        cfg = T.GitConfig(vision_config=VISION, max_position_embeddings=64, **TEXT)
        image = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=SQUARE)
        proc = T.GitProcessor(image_processor=image, tokenizer=tok)
    elif name == "Blip2ForConditionalGeneration":
        return _build_blip2(folder)
    elif name == "OwlViTForObjectDetection":
        cfg = T.OwlViTConfig(
            text_config=TEXT | {"max_position_embeddings": 16}, vision_config=VISION, projection_dim=32
        )
        image = T.OwlViTImageProcessor(size=SQUARE, do_center_crop=False)
        proc = T.OwlViTProcessor(image_processor=image, tokenizer=tok)
    elif name == "CLIPSegForImageSegmentation":
        cfg = T.CLIPSegConfig(text_config=TEXT | {"max_position_embeddings": 16}, vision_config=VISION,
                              projection_dim=16, reduce_dim=16, extract_layers=[0], decoder_num_attention_heads=2,
                              decoder_intermediate_size=32, conditional_layer=0)  # fmt: skip
        proc = T.CLIPSegProcessor(image_processor=T.ViTImageProcessor(size=SQUARE), tokenizer=tok)
    model = getattr(T, name)(cfg)
    if name == "OwlViTForObjectDetection":  # random scales saturate the sigmoid: every query ties at 1.0
        torch.nn.init.zeros_(model.class_head.logit_scale.weight)  # scale elu(bias) + 1
    return _save(folder, model, proc)


def _build_blip2(folder):
    """BLIP-2 with a 1-layer OPT; its processor adds `<image>` (one id past the word list) itself."""
    import transformers as T
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = T.PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", pad_token="[PAD]",
                                    bos_token="[CLS]", eos_token="[SEP]")  # fmt: skip
    opt = T.OPTConfig(vocab_size=len(WORDS) + 1, hidden_size=32, ffn_dim=64, num_hidden_layers=1,
                      num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=64,
                      pad_token_id=0, bos_token_id=2, eos_token_id=3)  # fmt: skip
    qformer = SMALL | {"vocab_size": len(WORDS), "encoder_hidden_size": 32, "max_position_embeddings": 32}
    cfg = T.Blip2Config(vision_config=VISION, qformer_config=qformer, text_config=opt, num_query_tokens=4,
                        image_token_index=len(WORDS))  # fmt: skip
    proc = T.Blip2Processor(
        image_processor=T.BlipImageProcessor(size=SQUARE), tokenizer=tok, num_query_tokens=4
    )
    model = T.Blip2ForConditionalGeneration(cfg)
    # a random OPT's best next token here is [UNK], which decodes to nothing: the special tokens'
    # output rows at 0 (logit 0) let a word win, so the tiny model writes words
    with torch.no_grad():
        model.get_output_embeddings().weight[[0, 1, 2, 3, len(WORDS)]] = 0
    return _save(folder, model, proc)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """name → the folder of that class's tiny checkpoint (built on first use)."""
    built = {}

    def get(name: str):
        if name not in built:
            built[name] = _build(name, tmp_path_factory.mktemp("hf") / name)
        return built[name]

    return get


def test_the_table_names_transformers_classes_that_exist():
    import transformers

    for name in hf_models.ARCHITECTURES:
        assert hasattr(transformers, name), name


def _pil(images):
    from PIL import Image

    return [Image.fromarray(a) for a in images]


def test_siglip_zero_shot_equals_the_model_and_runs_in_vlkit_eval(tiny, tmp_path, capsys):
    folder = tiny("SiglipModel")
    model = vlkit.load(folder)
    assert isinstance(model, hf_models.HFContrastiveModel)
    images, labels = _images(), ["red circle", "blue star", "green square"]
    got = model.classify(images, labels, templates=["{}"])
    enc = model.processor(
        text=labels, images=_pil(images), padding="max_length", max_length=16, return_tensors="pt"
    )
    with torch.no_grad():
        direct = model.model(**enc).logits_per_image  # (N, C), sigmoid's logits: scale * cos + bias
    np.testing.assert_allclose(got.logits, direct.numpy(), atol=1e-4)
    result = run_eval(str(folder), "scenes", task="zero-shot", limit=8, out_dir=str(tmp_path / "e"))
    assert result["model_kind"] == "contrastive"
    assert {"top1", "top5", "mean_per_class_recall"} <= set(result["metrics"])
    # `vlkit classify` takes the folder as it takes a vlkit run
    from PIL import Image

    Image.fromarray(images[0]).save(tmp_path / "a.png")
    cli.main(["classify", str(folder), str(tmp_path / "a.png"), "--labels", ",".join(labels), "--top", "1"])
    best = labels[int(np.argmax(model.classify([images[0]], labels).probs[0]))]
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'a.png'}\t{best}=")


def test_blip_retrieval_scores_equal_its_heads(tiny, tmp_path):
    folder = tiny("BlipForImageTextRetrieval")
    model = vlkit.load(folder)
    assert isinstance(model, hf_models.HFBlipRetrieval)
    images, texts = _images(2), ["a red circle", "a blue star ."]
    enc = model.processor(images=_pil(images), text=texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        cosines = model.model(**enc, use_itm_head=False).itm_score  # (N images, N texts)
        matching = model.model(**enc, use_itm_head=True).itm_score.softmax(-1)[:, 1]
    np.testing.assert_allclose(
        model.embed_images(images) @ model.embed_texts(texts).T, cosines.numpy(), atol=1e-5
    )
    np.testing.assert_allclose(model.itm(images, texts), matching.numpy(), atol=1e-5)
    result = run_eval(str(folder), "scenes", task="retrieval", limit=8, out_dir=str(tmp_path / "e"))
    assert result["model_kind"] == "contrastive"
    assert {"i2t_R@1", "t2i_R@1"} <= set(result["metrics"])


QUESTIONS = ["what colour is the circle ?", "how many shapes are there ?", "is the star left ?"]


def test_vilt_answers_are_its_best_class_and_it_does_not_caption(tiny, tmp_path):
    folder = tiny("ViltForQuestionAnswering")
    model = vlkit.load(folder)
    assert isinstance(model, hf_models.HFAnswerClassifier)
    images = _images()
    enc = model.processor(images=_pil(images), text=QUESTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        best = model.model(**enc).logits.argmax(-1)
    assert model.answer(images, QUESTIONS) == [model.model.config.id2label[int(i)] for i in best]
    result = run_eval(str(folder), "scenes", task="vqa", limit=3, out_dir=str(tmp_path / "e"))
    assert result["model_kind"] == "generative"
    assert set(result["metrics"]) == {"vqa_accuracy", "paraphrase_accuracy"}
    with pytest.raises(ValueError, match="vlkit caption: .* ViltForQuestionAnswering .*cannot caption"):
        vlkit.load(folder, kind="generative", command="caption", needs="caption")
    with pytest.raises(ValueError, match="task 'caption-coverage': a generative model"):
        run_eval(str(folder), "scenes", task="caption-coverage", limit=3, out_dir=str(tmp_path / "f"))


def test_blip_vqa_answers_are_its_decoder_s(tiny, tmp_path):
    folder = tiny("BlipForQuestionAnswering")
    model = vlkit.load(folder, max_new_tokens=3)
    assert isinstance(model, hf_models.HFBlipAnswerer)
    images = _images()
    enc = model.processor(images=_pil(images), text=QUESTIONS, padding=True, return_tensors="pt")
    out = model.model.generate(**enc, max_new_tokens=3, do_sample=False)
    direct = [s.strip() for s in model.processor.batch_decode(out[:, 1:], skip_special_tokens=True)]
    assert model.answer(images, QUESTIONS) == direct and all(direct)
    result = run_eval(
        str(folder), "scenes", task="vqa", limit=3, max_new_tokens=2, out_dir=str(tmp_path / "e")
    )
    assert set(result["metrics"]) == {"vqa_accuracy", "paraphrase_accuracy"}


def test_git_captions_and_answers_are_its_generations(tiny, tmp_path, capsys):
    from vlkit import metrics

    folder = tiny("GitForCausalLM")
    model = vlkit.load(folder, max_new_tokens=3)
    assert isinstance(model, hf_models.HFGit)
    images = _images(2)
    pixels = model.processor(images=_pil(images), return_tensors="pt")["pixel_values"]
    out = model.model.generate(pixel_values=pixels, max_new_tokens=3, do_sample=False)  # batched: (2, 1 + 3)
    assert model.caption(images) == [
        s.strip() for s in model.processor.batch_decode(out[:, 1:], skip_special_tokens=True)
    ]
    question = model.processor.tokenizer(QUESTIONS[0], add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[model.processor.tokenizer.cls_token_id, *question]])
    out = model.model.generate(pixel_values=pixels[:1], input_ids=ids, max_new_tokens=3, do_sample=False)
    expected = model.processor.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)[0].strip()
    assert model.answer(images[:1], QUESTIONS[:1]) == [expected]
    result = run_eval(str(folder), "scenes", task="caption-coverage", limit=3, out_dir=str(tmp_path / "e"))
    assert set(result["metrics"]) == set(metrics.caption_coverage(["a red circle"], [[("red", "circle")]]))
    # `vlkit ask` takes the folder as it takes a vlkit run
    from PIL import Image

    Image.fromarray(images[0]).save(tmp_path / "a.png")
    cli.main(["ask", str(folder), str(tmp_path / "a.png"), QUESTIONS[0], "--max-new-tokens", "3"])
    assert capsys.readouterr().out == f"{QUESTIONS[0]}\t{expected}\n"


def test_blip2_answers_are_its_generations(tiny, tmp_path):
    folder = tiny("Blip2ForConditionalGeneration")
    model = vlkit.load(folder, max_new_tokens=2)
    assert isinstance(model, hf_models.HFGenerativeModel)
    images = _images()
    prompts = [f"Question: {q} {hf_models.SHORT_ANSWER} Answer:" for q in QUESTIONS]
    enc = model.processor(images=_pil(images), text=prompts, padding=True, return_tensors="pt")
    out = model.model.generate(**enc, max_new_tokens=2, do_sample=False)
    direct = [
        s.strip()
        for s in model.processor.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    ]
    assert model.answer(images, QUESTIONS) == direct
    assert len(model.caption(images[:2])) == 2
    result = run_eval(
        str(folder), "scenes", task="vqa", limit=3, max_new_tokens=2, out_dir=str(tmp_path / "e")
    )
    assert set(result["metrics"]) == {"vqa_accuracy", "paraphrase_accuracy"}


def test_owlvit_detections_are_transformers_post_processing(tiny, tmp_path, capsys):
    folder = tiny("OwlViTForObjectDetection")
    model = vlkit.load(folder)
    assert isinstance(model, hf_models.HFDetector)
    image, queries = _images(1)[0], ["red circle", "blue star"]
    enc = model.processor(text=[queries], images=_pil([image]), padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.model(**enc)
    (ref,) = model.processor.post_process_grounded_object_detection(
        out, threshold=0.3, target_sizes=[image.shape[:2]]
    )
    found = model.detect(image, queries, threshold=0.3)
    assert list(found.scores) == sorted(found.scores, reverse=True)  # best first
    # the same detections (patches whose scores tie may come in either order)
    ours = sorted(zip(found.labels, np.round(found.boxes, 2).tolist(), found.scores.tolist()))
    theirs = [queries[int(i)] for i in ref["labels"]]
    size = torch.tensor([image.shape[1], image.shape[0]] * 2)
    inside = ref["boxes"].clamp(min=0).minimum(size)  # vlkit clips boxes to the image
    theirs = sorted(zip(theirs, np.round(inside.numpy(), 2).tolist(), ref["scores"].tolist()))
    assert [o[:2] for o in ours] == [t[:2] for t in theirs] and len(ours) > 0
    np.testing.assert_allclose([o[2] for o in ours], [t[2] for t in theirs], atol=1e-6)
    one = model.processor(text=[["blue star"]], images=_pil([image]), return_tensors="pt")
    with torch.no_grad():
        single = model.model(**one)
    (every,) = model.processor.post_process_grounded_object_detection(
        single, threshold=-1.0, target_sizes=[image.shape[:2]]
    )  # every patch, in order
    best = int(single.logits[0, :, 0].argmax())
    expected = every["boxes"][best].clamp(min=0).minimum(size)
    assert model.ground(image, "blue star") == pytest.approx(expected.tolist(), abs=1e-4)
    result = run_eval(
        str(folder), "scenes", task=["detection", "grounding"], limit=3, out_dir=str(tmp_path / "e")
    )
    assert result["model_kind"] == "detector"
    assert set(result["metrics"]) == {"mAP@0.5", "mAP@[.5:.95]", "grounding_acc@0.5"}
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "a.png")
    cli.main(
        ["detect", str(folder), str(tmp_path / "a.png"), "--queries", ",".join(queries), "--threshold", "0.3"]
    )
    printed = json.loads(capsys.readouterr().out)
    assert [d["label"] for d in printed["detections"]] == found.labels


def test_clipseg_masks_are_its_upsampled_logits(tiny, tmp_path):
    folder = tiny("CLIPSegForImageSegmentation")
    model = vlkit.load(folder)
    assert isinstance(model, hf_models.HFSegmenter)
    images, phrases = _images(2), ["red circle", "blue star"]
    enc = model.processor(text=phrases, images=_pil(images), padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model.model(**enc).logits  # (N, 32, 32)
    masks = model.segment(images, phrases)
    for image, mask, row in zip(images, masks, logits):
        up = torch.nn.functional.interpolate(row[None, None], size=image.shape[:2], mode="bilinear")[0, 0]
        assert mask.shape == image.shape[:2] and mask.dtype == bool
        np.testing.assert_array_equal(mask, (up.sigmoid() > 0.5).numpy())
    result = run_eval(str(folder), "scenes", task="segmentation", limit=3, out_dir=str(tmp_path / "e"))
    assert result["model_kind"] == "contrastive"
    assert set(result["metrics"]) == {"mIoU"}


# ---------------------------------------------------------------- vlkit.load and the task commands

# transformers class → the methods the task commands call on what `vlkit.load` gives it
COMMAND_METHODS = {
    "CLIPModel": ("classify", "index_files", "search"),
    "SiglipModel": ("classify", "index_files", "search"),
    "BlipForImageTextRetrieval": ("classify", "index_files", "search", "itm"),
    "ViltForQuestionAnswering": ("answer",),
    "BlipForQuestionAnswering": ("answer",),
    "GitForCausalLM": ("answer", "caption"),
    "Blip2ForConditionalGeneration": ("answer", "caption"),
    "OwlViTForObjectDetection": ("detect", "ground"),
    "CLIPSegForImageSegmentation": ("classify", "index_files", "search", "segment"),
}


def _png(folder, image, name: str = "a.png") -> str:
    from PIL import Image

    Image.fromarray(image).save(folder / name)
    return str(folder / name)


def _rows(capsys) -> list[list[str]]:
    return [line.split("\t") for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("name", list(hf_models.ARCHITECTURES))
def test_vlkit_load_opens_every_class_with_its_task_methods(tiny, name):
    assert set(COMMAND_METHODS) == set(hf_models.ARCHITECTURES)  # a new class says what it serves
    model = vlkit.load(tiny(name))
    assert type(model) is hf_models.ARCHITECTURES[name] and model.architecture == name
    assert all(callable(getattr(model, m, None)) for m in COMMAND_METHODS[name])


@pytest.mark.parametrize(
    "name", ["CLIPModel", "SiglipModel", "BlipForImageTextRetrieval", "CLIPSegForImageSegmentation"]
)
def test_classify_index_and_search_open_a_transformers_dual_encoder(tiny, tmp_path, capsys, name):
    folder, labels = tiny(name), ["red circle", "blue star", "green square"]
    (tmp_path / "pictures").mkdir()
    paths = [_png(tmp_path / "pictures", im, f"{i}.png") for i, im in enumerate(_images())]
    cli.main(["classify", str(folder), *paths, "--labels", ",".join(labels), "--top", "2"])
    rows = _rows(capsys)
    assert [row[0] for row in rows] == paths
    for row in rows:
        scores = [cell.rsplit("=", 1) for cell in row[1:]]
        assert len(scores) == 2 and {label for label, _ in scores} <= set(labels)
        assert all(0 <= float(p) <= 1 for _, p in scores)
    cli.main(["index", str(folder), str(tmp_path / "pictures"), "--out", str(tmp_path / "idx")])
    assert capsys.readouterr().out.startswith(f"indexed 3 images into {tmp_path / 'idx'}")
    cli.main(["search", str(tmp_path / "idx"), "red circle", "-k", "2"])  # the model the index names
    lines = capsys.readouterr().out.splitlines()
    model = vlkit.load(folder)
    cosines = model.embed_images(paths) @ model.embed_texts(["red circle"])[0]  # (3,)
    assert lines[0] == "# red circle"
    assert [line.split("\t")[1] for line in lines[1:]] == [paths[i] for i in np.argsort(-cosines)[:2]]


def test_search_reranks_by_blip_s_matching_head(tiny, tmp_path, capsys):
    folder = tiny("BlipForImageTextRetrieval")
    (tmp_path / "pictures").mkdir()
    paths = [_png(tmp_path / "pictures", im, f"{i}.png") for i, im in enumerate(_images())]
    model = vlkit.load(folder)
    enc = model.processor(
        images=_pil(_images()), text=["a red circle"] * 3, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        scores = model.model(**enc, use_itm_head=True).itm_score  # (3, 2): no match, match
    logits = (scores[:, 1] - scores[:, 0]).numpy()
    np.testing.assert_allclose(model.match(paths, ["a red circle"] * 3), logits, atol=1e-5)
    cli.main(["index", str(folder), str(tmp_path / "pictures"), "--out", str(tmp_path / "idx")])
    capsys.readouterr()
    cli.main(
        [
            "search",
            str(tmp_path / "idx"),
            "a red circle",
            "-k",
            "2",
            "--rerank",
            str(folder),
            "--shortlist",
            "3",
            "--rerank-by",
            "itm",
        ]
    )
    lines = capsys.readouterr().out.splitlines()[1:]
    best = np.argsort(-logits, kind="stable")[:2]
    assert [line.split("\t")[1] for line in lines] == [paths[i] for i in best]
    assert [float(line.split("\t")[0]) for line in lines] == pytest.approx(logits[best].tolist(), abs=1e-3)


@pytest.mark.parametrize(
    "name",
    [
        "ViltForQuestionAnswering",
        "BlipForQuestionAnswering",
        "GitForCausalLM",
        "Blip2ForConditionalGeneration",
    ],
)
def test_ask_opens_a_transformers_answerer(tiny, tmp_path, capsys, name):
    folder = tiny(name)
    cli.main(["ask", str(folder), _png(tmp_path, _images(1)[0]), *QUESTIONS[:2], "--max-new-tokens", "3"])
    rows = _rows(capsys)
    assert [row[0] for row in rows] == QUESTIONS[:2] and all(len(row) == 2 and row[1].strip() for row in rows)
    if name == "ViltForQuestionAnswering":  # a classifier: one of its answers
        assert {row[1] for row in rows} <= set(vlkit.load(folder).model.config.id2label.values())


@pytest.mark.parametrize("name", ["GitForCausalLM", "Blip2ForConditionalGeneration"])
def test_caption_opens_a_transformers_captioner(tiny, tmp_path, capsys, name):
    paths = [_png(tmp_path, im, f"{i}.png") for i, im in enumerate(_images(2))]
    cli.main(["caption", str(tiny(name)), *paths, "--max-new-tokens", "3"])
    rows = _rows(capsys)
    assert [row[0] for row in rows] == paths and all(len(row) == 2 and row[1].strip() for row in rows)


def test_detect_opens_owlvit_and_its_boxes_lie_inside_the_image(tiny, tmp_path, capsys):
    image, queries = _images(1)[0], ["red circle", "blue star"]  # 40 x 30: not the model's square
    drawn = tmp_path / "drawn.png"
    cli.main(["detect", str(tiny("OwlViTForObjectDetection")), _png(tmp_path, image), "--queries",
              ",".join(queries), "--threshold", "0", "--out", str(drawn)])  # fmt: skip
    detections = json.loads(capsys.readouterr().out)["detections"]
    assert len(detections) == 16 and drawn.is_file()  # threshold 0: every one of the 4 x 4 patches
    height, width = image.shape[:2]
    for d in detections:
        x1, y1, x2, y2 = d["box"]
        assert d["label"] in queries and 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height, d


def test_segment_opens_clipseg_and_writes_a_mask_of_the_image_size(tiny, tmp_path, capsys):
    from PIL import Image

    folder, image = tiny("CLIPSegForImageSegmentation"), _images(1)[0]
    cli.main(
        [
            "segment",
            str(folder),
            _png(tmp_path, image),
            "--prompt",
            "red circle",
            "--out",
            str(tmp_path / "m"),
        ]
    )
    record = json.loads(capsys.readouterr().out)
    mask = np.array(Image.open(tmp_path / "m.mask.png"))
    expected = vlkit.load(folder).segment(image, "red circle")  # one image and prompt: one mask
    assert mask.shape == expected.shape == image.shape[:2] and expected.dtype == bool
    np.testing.assert_array_equal(mask > 0, expected)
    assert record["pixels"] == int(expected.sum()) and 0 < record["pixels"] < expected.size


@pytest.mark.parametrize(
    "name, command, can",
    [
        ("OwlViTForObjectDetection", ["segment", "--prompt", "red circle"], "detect, ground"),
        ("ViltForQuestionAnswering", ["caption"], "answer"),
        ("SiglipModel", ["detect", "--queries", "red circle"], "classify, embed_images, index_files"),
        ("GitForCausalLM", ["classify", "--labels", "red,blue"], "answer, caption"),
    ],
)
def test_a_command_the_class_cannot_serve_names_it_and_what_it_can(
    tiny, tmp_path, capsys, name, command, can
):
    with pytest.raises(SystemExit) as stopped:
        cli.main([command[0], str(tiny(name)), _png(tmp_path, _images(1)[0]), *command[1:]])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and f"vlkit {command[0]}: {tiny(name)} is a transformers {name}" in error
    assert error.rstrip().endswith(f"it can: {can}"), error


def test_a_path_with_nothing_on_disk_says_what_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a vlkit model folder nor a run folder"):
        vlkit.load(tmp_path / "missing")  # a path, not a hub id: vlkit's own message
    with pytest.raises(
        FileNotFoundError, match="no-such-org/no-such-model: no such folder .* not a hub id in the"
    ):
        vlkit.load("no-such-org/no-such-model")
