"""Training conversations: how samples become chat turns (captions, QA turns, question noise,
the short-answer instruction), their encoding and label masks, and batches run as length groups
(`src/vlkit/train/generative.py`)."""

import numpy as np
import pytest
import torch

import vlkit
from vlkit.data.conversations import SHORT_ANSWER
from vlkit.models.build import load_model
from vlkit.models.language_models import train_chat_tokenizer
from vlkit.train.checkpoint import latest_checkpoint
from vlkit.train.generative import (
    IGNORE,
    SHAPE_MULTIPLE,
    GenerativeObjective,
    chatml_segments,
    encode_conversation,
    encode_conversations,
    equal_groups,
    fixed_width,
    length_groups,
    noisy_question,
    sample_messages,
    template_segments,
)

TEXTS = ["a small red circle left of a large blue star.", "What color is the circle? red", "How many? 2"] * 20
CONVERSATION = [
    {"role": "user", "content": "<image>\nWhat color is the circle?"},
    {"role": "assistant", "content": "red"},
    {"role": "user", "content": "How many shapes?"},
    {"role": "assistant", "content": "2"},
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_chat_tokenizer(TEXTS, vocab_size=300, max_length=64)


def test_labels_cover_assistant_turns_only(tokenizer):
    ids, labels = encode_conversation(tokenizer, CONVERSATION, image_tokens=5, max_length=200, where="t")
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert ids.count(image_id) == 5  # the placeholder expanded to the image's token count
    trained = [t for t, lab in zip(ids, labels) if lab != IGNORE]
    assert tokenizer.decode(trained) == "red<|im_end|>\n2<|im_end|>\n"  # answers + end of turn, nothing else
    assert all(lab in (IGNORE, t) for t, lab in zip(ids, labels))
    full = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert tokenizer.decode([t for t in ids if t != image_id]) == full.replace("<image>", "")


def test_chatml_written_out_renders_as_the_template_and_a_batch_encodes_as_each_alone(tokenizer):
    # conversations of every shape training makes: a system turn, several questions, a last user turn
    system = {"role": "system", "content": "Be brief."}
    tail = {"role": "user", "content": "And the star?"}
    conversations = [CONVERSATION, CONVERSATION[:2], [system, *CONVERSATION], [*CONVERSATION, tail]]
    conversations.append(
        [{"role": "user", "content": "<image>\n  spaced \n"}, {"role": "assistant", "content": " a b "}]
    )
    for messages in conversations:
        assert chatml_segments(messages) == template_segments(tokenizer, messages)
    together = encode_conversations(
        tokenizer, conversations, 5, 200, [f"c{k}" for k in range(len(conversations))]
    )
    assert together == [encode_conversation(tokenizer, m, 5, 200, "c") for m in conversations]
    assert together[3] == together[0] != together[1]  # a last question with no answer is not trained on


def test_truncation_never_cuts_image_tokens_nor_trains_on_nothing(tokenizer):
    with pytest.raises(ValueError, match="truncation never cuts image tokens"):
        encode_conversation(tokenizer, CONVERSATION, image_tokens=40, max_length=30, where="sample 'x'")
    ids, _ = encode_conversation(tokenizer, CONVERSATION, image_tokens=5, max_length=500, where="x")
    first_answer_end = len(encode_conversation(tokenizer, CONVERSATION[:2], 5, 500, "x")[0])
    with pytest.raises(ValueError, match="no answer tokens left"):  # cut inside the first prompt
        encode_conversation(
            tokenizer, CONVERSATION, image_tokens=5, max_length=first_answer_end - 6, where="x"
        )
    cut, labels = encode_conversation(tokenizer, CONVERSATION, 5, first_answer_end, "x")  # 2nd turn cut off
    assert len(cut) == first_answer_end < len(ids) and any(lab != IGNORE for lab in labels)


def test_image_token_mismatch_is_an_error(tiny_vlm_run):
    model, _ = load_model(latest_checkpoint(tiny_vlm_run))
    ids = torch.full((1, 10), model.image_token_id)  # 10 placeholders, but the image gives 16 features
    with pytest.raises(ValueError, match="image tokens and image features do not match"):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=torch.zeros(1, 3, 32, 32))


def test_all_masked_batch_is_a_loud_error(tiny_vlm_run):
    model, _ = load_model(latest_checkpoint(tiny_vlm_run))
    objective = GenerativeObjective(model)
    batch = objective.collate([(0, vlkit.data.open_named("scenes")[0])])
    batch["labels"][:] = IGNORE
    with pytest.raises(ValueError, match="labels are all masked"):
        objective.loss(model, batch)


