"""MaGiC search (vlkit.generation.magic), the caption LM it steers (vlkit.train.text_lm) and
`vlkit caption --guided-by CLIP --lm LM`."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vlkit
from vlkit import cli
from vlkit.config import VLMConfig
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.generation.magic import MagicCaptioner, MagicSearch, magic_decode
from vlkit.train.text_lm import CaptionLM, caption_chats, train_caption_lm

TINY_LM = VLMConfig(lm_width=32, lm_layers=2, lm_heads=2, lm_vocab_size=300, max_length=48)
CAPTIONS = ["a red circle", "a blue star above a green square", "two shapes: a red circle and a blue star"]


@pytest.fixture(scope="module")
def caption_lm(tmp_path_factory):
    """gpt-tiny trained on three captions (no image), saved as a transformers folder."""
    folder = tmp_path_factory.mktemp("caption-lm")
    lm, tokenizer = train_caption_lm(CAPTIONS, CaptionLM(lm=TINY_LM, steps=80, batch_size=8, lr=1e-2), folder)
    return lm, tokenizer, folder


def test_caption_chats_put_the_loss_on_the_reply_and_its_end_token(caption_lm):
    _, tokenizer, _ = caption_lm
    (ids, start), *_ = caption_chats(tokenizer, CAPTIONS)
    assert tokenizer.decode(ids[start:]) == "a red circle<|im_end|>"
    assert tokenizer.decode(ids[:start]).endswith("<|im_start|>assistant\n")


def test_the_caption_lm_learns_its_captions_without_an_image(caption_lm):
    lm, tokenizer, _ = caption_lm
    greedy = MagicCaptioner(lm, tokenizer, None, MagicSearch(alpha=0.0, beta=0.0, max_new_tokens=16))
    assert greedy.caption([np.zeros((8, 8, 3), np.uint8)])[0] in CAPTIONS


def test_without_penalty_or_image_the_search_is_greedy_decoding(caption_lm):
    lm, tokenizer, _ = caption_lm
    prompt = MagicCaptioner(lm, tokenizer, None).prompt_ids()
    new = magic_decode(lm, tokenizer, prompt, MagicSearch(k=5, alpha=0.0, beta=0.0, max_new_tokens=8))
    reference = lm.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, eos_token_id=-1)
    reference = reference[0, len(prompt) :].tolist()
    assert new == reference[: len(new)]
    assert len(new) == 8 or reference[len(new)] == tokenizer.eos_token_id


def test_the_degeneration_penalty_matches_a_full_forward_per_candidate(caption_lm):
    """alpha = 1: the first token is the top-k candidate least like the prompt, as SimCTG's penalty
    computed without a cache (each candidate's sequence run whole) says."""
    lm, tokenizer, _ = caption_lm
    prompt, k = MagicCaptioner(lm, tokenizer, None).prompt_ids(), 6
    with torch.no_grad():
        out = lm(torch.tensor([prompt]), output_hidden_states=True)
        candidates = out.logits[0, -1].topk(k).indices.tolist()
        context = F.normalize(out.hidden_states[-1][0], dim=-1)  # (T, D)
        penalties = []
        for c in candidates:
            h = lm(torch.tensor([[*prompt, c]]), output_hidden_states=True).hidden_states[-1][0, -1]
            penalties.append(float((context @ F.normalize(h, dim=-1)).max()))
    expected = candidates[int(np.argmin(penalties))]
    new = magic_decode(lm, tokenizer, prompt, MagicSearch(k=k, alpha=1.0, beta=0.0, max_new_tokens=1))
    assert new[:1] == [expected] or (not new and expected == tokenizer.eos_token_id)


def test_the_image_term_picks_among_the_lm_candidates(caption_lm):
    """A guide that likes one candidate's text makes it the choice; one it likes outside the LM's
    top k cannot be chosen."""
    lm, tokenizer, _ = caption_lm
    prompt = MagicCaptioner(lm, tokenizer, None).prompt_ids()
    ranked = lm(torch.tensor([prompt])).logits[0, -1].argsort(descending=True).tolist()
    for liked, k, expected in ((ranked[2], 4, ranked[2]), (ranked[6], 4, None)):
        word = tokenizer.decode([liked])

        def embed_texts(texts, word=word):
            return np.array([[1.0, 0.0] if t == word else [0.0, 1.0] for t in texts], np.float32)

        search = MagicSearch(k=k, alpha=0.0, beta=100.0, max_new_tokens=1)
        new = magic_decode(lm, tokenizer, prompt, search, torch.tensor([1.0, 0.0]), embed_texts, 100.0)
        if expected is None:
            assert new[0] in ranked[:k] and new[0] != liked
        else:
            assert new == [expected]


def test_magic_captioner_with_a_vlkit_contrastive_model(caption_lm, tiny_run):
    lm, tokenizer, _ = caption_lm
    guide = vlkit.load(tiny_run)
    images = [Scenes(ScenesConfig(image_size=32, seed=5))[i]["image"] for i in range(2)]
    captions = MagicCaptioner(lm, tokenizer, guide, MagicSearch(max_new_tokens=6)).caption(images)
    assert len(captions) == 2 and all(isinstance(c, str) and c for c in captions)


def test_vlkit_train_lm_then_caption_guided_by(tiny_run, tmp_path, capsys, make_unreadable):
    from PIL import Image

    folder = tmp_path / "gpt-captions"
    cli.main(
        [
            "train-lm",
            "--data",
            "scenes",
            "--samples",
            "20",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--out",
            str(folder),
        ]
    )
    assert "gpt-tiny on 100 captions of scenes, 2 steps" in capsys.readouterr().out  # 5 caption styles each
    image = tmp_path / "a.png"
    Image.fromarray(Scenes(ScenesConfig(image_size=32, seed=5))[0]["image"]).save(image)
    bad = make_unreadable(tmp_path / "bad")
    args = ["--guided-by", str(tiny_run), "--lm", str(folder), str(image), str(bad[0])]
    cli.main(["caption", *args, "--max-new-tokens", "6", "--top-k", "4"])
    out, err = capsys.readouterr()
    assert out.startswith(f"{image}\t") and len(out.strip().splitlines()) == 1
    assert "1 of 2 images could not be read" in err
    with pytest.raises(SystemExit):
        cli.main(["caption", "--guided-by", str(tiny_run), str(image)])
    assert "--guided-by and --lm go together" in capsys.readouterr().err
