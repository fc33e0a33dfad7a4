"""Generative VLMs: conversation files, every connector and training strategy through the one
loop, resume, save/load and generation (how samples become conversations and batches:
tests/test_training_conversations.py)."""

import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import vlkit
from tests.test_training_conversations import TEXTS
from vlkit.config import PEFT_KINDS
from vlkit.data.conversations import SHORT_ANSWER, ConversationFile
from vlkit.data.images import ImageError
from vlkit.generation import Decoding, GenerativeModel
from vlkit.models.build import build_model, load_model, save_model
from vlkit.models.build_vlm import initial_parts
from vlkit.models.connectors import CONNECTORS
from vlkit.models.language_models import train_chat_tokenizer
from vlkit.train.checkpoint import latest_checkpoint
from vlkit.train.generative import (
    IGNORE,
    GenerativeObjective,
)
from vlkit.train.loop import train


def _write_image(path):
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(path)


def test_llava_json_and_chat_jsonl(tmp_path):
    _write_image(tmp_path / "a.png")
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A square."}]
    (tmp_path / "llava.json").write_text(json.dumps([{"id": "1", "image": "a.png", "conversations": turns}]))
    sample = ConversationFile(tmp_path / "llava.json")[0]
    assert sample["messages"][1] == {"role": "assistant", "content": "A square."}
    assert sample["image"].shape == (20, 24, 3)
    messages = [
        {"role": "user", "content": "<image>\nWhat is it?"},
        {"role": "assistant", "content": "A square."},
    ]
    line = {"id": "1", "images": ["a.png"], "messages": messages}
    (tmp_path / "chat.jsonl").write_text(json.dumps(line) + "\n")
    assert ConversationFile(tmp_path / "chat.jsonl")[0]["messages"] == sample["messages"]

    bad = [{"id": "7", "image": "a.png", "conversations": [*turns, {"from": "bot", "value": "x"}]}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"record 0 \(id '7'\).*conversations\[2\]\.from"):
        ConversationFile(tmp_path / "bad.json")
    twice = [
        {
            "id": "8",
            "image": "a.png",
            "conversations": [{"from": "human", "value": "<image><image>"}, turns[1]],
        }
    ]
    (tmp_path / "twice.json").write_text(json.dumps(twice))
    with pytest.raises(ValueError, match="appears 2 times"):
        ConversationFile(tmp_path / "twice.json")


def test_trains_on_a_conversation_file(tiny_vlm_cfg, tmp_path):
    _write_image(tmp_path / "a.png")
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A grey square."}]
    (tmp_path / "data.json").write_text(
        json.dumps([{"id": str(i), "image": "a.png", "conversations": turns} for i in range(4)])
    )
    tiny_vlm_cfg.data.sources[0].kind, tiny_vlm_cfg.data.sources[0].path = (
        "conversations",
        str(tmp_path / "data.json"),
    )
    run = train(tiny_vlm_cfg, progress=False)
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and all(np.isfinite(losses)) and losses[-1] < losses[0]