def test_samples_become_captions_or_qa_turns():
    sample = vlkit.data.open_named("scenes")[3]
    kinds = set()
    for seed in range(20):
        messages = sample_messages(sample, ["caption", "vqa"], np.random.default_rng(seed))
        assert messages[0]["content"].startswith("<image>\n") and messages[-1]["role"] == "assistant"
        kinds.add("caption" if messages[1]["content"] in sample["captions"] else "vqa")
    assert kinds == {"caption", "vqa"}
    qa = sample_messages(sample, ["vqa"], np.random.default_rng(0))
    answers = {q["answer"] for q in sample["qa"]}
    assert all(m["content"] in answers for m in qa if m["role"] == "assistant")


def test_question_noise_adds_made_up_words_and_keeps_the_question_words_in_order():
    question = "Is there a red circle in the image?"
    rng = np.random.default_rng(0)
    noisy = [noisy_question(question, 0.25, rng) for _ in range(400)]
    added = []
    for text in noisy:
        words = text.split(" ")
        kept = iter(words)
        assert all(w in kept for w in question.split(" ")), text  # the question's words, in order
        extra = words[:]
        for w in question.split(" "):
            extra.remove(w)
        assert all(w.isalpha() and w.islower() and 3 <= len(w) <= 8 for w in extra), text
        added += extra
    gaps = 400 * len(question.split(" "))
    assert 0.2 < len(added) / gaps < 0.3  # one made-up word per gap at the given chance
    assert len(set(added)) > 0.9 * len(added)  # made up afresh, not drawn from a short list
    assert noisy_question(question, 0.0, rng) == question


def test_question_noise_changes_questions_only_and_zero_leaves_the_stream_as_it_was():
    sample = vlkit.data.open_named("scenes")[3]
    plain = sample_messages(sample, ["vqa"], np.random.default_rng(5))
    assert sample_messages(sample, ["vqa"], np.random.default_rng(5), 0.0) == plain
    noisy = sample_messages(sample, ["vqa"], np.random.default_rng(5), 0.5)
    assert [m["content"] for m in noisy if m["role"] == "assistant"] == [
        m["content"] for m in plain if m["role"] == "assistant"
    ]
    assert [m["content"] for m in noisy if m["role"] == "user"] != [
        m["content"] for m in plain if m["role"] == "user"
    ]
    captions = [
        sample_messages(sample, ["caption"], np.random.default_rng(s), 0.5)[1]["content"] for s in range(5)
    ]
    assert set(captions) <= set(sample["captions"])


def test_short_answer_once_keeps_the_instruction_on_the_first_question_only():
    sample = vlkit.data.open_named("scenes")[3]
    every = sample_messages(sample, ["vqa"], np.random.default_rng(5))
    once = sample_messages(sample, ["vqa"], np.random.default_rng(5), short_answer_once=True)
    asked = [m["content"] for m in every if m["role"] == "user"]
    assert len(asked) > 1 and all(q.endswith(f" {SHORT_ANSWER}") for q in asked)
    # the same questions and answers; the instruction only after the first question
    assert [m["content"] for m in once if m["role"] == "user"] == [
        asked[0],
        *(q.removesuffix(f" {SHORT_ANSWER}") for q in asked[1:]),
    ]
    assert [m for m in once if m["role"] == "assistant"] == [m for m in every if m["role"] == "assistant"]


def test_length_groups_split_where_padding_is_least_and_keep_every_row_once():
    lengths = [5, 3, 9, 9, 2, 2, 8]
    assert length_groups(lengths, 1) == [[2, 3, 6, 0, 1, 4, 5]]
    # [9 9 8 5] + [3 2 2]: 4 x 9 + 3 x 3 = 45 padded tokens, the least of any two groups
    assert length_groups(lengths, 2) == [[2, 3, 6, 0], [1, 4, 5]]
    assert length_groups(lengths, 3) == [[2, 3, 6], [0], [1, 4, 5]]
    # exactly that many groups (each process of a distributed run runs as many passes)
    assert length_groups([4, 4, 4], 3) == [[0], [1], [2]]
    assert length_groups([7], 2) == [[0]]  # at most one group per row


def test_fixed_shapes_group_equal_row_counts_and_round_widths_within_the_limit():
    lengths = [5, 3, 9, 9, 2, 2, 8]
    assert equal_groups(lengths, 3) == [[2, 3, 6], [0, 1, 4], [5]]  # longest first, 3 + 3 + 1
    assert equal_groups(lengths, 1) == [[2, 3, 6, 0, 1, 4, 5]]
    assert equal_groups([7], 2) == [[0]]  # at most one group per row
    # exactly that many groups (each process of a distributed run runs as many passes)
    assert [len(g) for g in equal_groups([3, 1, 2, 5], 3)] == [2, 1, 1]
    assert [len(g) for g in equal_groups([1] * 64, 3)] == [22, 22, 20]
    assert [len(g) for g in equal_groups([1] * 8, 3)] == [3, 3, 2]
    assert fixed_width(17, 16, 192) == 32 and fixed_width(32, 16, 192) == 32
    assert fixed_width(185, 16, 192) == 192  # 192, not 208: never past max_length
    assert fixed_width(200, 16, 192) == 200  # a row already past it keeps its width
    assert fixed_width(17, 1, 192) == 17


