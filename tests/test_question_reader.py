"""gpt-tiny-reader: user turns read by the frozen whole MiniLM, every other token by its word table."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from tests.conftest import make_tiny_vlm_cfg
from vlkit.export import export_llava
from vlkit.models.build import build_model, load_model, save_model
from vlkit.models.question_reader import QuestionReader, length_chunks, user_words
from vlkit.models.registry import minilm_l6_dir


@pytest.fixture(scope="module")
def reader_model():
    cfg = make_tiny_vlm_cfg()
    cfg.vlm.language_model, cfg.vlm.logits_at_answers = "gpt-tiny-reader", True
    return build_model(cfg), cfg


def chat(tokenizer, turns: list[tuple[str, str]], generation_prompt: bool = False) -> torch.Tensor:
    messages = [{"role": r, "content": c} for r, c in turns]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


def test_user_words_are_the_user_turns_words_only(reader_model):
    model, _ = reader_model
    tok = model.tokenizer
    ids = chat(tok, [("user", "<image>\nwhat color is the star?"), ("assistant", "red")])
    reader = model.base_language_model().get_input_embeddings()
    mask, _ = user_words(ids, reader.turn_start, reader.user, len(reader.words.table), reader.pad)
    assert tok.convert_ids_to_tokens(ids[0][mask[0]].tolist()) == ["what", "color", "is", "the", "star", "?"]


def test_a_question_is_read_by_minilm_in_context_and_answers_by_the_word_table(reader_model):
    model, _ = reader_model
    tok = model.tokenizer
    reader = model.base_language_model().get_input_embeddings()
    assert isinstance(reader, QuestionReader)
    assert not any(n.startswith("_encoder") for n, _ in reader.named_parameters())
    question = "is the star visible anywhere?"
    ids = chat(tok, [("user", question), ("assistant", "yes")])
    with torch.no_grad():
        got = reader(ids)[0]
        # the same states from a separately loaded MiniLM: [CLS] question [SEP], mean-pooled too
        encoder = AutoModel.from_pretrained(minilm_l6_dir()).eval()
        words = tok(question, add_special_tokens=False)["input_ids"]
        hidden = encoder(input_ids=torch.tensor([[reader.cls, *words, reader.sep]])).last_hidden_state[0]
        want = reader.tokens(hidden[1:-1]) + reader.sentence(hidden.mean(0))
        start = ids[0].tolist().index(words[0])
        torch.testing.assert_close(got[start : start + len(words)], want, atol=1e-5, rtol=1e-5)
        # the same word in another question is read differently: in context
        where = chat(tok, [("user", "where is the star?"), ("assistant", "left")])
        star = tok.convert_tokens_to_ids("star")
        assert not torch.allclose(got[ids[0] == star], reader(where)[0][where[0] == star])
        # in a left-padded batch, each row reads as it does alone
        pad = torch.full((1, len(ids[0]) - len(where[0])), tok.pad_token_id)
        batch = reader(torch.cat([ids, torch.cat([pad, where], 1)]))
        torch.testing.assert_close(batch[0], got)
        torch.testing.assert_close(batch[1, pad.shape[1] :], reader(where)[0])
        # answer tokens and ChatML markers: the word table, as a token alone reads
        torch.testing.assert_close(got[-2:], reader.words(ids[0, -2:]))
        # a turn never sees a later one: the first turn reads the same with a second after it
        two = reader(chat(tok, [("user", question), ("assistant", "yes"), ("user", "and the circle?")]))[0]
        torch.testing.assert_close(two[: len(got)], got)


def test_greedy_generation_reads_as_training_does(reader_model):
    """Generated tokens, fed one at a time through the word table, are the argmax of the
    teacher-forced forward pass over the prompt and them (where the question is read at once)."""
    model, _ = reader_model
    torch.manual_seed(0)
    for p in model.parameters():  # a random model that does not repeat one token
        p.data.normal_(0, 0.5)
    model.eval()
    ids = chat(model.tokenizer, [("user", "what color is the square in the corner?")], generation_prompt=True)
    new = model.generate(ids, torch.ones_like(ids), max_new_tokens=6, do_sample=False, eos_token_id=None)
    assert new.shape[1] == 6 and len(set(new[0].tolist())) > 1
    whole = torch.cat([ids, new], 1)
    with torch.no_grad():
        logits = model(whole, torch.ones_like(whole)).logits[0]
    assert logits[ids.shape[1] - 1 : -1].argmax(-1).tolist() == new[0].tolist()


def test_reader_reloads_exactly_without_storing_minilm_and_is_not_exported(reader_model, tmp_path):
    model, cfg = reader_model
    save_model(model, cfg, tmp_path / "m")
    saved = load_file(tmp_path / "m" / "model.safetensors")
    embedding = sorted(k for k in saved if ".embed_tokens." in k)
    assert embedding == [
        f"language_model.model.embed_tokens.{k}"
        for k in ("sentence.weight", "tokens.weight", "words.added", "words.proj.weight")
    ], embedding
    loaded, _ = load_model(tmp_path / "m")
    ids = chat(model.tokenizer, [("user", "count the shapes."), ("assistant", "2")])
    with torch.no_grad():
        want = model.base_language_model()(input_ids=ids).logits
        got = loaded.base_language_model()(input_ids=ids).logits
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="'gpt-tiny-reader' reads user turns through a sentence encoder"):
        export_llava(tmp_path / "m", tmp_path / "out")


def test_turns_read_under_inference_mode_do_not_break_training_after(reader_model):
    """Evaluation runs under inference_mode between training steps: what it reads is not cached."""
    model, _ = reader_model
    reader = model.base_language_model().get_input_embeddings()
    ids = chat(model.tokenizer, [("user", "which shape is green here?"), ("assistant", "star")])
    with torch.inference_mode():
        evaluated = reader(ids)
    trained = reader(ids)
    trained.sum().backward()
    assert reader.sentence.weight.grad is not None
    torch.testing.assert_close(trained.detach(), evaluated.clone())


def test_turns_are_encoded_in_batches_of_similar_length_and_read_as_alone():
    turns = [tuple(range(n)) for n in (3, 20, 4, 19, 3, 12, 5)]
    chunks = length_chunks(turns, padding=0.15)
    assert sorted(t for c in chunks for t in c) == sorted(turns) and len(chunks) > 1
    for chunk in chunks:
        sizes = [len(t) + 2 for t in chunk]
        assert sizes == sorted(sizes) and sum(sizes) >= 0.85 * len(sizes) * max(sizes)
    assert length_chunks(turns, padding=1.0) == [sorted(turns, key=len)]


def test_a_reader_of_the_same_encoder_folder_finds_the_turns_another_read(reader_model):
    """A staged recipe's second stage builds a new reader: the turns the first read are not
    encoded again. Several lengths in one read (batches of similar length) read as each alone."""
    model, cfg = reader_model
    tok = model.tokenizer
    questions = ["is there a star?", "how many red circles are there in this picture, top or bottom?"]
    questions += ["why?", "is there a cat?"]  # the first and the last: one batch of similar length
    ids = [chat(tok, [("user", q), ("assistant", "yes")]) for q in questions]
    width = max(i.shape[1] for i in ids)
    batch = torch.cat([torch.cat([torch.full((1, width - i.shape[1]), tok.pad_token_id), i], 1) for i in ids])
    first = model.base_language_model().get_input_embeddings()
    with torch.no_grad():
        first._cache.clear()
        together = first(batch)  # every turn encoded now, in batches of similar length
        alone = []
        for i in ids:
            first._cache.clear()
            alone.append(first(i)[0])
        first(batch)  # cached again
    for row, i, want in zip(together, ids, alone, strict=True):
        torch.testing.assert_close(row[width - i.shape[1] :], want, atol=1e-5, rtol=1e-5)
    second = build_model(cfg).base_language_model().get_input_embeddings()
    second.load_state_dict(first.state_dict())

    def not_again(turns):
        raise AssertionError(f"{len(turns)} turns encoded again")

    second._encode = not_again
    with torch.no_grad():
        torch.testing.assert_close(second(batch), together)


def test_under_bf16_autocast_the_encoder_is_cast_once_and_its_turns_cached_apart(reader_model):
    """A bf16 training step reads turns through a bf16 copy of the frozen encoder, made once (not
    22M weights cast at every call), close to the fp32 reading; the two readings are cached apart."""
    model, _ = reader_model
    reader = model.base_language_model().get_input_embeddings()
    ids = chat(model.tokenizer, [("user", "what colour has the small triangle?"), ("assistant", "red")])
    with torch.no_grad():
        fp32 = reader(ids)
        fp32_cache = reader._cache
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = reader(ids)
            bf16_cache = reader._cache
            copy = reader._encoder_now()
            assert copy is reader._encoder_now() and copy is not reader._encoder[0]
            assert {p.dtype for p in copy.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in reader._encoder[0].parameters()} == {torch.float32}
    assert reader._encoder_now() is reader._encoder[0]  # outside autocast: the fp32 encoder
    # the turn is cached twice, as each precision read it: a bf16 step is not served fp32 readings
    (turn,) = reader.user_turns(ids)[1]
    assert bf16_cache is not fp32_cache and turn in bf16_cache and turn in fp32_cache
    assert not torch.equal(bf16_cache[turn][0], fp32_cache[turn][0])
    assert torch.nn.functional.cosine_similarity(bf16.float(), fp32, dim=-1).min() > 0.99