def _weights(run):
    return load_file(latest_checkpoint(run) / "model.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("connector", [c for c in CONNECTORS if c != "gated_xattn"])  # gated_xattn: below
def test_every_soft_token_connector_trains_saves_and_generates(connector, tmp_path):
    from tests.conftest import make_tiny_vlm_cfg

    cfg = make_tiny_vlm_cfg(connector)
    cfg.train.out_dir = str(tmp_path / connector)
    run = train(cfg, progress=False)
    model = vlkit.load(run)
    assert isinstance(model, GenerativeModel) and model.cfg.vlm.connector == connector
    expected = 16 if connector in ("linear", "mlp2x_gelu") else 4  # 4x4 patches, or 4 queries / latents
    assert model.model.image_tokens == expected
    image = vlkit.data.open_named("scenes")[0]["image"]
    answers = model.answer([image, image], ["What color?", "How many shapes?"], Decoding(max_new_tokens=3))
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_frozen_prefix_lm_and_connector_only_leave_frozen_parts_unchanged(tiny_vlm_cfg, tmp_path):
    tiny_vlm_cfg.train.save_every = 1
    tiny_vlm_cfg.train.steps, tiny_vlm_cfg.train.keep_last = 2, 5
    tiny_vlm_cfg.vlm.freeze_lm = tiny_vlm_cfg.vlm.freeze_vision = True  # LLaVA stage 1 / MiniGPT-4
    run = train(tiny_vlm_cfg, progress=False)
    first = load_file(run / "checkpoints" / "step-0000001" / "model.safetensors")
    last = _weights(run)
    changed = {k.split(".")[0] for k in first if not torch.equal(first[k], last[k])}
    assert changed == {"connector"}


def test_a_frozen_pretrained_lm_is_referenced_not_copied_into_checkpoints(tiny_vlm_cfg, tmp_path):
    # a small "pretrained" LM in a transformers folder, as a hub download would be
    from vlkit.models.registry import build_language_model

    lm, lm_tokenizer = build_language_model("gpt-tiny", tiny_vlm_cfg.vlm, None, TEXTS)
    lm.save_pretrained(tmp_path / "base-lm")
    lm_tokenizer.save_pretrained(tmp_path / "base-lm")
    base = lm.state_dict()
    tiny_vlm_cfg.vlm.language_model, tiny_vlm_cfg.vlm.freeze_lm = str(tmp_path / "base-lm"), True
    tiny_vlm_cfg.train.steps, tiny_vlm_cfg.train.save_every = 4, 2
    run = train(tiny_vlm_cfg, progress=False)

    stored = _weights(run)
    stored_lm = {k for k in stored if k.startswith("language_model.")}
    assert stored_lm == {"language_model.model.embed_tokens.weight"}  # tied with the head: stored once
    listed = json.loads((latest_checkpoint(run) / "external_weights.json").read_text())
    assert listed["base"] == str(tmp_path / "base-lm") and len(listed["keys"]) == len(base) - 2
    model = vlkit.load(run)  # the frozen layers come back from the base folder
    reloaded = model.model.state_dict()
    assert reloaded.keys() == {f"language_model.{k}" for k in base} | stored.keys()  # nothing else
    for key, tensor in base.items():
        if f"language_model.{key}" not in stored:
            assert torch.equal(reloaded[f"language_model.{key}"], tensor), key
    assert all(torch.equal(reloaded[k], stored[k]) for k in stored)
    # a resumed run rebuilds the base from the folder and loads the rest from the checkpoint
    tiny_vlm_cfg.train.steps = 6
    assert _weights(train(tiny_vlm_cfg, progress=False)).keys() == stored.keys()


def test_generative_resume_is_exact(tiny_vlm_cfg, tmp_path):
    tiny_vlm_cfg.train.steps, tiny_vlm_cfg.train.save_every = 4, 2
    tiny_vlm_cfg.train.out_dir = str(tmp_path / "straight")
    straight = train(tiny_vlm_cfg, progress=False)
    tiny_vlm_cfg.train.out_dir = str(tmp_path / "crashed")
    crashed = train(tiny_vlm_cfg, stop_at_step=3, progress=False)
    train(tiny_vlm_cfg, progress=False)
    a, b = _weights(straight), _weights(crashed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stage_two_starts_from_stage_one(tiny_vlm_run, tiny_vlm_cfg):
    tiny_vlm_cfg.vlm.init_from = str(tiny_vlm_run)
    tiny_vlm_cfg.train.steps = 1
    stage1 = _weights(tiny_vlm_run)
    run = train(tiny_vlm_cfg, progress=False)
    model, cfg = load_model(latest_checkpoint(run))
    assert cfg.vlm.init_from == str(tiny_vlm_run)
    stage2 = _weights(run)
    assert stage1.keys() == stage2.keys()
    # one small step away from stage 1, not a fresh initialisation
    assert all((stage1[k] - stage2[k]).abs().max() < 0.05 for k in stage1 if k.startswith("connector"))


def test_a_tower_frozen_in_stage_one_trains_in_stage_two(tiny_vlm_cfg, tmp_path):
    """The staged recipe's tower: frozen while the LM learns where things are, trained in the mix."""
    tiny_vlm_cfg.vlm.freeze_vision, tiny_vlm_cfg.train.steps = True, 2
    tiny_vlm_cfg.train.out_dir = str(tmp_path / "one")
    one = train(tiny_vlm_cfg, progress=False)
    tiny_vlm_cfg.vlm.freeze_vision, tiny_vlm_cfg.vlm.init_from = False, str(one)
    tiny_vlm_cfg.train.out_dir = str(tmp_path / "two")
    two = train(tiny_vlm_cfg, progress=False)
    first, second = _weights(one), _weights(two)
    tower = [k for k in first if k.startswith("vision.") and "position_ids" not in k]
    assert tower and sum(not torch.equal(first[k], second[k]) for k in tower) >= len(tower) // 2


def test_a_pretrained_tower_keeps_its_batch_norm_statistics(tiny_vlm_cfg, tmp_path):
    """A CLIP's conv stem keeps its batch norm in eval mode while the VLM trains it, so a batch split
    into length groups normalises as the whole batch does (benchmarks/length_groups.py --smoke); a
    tower from scratch learns its statistics."""
    from tests.conftest import make_tiny_cfg

    clip = make_tiny_cfg()  # a dual encoder whose tower has a conv stem, saved as a CLIP run would be
    clip.model.vision_stem = "conv"
    save_model(build_model(clip, texts=["a red circle"] * 20), clip, tmp_path / "clip")
    tiny_vlm_cfg.model.vision_stem, tiny_vlm_cfg.vlm.freeze_vision = "conv", False
    for vision_init, frozen_statistics in (("", False), (str(tmp_path / "clip"), True)):
        tiny_vlm_cfg.vlm.vision_init = vision_init
        parts = initial_parts(tiny_vlm_cfg, load_model)
        model = build_model(tiny_vlm_cfg, texts=["a red circle"] * 20, **parts).train()
        norms = [m for m in model.vision.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and all(m.training != frozen_statistics for m in norms)
        assert model.vision.training and all(p.requires_grad for p in model.vision.parameters())


def test_stage_two_reads_the_vision_layer_stage_one_read(tiny_vlm_run, tiny_vlm_cfg):
    """A connector trained on one layer's features does not continue on another layer's."""
    tiny_vlm_cfg.vlm.init_from = str(tiny_vlm_run)
    tiny_vlm_cfg.vlm.vision_feature_layer = -2
    with pytest.raises(
        ValueError, match=r"reads vision layer -1, this recipe's vlm.vision_feature_layer is -2"
    ):
        train(tiny_vlm_cfg, progress=False)


def test_api_caption_answer_chat_and_stream(tiny_vlm_run, tmp_path):
    model = vlkit.load(tiny_vlm_run)
    _write_image(tmp_path / "a.png")
    image = vlkit.data.open_named("scenes")[0]["image"]
    assert len(model.caption([image, str(tmp_path / "a.png")], prompt="Name the colors.")) == 2
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Hi"}]}
    ]
    decoding = Decoding(max_new_tokens=6)
    reply = model.chat(messages, decoding)
    assert "".join(model.stream(messages, decoding)).strip() == reply
    beams = model.answer([image], ["What color?"], Decoding(max_new_tokens=4, num_beams=3))
    sampled = [
        model.answer([image], ["What color?"], Decoding(max_new_tokens=4, do_sample=True, seed=3))
        for _ in "ab"
    ]
    assert len(beams) == 1 and sampled[0] == sampled[1]  # a seed makes sampling reproducible
    with pytest.raises(ValueError, match="at most one image"):
        model.chat([{"role": "user", "content": [{"type": "image", "image": image}] * 2}])


def test_answer_appends_the_short_answer_instruction_unless_short_is_false(tiny_vlm_run):
    model = vlkit.load(tiny_vlm_run)
    image = vlkit.data.open_named("scenes")[0]["image"]
    decoding = Decoding(max_new_tokens=6)

    def chat(text: str) -> str:
        content = [{"type": "image", "image": image}, {"type": "text", "text": text}]
        return model.chat([{"role": "user", "content": content}], decoding)

    question = "What color is the circle?"
    assert model.answer([image], [question], decoding) == [chat(f"{question} {SHORT_ANSWER}")]
    assert model.answer([image], [question], decoding, short=False) == [chat(question)]


def test_stream_raises_an_unreadable_image_instead_of_waiting_forever(tiny_vlm_run, tmp_path):
    model = vlkit.load(tiny_vlm_run)
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": str(tmp_path / "missing.png")},
                {"type": "text", "text": "Hi"},
            ],
        }
    ]
    outcome: list = []

    def consume() -> None:
        try:
            outcome.append("".join(model.stream(messages, Decoding(max_new_tokens=2))))
        except ImageError as e:
            outcome.append(e)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert outcome and isinstance(outcome[0], ImageError) and "missing.png: file not found" in str(outcome[0])