def test_fixed_shapes_repeat_across_batches_and_give_the_whole_batch_loss_and_gradients():
    """`vlm.fixed_shapes`: every pass SHAPE_MULTIPLE-wide steps and equal row counts, so that
    another batch runs the same shapes; the same loss and gradients as the whole batch."""
    model, objective, scenes = _tiny_vlm_objective()
    objective.shape_multiple = SHAPE_MULTIPLE
    model.cfg.length_groups = 2
    shapes = set()
    for start in (0, 8, 16, 24):
        batch = objective.collate([(i, scenes[i]) for i in range(start, start + 8)])
        assert batch["input_ids"].shape[1] % SHAPE_MULTIPLE == 0
        parts = objective.parts(batch)
        assert [p["input_ids"].shape[0] for p in parts] == [4, 4]
        assert all(p["input_ids"].shape[1] % SHAPE_MULTIPLE == 0 for p in parts)
        shapes |= {tuple(p["input_ids"].shape) for p in parts}
    assert len(shapes) <= 4  # 8 passes, at most 4 shapes: they recur from batch to batch
    model.cfg.length_groups = 1
    whole, whole_grads = _loss_and_grads(model, objective, objective.parts(batch))
    model.cfg.length_groups = 2
    split, split_grads = _loss_and_grads(model, objective, objective.parts(batch))
    torch.testing.assert_close(split, whole)
    assert split_grads.keys() == whole_grads.keys() and whole_grads
    for name, grad in whole_grads.items():
        torch.testing.assert_close(split_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def _tiny_vlm_objective():
    from tests.conftest import make_tiny_vlm_cfg
    from vlkit.models.build import build_model
    from vlkit.train.loop import tokenizer_texts

    cfg = make_tiny_vlm_cfg()
    scenes = vlkit.data.open_named("scenes")
    model = build_model(cfg, texts=tokenizer_texts(cfg, scenes))
    return model, GenerativeObjective(model), scenes  # captions and QA turns: rows of different lengths


def _loss_and_grads(model, objective, parts):
    model.zero_grad()
    losses = [objective.loss(model, p) for p in parts]
    for loss in losses:
        loss.backward()
    return sum(losses), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_a_batch_run_as_length_groups_gives_the_whole_batch_loss_and_gradients():
    model, objective, scenes = _tiny_vlm_objective()
    batch = objective.collate([(i, scenes[i]) for i in range(8)])
    lengths = batch["attention_mask"].sum(1)
    assert lengths.max() - lengths.min() >= 10
    model.cfg.length_groups = 1
    whole, whole_grads = _loss_and_grads(model, objective, objective.parts(batch))
    model.cfg.length_groups = 2
    parts = objective.parts(batch)
    assert len(parts) == 2 and sum(p["input_ids"].shape[0] for p in parts) == 8
    assert sum(p["input_ids"].numel() for p in parts) < batch["input_ids"].numel()  # less padding
    split, split_grads = _loss_and_grads(model, objective, parts)
    torch.testing.assert_close(split, whole)
    assert split_grads.keys() == whole_grads.keys() and whole_grads
    for name, grad in whole_grads.items():
        torch.testing.assert_close(split_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_grounding_targets_mark_where_each_named_object_ends(tokenizer):
    from vlkit.data.scenes_text import REGIONS
    from vlkit.train.grounding import grounding_targets

    turns = [
        {"role": "user", "content": "<image>\nIs the red circle left or right of the blue star?"},
        {"role": "assistant", "content": "left"},
    ]
    ids, _ = encode_conversation(tokenizer, turns, image_tokens=4, max_length=64, where="test")
    regions = {"red circle": "top left", "blue star": "right", "green square": "center"}
    targets = grounding_targets(tokenizer, ids, regions)
    # each target sits on the last token of a name the text holds (the square is not named)
    text_to = [tokenizer.decode(ids[: p + 1]).replace(" ", "") for p, _ in targets]
    assert len(text_to) == 2 and text_to[0].endswith("redcircle") and text_to[1].endswith("bluestar")
    assert [REGIONS[cell] for _, cell in targets] == ["top left", "right"]
    with pytest.raises(ValueError, match="'red circle' lies in 'upstairs'"):
        grounding_targets(tokenizer, ids, {"red circle": "upstairs"})
