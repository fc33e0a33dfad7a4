"""transformers models in the harness: an exported CLIP scores like the vlkit model it came from,
and a tiny randomly initialised LLaVA goes through the whole generative pipeline."""

import numpy as np
import pytest
import torch

import vlkit
from vlkit.eval import harness
from vlkit.eval.run import open_benchmarks, run_eval
from vlkit.export import export_transformers
from vlkit.models.hf_models import HFContrastiveModel, HFGenerativeModel

WORDS = ["<unk>", "<pad>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:", "what", "colour", "is", "the"]
WORDS += ["circle", "red", "blue", "yes", "no", "a", "?", "Answer", "question", "using", "single", "word"]
WORDS += ["or", "phrase.", "Describe", "image", "in", "one", "sentence.", "how", "many", "shapes"]


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    """A random LLaVA (CLIP vision 16 px, 2x2 patches → 4 image tokens; 1-layer Llama) + processor."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
    )
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
    )
    text = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=WORDS.index("<image>"),
        image_seq_length=4,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llava") / "tiny-llava"
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_exported_clip_scores_like_the_vlkit_model(tiny_run, tmp_path):
    exported = export_transformers(tiny_run, tmp_path / "clip-hf")
    hf = vlkit.load(str(exported))
    assert isinstance(hf, HFContrastiveModel)
    ours = vlkit.load(tiny_run)
    benches = [
        b for b in open_benchmarks("scenes", limit=64) if b.task in ("zero-shot", "retrieval", "winoground")
    ]
    theirs_results = harness.evaluate_benchmarks(hf, benches, templates=ours.cfg.eval.templates)
    ours_results = harness.evaluate_benchmarks(ours, benches, templates=ours.cfg.eval.templates)
    for a, b in zip(theirs_results, ours_results):
        assert a.metrics == pytest.approx(b.metrics, abs=1e-9), a.task
    images = [e["image"] for e in benches[0].examples[:4]]
    np.testing.assert_allclose(hf.embed_images(images), ours.embed_images(images), atol=1e-5)
    texts = ["a red circle.", "a picture of a blue star."]
    np.testing.assert_allclose(hf.embed_texts(texts), ours.embed_texts(texts), atol=1e-5)
    with pytest.raises(ValueError, match="task 'vqa': a contrastive model"):
        harness.check_task(hf, "vqa")


def test_llava_answers_in_batches_and_decodes_only_new_tokens(tiny_llava):
    model = vlkit.load(str(tiny_llava), max_new_tokens=1)
    assert isinstance(model, HFGenerativeModel)
    assert model.prompt_format == "USER: <image>\n{text} ASSISTANT:"
    images = [np.full((20, 24, 3), v, np.uint8) for v in (0, 90, 255)]
    questions = ["what colour is the circle ?", "is", "how many shapes ? a a a a a"]  # different lengths
    answers = model.answer(images, questions)
    # one new token each: the long prompts are not in the output
    assert len(answers) == 3 and all(len(a.split()) <= 1 for a in answers)
    # left padding: an answer does not depend on the other prompts in its batch
    assert answers == [model.answer([im], [q])[0] for im, q in zip(images, questions)]
    model.max_new_tokens = 3
    captions = model.caption(images[:2])
    assert len(captions) == 2 and all(len(c.split()) <= 3 for c in captions)


def test_llava_through_vlkit_eval(tiny_llava, tmp_path):
    result = run_eval(
        str(tiny_llava), "scenes", task="vqa", limit=3, batch_size=4, max_new_tokens=2, model_card=True
    )
    assert result["model_kind"] == "generative"
    assert set(result["metrics"]) == {"vqa_accuracy", "paraphrase_accuracy"}  # scenes: also reworded
    (task,) = result["results"]
    assert task.samples == len(task.predictions) > 0
    expected = np.mean([p["accuracy"] for p in task.predictions])
    assert result["metrics"]["vqa_accuracy"] == pytest.approx(expected)
    assert (tiny_llava / "eval-scenes" / "predictions.jsonl").is_file()
    card = (tiny_llava / "README.md").read_text()
    assert card.startswith("---\nmodel-index:") and "visual-question-answering" in card
    with pytest.raises(ValueError, match=r"task 'zero-shot': a generative model \(HFGenerativeModel\)"):
        run_eval(str(tiny_llava), "scenes", task="zero-shot", limit=3)