def test_caption_can_skip_and_report_unreadable_images(tiny_vlm_run, tmp_path, make_unreadable):
    model = vlkit.load(tiny_vlm_run)
    good = tmp_path / "a.png"
    _write_image(good)
    truncated, text = make_unreadable(tmp_path)
    with pytest.raises(ImageError, match="truncated.png"):  # strict by default
        model.caption([good, truncated])
    decoding = Decoding(max_new_tokens=4)
    captions = model.caption([truncated, good, text, good], decoding=decoding, strict=False)
    assert [type(c) for c in captions] == [ImageError, str, ImageError, str]
    assert (captions[0].path, captions[2].path) == (str(truncated), str(text))
    assert captions[1] == captions[3]
    with pytest.raises(ValueError, match="none of the 2 images could be read"):
        model.answer([truncated, text], ["What color?"] * 2, strict=False)


def test_the_tokenizer_learns_the_texts_of_data_tokenizer_sources_too():
    """A staged recipe's first stage trains its tokenizer on the later stages' texts as well
    (`data.tokenizer_sources`): their words become whole tokens, not bytes."""
    from tests.conftest import make_tiny_vlm_cfg
    from vlkit.config import SourceConfig
    from vlkit.train.loop import tokenizer_texts

    cfg = make_tiny_vlm_cfg()
    cfg.data.sources = [SourceConfig(kind="scenes", position_questions=True, question_types=["position"])]
    dataset = vlkit.data.build_dataset(cfg.data)
    own_texts = tokenizer_texts(cfg, dataset)
    alone = train_chat_tokenizer(own_texts, 300, 160)
    cfg.data.tokenizer_sources = [SourceConfig(kind="scenes", question_types=["count"])]
    both_texts = tokenizer_texts(cfg, dataset)
    assert both_texts[: len(own_texts)] == own_texts and len(both_texts) > len(
        own_texts
    )  # added, not replaced
    both = train_chat_tokenizer(both_texts, 300, 160)
    question = "How many objects are there?"
    assert len(both.tokenize(question)) < len(alone.tokenize(question))
    where = "Where is the red circle?"
    assert alone.decode(alone.encode(where)) == both.decode(both.encode(where)) == where


