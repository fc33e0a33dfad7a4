"""transformers' VLM classes through vlkit's task API, `vlkit eval` and the task commands.

Each class is a tiny randomly initialised checkpoint built here from a config (hidden 32, one
layer, 32 px images), saved with a processor whose tokenizer comes from a small word list, so
nothing is downloaded. Every wrapper's outputs are compared with calling the transformers model
directly on the same inputs, and `vlkit eval` on scenes gives the task's metrics.
"""


import numpy as np
import pytest
import torch

from vlkit import cli
from vlkit.eval import hf_models
from vlkit.eval.run import run_eval

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
    if name == "SiglipModel":
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
    return _save(folder, getattr(T, name)(cfg), proc)


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
    return _save(folder, T.Blip2ForConditionalGeneration(cfg), proc)


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
    model = hf_models.load(str(folder))
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
    model = hf_models.load(str(folder))
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