def test_gated_xattn_vlm_starts_as_the_frozen_lm_and_trains_its_gates(tmp_path):
    from tests.conftest import make_tiny_vlm_cfg
    from vlkit.models.build import build_model
    from vlkit.train.loop import tokenizer_texts

    cfg = make_tiny_vlm_cfg("gated_xattn")
    cfg.vlm.freeze_lm, cfg.train.out_dir = True, str(tmp_path / "flamingo")
    model = build_model(cfg, texts=tokenizer_texts(cfg, vlkit.data.open_named("scenes")))
    assert model.image_tokens == 1  # one <image> marker; the images enter through cross-attention
    batch = GenerativeObjective(model).collate([(i, vlkit.data.open_named("scenes")[i]) for i in range(2)])
    with_images = model(**batch).logits
    lm = model.base_language_model()
    embeds = lm.get_input_embeddings()(batch["input_ids"])
    with model.language_model.media(torch.zeros(2, 4, lm.config.hidden_size)):  # any media: gates are 0
        plain = lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
    assert torch.equal(with_images, plain)

    run = train(cfg, progress=False)
    weights = _weights(run)
    gates = [k for k in weights if k.endswith(("attn_gate", "ff_gate"))]
    assert gates and any(weights[k].abs().max() > 0 for k in gates)
    generated = vlkit.load(run).answer([vlkit.data.open_named("scenes")[0]["image"]], ["What color?"])
    assert len(generated) == 1


@pytest.mark.parametrize("peft", [k for k in PEFT_KINDS if k != "none"])
def test_peft_strategies_train_only_adapters_and_connector(peft, tiny_vlm_cfg):
    tiny_vlm_cfg.vlm.peft, tiny_vlm_cfg.vlm.freeze_lm, tiny_vlm_cfg.vlm.freeze_vision = peft, True, True
    tiny_vlm_cfg.train.steps, tiny_vlm_cfg.train.save_every, tiny_vlm_cfg.train.keep_last = 2, 1, 5
    run = train(tiny_vlm_cfg, progress=False)
    first = load_file(run / "checkpoints" / "step-0000001" / "model.safetensors")
    last = _weights(run)
    changed = {k for k in first if not torch.equal(first[k], last[k])}
    assert {k.split(".")[0] for k in changed} == {"connector", "language_model"}
    lm_changed = [k for k in changed if k.startswith("language_model")]
    marker = {"lora": "lora_", "prompt": "prompt_encoder", "prefix": "prompt_encoder"}[peft]
    assert lm_changed and all(marker in k for k in lm_changed)  # the base LM stays frozen
    model = vlkit.load(run)
    answers = model.answer([vlkit.data.open_named("scenes")[0]["image"]] * 2, ["What color?", "How many?"])
    assert len(answers) == 2


def test_frozen_vision_features_are_cached_and_change_nothing(tiny_vlm_cfg, tmp_path):
    from vlkit.train.loop import make_objective, prepare

    tiny_vlm_cfg.vlm.freeze_vision, tiny_vlm_cfg.train.steps = True, 2
    plain = train(tiny_vlm_cfg, progress=False)
    tiny_vlm_cfg.vlm.feature_cache = str(tmp_path / "features")
    tiny_vlm_cfg.train.out_dir = str(tmp_path / "cached")
    cached = train(tiny_vlm_cfg, progress=False)
    losses = [
        [json.loads(x)["loss"] for x in (r / "metrics.jsonl").read_text().splitlines()]
        for r in (plain, cached)
    ]
    assert losses[0] == losses[1]  # cached features are the features
    # a second run over the same samples reads them all from the cache
    tiny_vlm_cfg.train.out_dir = str(tmp_path / "again")
    objective = make_objective(tiny_vlm_cfg, prepare(tiny_vlm_cfg).model)
    scenes = vlkit.data.build_dataset(tiny_vlm_cfg.data)  # the 32-px world the runs trained on
    objective.collate([(i, scenes[i]) for i in range(8)])
    assert objective.feature_cache.misses == 0 and objective.feature_cache.hits == 8


def test_stop_strings_end_the_answer(tiny_vlm_run):
    model = vlkit.load(tiny_vlm_run)
    image = vlkit.data.open_named("scenes")[0]["image"]
    free = model.caption([image], decoding=Decoding(max_new_tokens=12))[0]
    stop = free[len(free) // 2 :][:2] if len(free) > 3 else "e"
    stopped = model.caption([image], decoding=Decoding(max_new_tokens=12, stop=[stop]))[0]
    assert stop not in stopped and free.startswith(stopped)


def test_scenes_instruct_samples_are_the_records_vlkit_instruct_writes(tmp_path):
    from vlkit.config import DataConfig, SourceConfig
    from vlkit.instruct import generate_llava

    kinds = ["conversation", "detail", "reasoning"]
    generate_llava("scenes", tmp_path, count=3, kinds=kinds, progress=False)
    written = {r["id"]: r for r in json.loads((tmp_path / "llava.json").read_text())}
    data = vlkit.data.build_dataset(DataConfig(sources=[SourceConfig(kind="scenes-instruct")]))
    for i in range(3):
        sample, record = data[i], written[f"scenes-0-{i:06d}-{kinds[i]}"]
        roles = {"human": "user", "gpt": "assistant"}
        assert sample["messages"] == [
            {"role": roles[t["from"]], "content": t["value"]} for t in record["conversations"]
        ]
        assert np.array_equal(
            sample["image"], np.asarray(Image.open(tmp_path / record["image"]).convert("RGB"))
        )


def test_vision_tower_starts_from_a_contrastive_run(tiny_run, tiny_vlm_cfg):
    from safetensors.torch import load_file as load

    tiny_vlm_cfg.vlm.vision_init, tiny_vlm_cfg.model.vision_width = (
        str(tiny_run),
        32,
    )  # the run's tower is 16 wide
    tiny_vlm_cfg.vlm.freeze_vision, tiny_vlm_cfg.train.steps = True, 1
    model = vlkit.load(train(tiny_vlm_cfg, progress=False)).model
    clip = load(latest_checkpoint(tiny_run) / "model.safetensors")
    tower = {k.removeprefix("image_tower."): v for k, v in clip.items() if k.startswith("image_tower.")}
    assert tower and all(torch.equal(v, model.vision.state_dict()[k]) for k, v in tower.items())
    assert model.connector.linear_1.in_features == 16


def test_grounding_weight_adds_a_trained_head_that_leaves_generation_and_export_alone(tiny_vlm_cfg, tmp_path):
    from vlkit.export import export

    tiny_vlm_cfg.vlm.grounding_weight = 1.0
    model, objective = _grounding_model(tiny_vlm_cfg)
    batch = objective.collate([(i, vlkit.data.open_named("scenes")[i]) for i in range(4)])
    assert (batch["grounding_labels"] != IGNORE).sum() > 0  # captions and some questions name objects
    plain = {k: v for k, v in batch.items() if not k.startswith("grounding")}
    with torch.no_grad():
        assert objective.loss(model, batch) > model(**plain).loss  # the cross-entropy is added
    objective.loss(model, batch).backward()
    assert model.grounding_head.cells.weight.grad.abs().sum() > 0

    run = train(tiny_vlm_cfg, progress=False)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logged if "loss" in r]
    assert len(steps) == tiny_vlm_cfg.train.steps  # log_every 1: every step logs the head's loss too
    assert all(0 <= r["grounding_accuracy"] <= 1 and r["grounding_loss"] > 0 for r in steps)
    assert any(k.startswith("grounding_head.") for k in _weights(run))
    assert len(vlkit.load(run).answer([vlkit.data.open_named("scenes")[0]["image"]], ["What color?"])) == 1
    export(run, tmp_path / "hf")  # the training-only head is not part of the LLaVA layout
    assert (tmp_path / "hf" / "config.json").exists()


def test_grounding_layer_picks_the_hidden_state_and_a_missing_one_is_named(tiny_vlm_cfg):
    tiny_vlm_cfg.vlm.grounding_weight, tiny_vlm_cfg.vlm.grounding_layer = 1.0, 1
    model, objective = _grounding_model(tiny_vlm_cfg)
    batch = objective.collate([(i, vlkit.data.open_named("scenes")[i]) for i in range(4)])
    model.eval()
    with torch.no_grad():
        out = model(**batch)
        embeds = model.input_embeddings(batch["input_ids"], model.image_embeds(batch["pixel_values"]))
        states = model.language_model(
            inputs_embeds=embeds, attention_mask=batch["attention_mask"], output_hidden_states=True
        ).hidden_states
        after_layer_1 = model.grounding_head(
            states[1], batch["grounding_positions"], batch["grounding_labels"]
        )
        last = model.grounding_head(states[-1], batch["grounding_positions"], batch["grounding_labels"])
    assert torch.allclose(out.grounding_loss, after_layer_1[0]) and not torch.allclose(
        out.grounding_loss, last[0]
    )
    model.cfg.grounding_layer = 7  # a 2-layer LM has 3 hidden states
    with pytest.raises(ValueError, match="vlm.grounding_layer=7: the language model has 3 hidden states"):
        objective.loss(model, batch)


def _grounding_model(cfg):
    from vlkit.models.build import build_model
    from vlkit.train.loop import tokenizer_texts

    model = build_model(cfg, texts=tokenizer_texts(cfg, vlkit.data.open_named("scenes")))
    return model, GenerativeObjective(model)
