"""Evaluation metrics shared by training-time eval and `vlkit eval`: the one metrics module.

- contrastive: `zero_shot_accuracy`, `retrieval_recall`, `winoground_scores` (dicts of floats)
- VQA v2: `vqa_normalize`, `vqa_accuracy` (the official answer processing and formula)
- captions: `caption_scores` (BLEU-1..4, METEOR, ROUGE-L, CIDEr, computed by pycocoevalcap),
  `caption_coverage` (does a caption name each object of the scene by colour and shape)
- boxes and masks: `box_iou`, `grounding_accuracy`, `random_pick_accuracy`, `mean_iou`
- binary and exact: `binary_auroc` (Hateful Memes), `exact_match` (SNLI-VE, NLVR2)

Array arguments may be numpy arrays, torch tensors or nested lists; results are plain Python
floats, so they can go straight into a JSONL log.

Ties. `torch.topk` and `argsort` order tied scores arbitrarily, which makes top-k metrics depend
on the implementation. Here the rank of the correct item is the number of *wrong* candidates
that score at least as high as it, and it is "in the top k" when that rank is < k. Ties are
therefore resolved against the correct item: a collapsed model that scores every candidate
identically gets (near) zero, never full marks. NaN scores are rejected at the boundary.
Winoground keeps its paper's strict `>`, where a tie is a failure too.

References: CLIP_benchmark (zero-shot top-k, mean per-class recall = sklearn's balanced
accuracy, retrieval recall@k with "any correct text in the top k"), Thrush et al. 2022,
"Winoground", section 3.2; the VQA v2 evaluation script (vqaEval.py); pycocoevalcap's
COCOEvalCap; scikit-learn's roc_auc_score.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np

# Upper bound on elements of the temporary boolean matrix built per chunk (64M bools = 64 MB), so
# a 5k x 25k retrieval eval never holds more than one chunk-sized comparison in memory.
_CHUNK_ELEMENTS = 1 << 26


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """A numpy view of a numpy array, a torch tensor (any device/dtype) or a nested list."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype.itemsize < 4:
            x = x.float()  # bfloat16 has no numpy equivalent; float16 comparisons are fine as float32
        return x.numpy()
    try:
        return np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name}: cannot be read as an array ({err})") from err


def _scores(x: Any, name: str, ndim: int) -> np.ndarray:
    """A real-valued score array with `ndim` dimensions and no NaN (infinities are allowed)."""
    arr = _to_numpy(x, name)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        bad = np.argwhere(np.isnan(arr))[0].tolist()
        raise ValueError(f"{name}: contains NaN (first at index {bad}); scores must be comparable")
    return arr


def _indices(x: Any, name: str, length: int, upper: int, upper_name: str) -> np.ndarray:
    """An int64[length] array of indices in [0, upper)."""
    arr = _to_numpy(x, name)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"{name}: expected shape ({length},), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integer indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= upper):
        bad = int(arr[(arr < 0) | (arr >= upper)][0])
        raise ValueError(
            f"{name}: value {bad} is out of range; valid values are 0..{upper - 1} ({upper_name})"
        )
    return arr


def _check_ks(ks: Sequence[int]) -> list[int]:
    ks = list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in ks):
        raise ValueError(f"ks: expected a non-empty list of positive integers, got {ks}")
    return [int(k) for k in ks]


def _recall_at(ranks: np.ndarray, ks: list[int], prefix: str) -> dict[str, float]:
    # rank < k needs no clamping: a rank never exceeds (candidates - 1), so k > candidates is all-correct.
    return {f"{prefix}{k}": float(np.mean(ranks < k)) for k in ks}


def zero_shot_accuracy(logits: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy and mean per-class recall of zero-shot classification.

    logits: float[N, C] (image-vs-class-prompt scores); labels: int[N] in [0, C).
    Returns {"top1": ..., "top5": ..., "mean_per_class_recall": ...}, one `top{k}` per k. A k
    larger than C is clamped to C, i.e. every sample counts as correct. Mean per-class recall is
    the average, over the classes present in `labels`, of each class's top-1 recall (the
    CLIP_benchmark / sklearn balanced-accuracy definition). Ties count against the true class
    (see the module docstring).
    """
    logits = _scores(logits, "logits", ndim=2)
    n, num_classes = logits.shape
    if n == 0 or num_classes == 0:
        raise ValueError(f"logits: need at least one sample and one class, got shape {logits.shape}")
    labels = _indices(labels, "labels", n, num_classes, f"logits has {num_classes} classes")
    ks = _check_ks(ks)

    true_score = logits[np.arange(n), labels]  # (N,)
    ranks = (logits >= true_score[:, None]).sum(axis=1) - 1  # (N,) wrong classes scoring >= the true one
    result = _recall_at(ranks, ks, prefix="top")

    classes, class_of_sample = np.unique(labels, return_inverse=True)
    hits = np.bincount(class_of_sample, weights=ranks == 0, minlength=len(classes))
    totals = np.bincount(class_of_sample, minlength=len(classes))
    result["mean_per_class_recall"] = float(np.mean(hits / totals))
    return result


def retrieval_recall(similarity: Any, image_of_text: Any, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Text-to-image and image-to-text recall@k for a caption set with several texts per image.

    similarity: float[n_images, n_texts]; image_of_text: int[n_texts], the image each text describes.
    Returns {"t2i_R@k": ..., "i2t_R@k": ...} for each k.
    - t2i: fraction of texts whose image is among the text's top-k images.
    - i2t: fraction of images with at least one of their texts among the image's top-k texts
      (the CLIP_benchmark / COCO Karpathy protocol). Images without any text are left out.
    Ties count against the correct item (see the module docstring).
    """
    sim = _scores(similarity, "similarity", ndim=2)
    n_images, n_texts = sim.shape
    if n_images == 0 or n_texts == 0:
        raise ValueError(f"similarity: need at least one image and one text, got shape {sim.shape}")
    image_of_text = _indices(
        image_of_text, "image_of_text", n_texts, n_images, f"similarity has {n_images} image rows"
    )
    ks = _check_ks(ks)
    text_ids = np.arange(n_texts)
    true_score = sim[image_of_text, text_ids]  # (n_texts,) each text's score with its own image

    # t2i: per text (column), count the other images scoring at least as high as the text's own image.
    t2i_ranks = np.empty(n_texts, dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // n_images)
    for start in range(0, n_texts, step):
        cols = slice(start, start + step)
        t2i_ranks[cols] = (sim[:, cols] >= true_score[None, cols]).sum(axis=0) - 1

    # i2t: "any correct text in the top k" holds exactly when the image's best-scoring correct text
    # is in the top k, and every text above that one is incorrect, so its rank is a plain count.
    best_true = np.full(n_images, -np.inf, dtype=np.float64)
    np.maximum.at(best_true, image_of_text, true_score.astype(np.float64))
    has_text = np.bincount(image_of_text, minlength=n_images) > 0
    # The image's own texts tied with its best one are correct, so they don't count against it.
    own_at_best = np.bincount(
        image_of_text, weights=true_score >= best_true[image_of_text], minlength=n_images
    ).astype(np.int64)
    i2t_ranks = np.empty(n_images, dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // n_texts)
    for start in range(0, n_images, step):
        rows = slice(start, start + step)
        i2t_ranks[rows] = (sim[rows] >= best_true[rows, None]).sum(axis=1) - own_at_best[rows]

    return _recall_at(t2i_ranks, ks, prefix="t2i_R@") | _recall_at(i2t_ranks[has_text], ks, prefix="i2t_R@")


def retrieval_chance(texts_per_image: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """The expected recall@k of a random ranking, in `retrieval_recall`'s keys.

    t2i: one true image among n: min(k, n) / n. i2t: an image with c of the T texts is a hit when
    any of them is among k random texts: 1 - C(T - c, k) / C(T, k), averaged over images with texts.
    """
    from math import comb

    counts = [int(c) for c in texts_per_image]
    if not counts or min(counts) < 0 or sum(counts) == 0:
        raise ValueError(
            f"texts_per_image: need non-negative counts with at least one text, got {counts[:10]}"
        )
    n, total, with_text = len(counts), sum(counts), [c for c in counts if c > 0]
    out = {}
    for k in _check_ks(ks):
        out[f"t2i_R@{k}"] = min(k, n) / n
        # k >= T: every text is in the top k
        miss = [comb(total - c, k) / comb(total, k) if k < total else 0.0 for c in with_text]
        out[f"i2t_R@{k}"] = 1 - float(np.mean(miss))
    return out


def _caption_owners(captions: Sequence[Sequence[str]]) -> tuple[list[str], dict[str, list[int]]]:
    """Every caption (case and surrounding space ignored), flattened in order, and the images
    whose caption set holds each distinct text."""
    owners: dict[str, list[int]] = {}
    for i, texts in enumerate(captions):
        for t in dict.fromkeys(t.strip().lower() for t in texts):
            owners.setdefault(t, []).append(i)
    return [t.strip().lower() for texts in captions for t in texts], owners


def shared_queries(captions: Sequence[Sequence[str]]) -> list[bool]:
    """Per text query (every caption of every image, in order): is the same text (case and
    surrounding space ignored) also a caption of another image? Such a query has more than one
    right answer, so a model can miss it at R@1 while being right."""
    texts, owners = _caption_owners(captions)
    return [len(owners[t]) > 1 for t in texts]


def t2i_recall_any(
    similarity: Any, captions: Sequence[Sequence[str]], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Text-to-image recall@k where a hit is any image whose caption set contains the query text
    (case and surrounding space ignored), not only the image the query came from.

    similarity: float[n_images, n_texts], texts in the order of `captions` flattened.
    → {"t2i_R@k_any": ...}. Ties count against the hit, as in `retrieval_recall`.
    """
    sim = _scores(similarity, "similarity", ndim=2)
    texts, owners = _caption_owners(captions)
    if sim.shape != (len(captions), len(texts)):
        raise ValueError(
            f"similarity: shape {sim.shape}, expected ({len(captions)}, {len(texts)}) from captions"
        )
    ranks = np.empty(len(texts), dtype=np.int64)
    for j, t in enumerate(texts):  # one column at a time: no (n_images, n_texts) match matrix
        column, hits = sim[:, j], owners[t]
        best = column[hits].max()  # the query's best-scoring matching image
        ranks[j] = (column >= best).sum() - (column[hits] >= best).sum()  # non-matching at or above it
    return {f"{key}_any": v for key, v in _recall_at(ranks, _check_ks(ks), prefix="t2i_R@").items()}


def winoground_scores(s_c0_i0: Any, s_c0_i1: Any, s_c1_i0: Any, s_c1_i1: Any) -> dict[str, float]:
    """Winoground text, image and group scores (Thrush et al. 2022), as fractions of examples.

    Each argument is float[N]: the score of caption c (0/1) with image i (0/1) for every example.
    - text: the right caption wins for both images: s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1).
    - image: the right image wins for both captions: s(c0,i0) > s(c0,i1) and s(c1,i1) > s(c1,i0).
    - group: both. Comparisons are strict, as in the paper, so a tie is a failure.
    """
    names = ("s_c0_i0", "s_c0_i1", "s_c1_i0", "s_c1_i1")
    c0i0, c0i1, c1i0, c1i1 = (
        _scores(x, name, ndim=1) for x, name in zip((s_c0_i0, s_c0_i1, s_c1_i0, s_c1_i1), names)
    )
    shapes = {name: arr.shape for name, arr in zip(names, (c0i0, c0i1, c1i0, c1i1))}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"winoground scores must all have the same shape, got {shapes}")
    if c0i0.size == 0:
        raise ValueError("winoground scores: need at least one example, got empty arrays")

    text = (c0i0 > c1i0) & (c1i1 > c0i1)
    image = (c0i0 > c0i1) & (c1i1 > c1i0)
    return {
        "text": float(text.mean()),
        "image": float(image.mean()),
        "group": float((text & image).mean()),
    }


# --- VQA v2 ----------------------------------------------------------------------------------
# The official answer processing of the VQA v2 evaluation script (GT-Vision-Lab/VQA,
# PythonEvaluationTools/vqaEvaluation/vqaEval.py), reproduced with its quirks, since those quirks
# are what published numbers were computed with:
# - a punctuation mark is deleted when it touches a space somewhere in the answer (or the answer
#   holds a digit-comma-digit), and replaced by a space otherwise ("don't" -> "don t");
# - the period regex has a no-op lookahead "(?!<=\d)" where a lookbehind was meant, and the script
#   passes re.UNICODE (= 32) as `count`, so at most 32 periods go;
# - most contraction targets use a typographic apostrophe (U+2019), a few a straight one;
# - ground-truth answers get only the punctuation step, and only when they are not all identical.
_VQA_PUNCT = [";", ":", r"/", "'", "[", "]", '"', "(", ")", "=", "+", "\\", "_", ">", "<", "@", "`", ",", "?"]  # fmt: skip
_VQA_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_VQA_COMMA = re.compile(r"(\d)(\,)(\d)")
_VQA_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_VQA_ARTICLES = ("a", "an", "the")
_Q = "\u2019"  # the typographic apostrophe of the official contractions table
# key -> value pairs of the official table; "`" stands for U+2019, "'" is a straight apostrophe.
_VQA_CONTRACTIONS_SPEC = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn`t`ve
couldnt`ve=couldn`t`ve didnt=didn`t doesnt=doesn`t dont=don`t hadnt=hadn`t hadnt`ve=hadn`t`ve
hadn'tve=hadn`t`ve hasnt=hasn`t havent=haven`t hed=he`d hed`ve=he`d`ve he`dve=he`d`ve hes=he`s
howd=how`d howll=how`ll hows=how`s Id`ve=I`d`ve I`dve=I`d`ve Im=I`m Ive=I`ve isnt=isn`t itd=it`d
itd`ve=it`d`ve it`dve=it`d`ve itll=it`ll let`s=let`s maam=ma`am mightnt=mightn`t
mightnt`ve=mightn`t`ve mightn`tve=mightn`t`ve mightve=might`ve mustnt=mustn`t mustve=must`ve
neednt=needn`t notve=not`ve oclock=o`clock oughtnt=oughtn`t ow`s`at=`ow`s`at `ows`at=`ow`s`at
`ow`sat=`ow`s`at shant=shan`t shed`ve=she`d`ve she`dve=she`d`ve she`s=she`s shouldve=should`ve
shouldnt=shouldn`t shouldnt`ve=shouldn`t`ve shouldn`tve=shouldn`t`ve somebody`d=somebodyd
somebodyd`ve=somebody`d`ve somebody`dve=somebody`d`ve somebodyll=somebody`ll somebodys=somebody`s
someoned=someone`d someoned`ve=someone`d`ve someone`dve=someone`d`ve someonell=someone`ll
someones=someone`s somethingd=something`d somethingd`ve=something`d`ve something`dve=something`d`ve
somethingll=something`ll thats=that`s thered=there`d thered`ve=there`d`ve there`dve=there`d`ve
therere=there`re theres=there`s theyd=they`d theyd`ve=they`d`ve they`dve=they`d`ve theyll=they`ll
theyre=they`re theyve=they`ve twas=`twas wasnt=wasn`t wed`ve=we`d`ve we`dve=we`d`ve weve=we've
werent=weren`t whatll=what`ll whatre=what`re whats=what`s whatve=what`ve whens=when`s
whered=where`d wheres=where's whereve=where`ve whod=who`d whod`ve=who`d`ve who`dve=who`d`ve
wholl=who`ll whos=who`s whove=who've whyll=why`ll whyre=why`re whys=why`s wont=won`t
wouldve=would`ve wouldnt=wouldn`t wouldnt`ve=wouldn`t`ve wouldn`tve=wouldn`t`ve yall=y`all
yall`ll=y`all`ll y`allll=y`all`ll yall`d`ve=y`all`d`ve y`alld`ve=y`all`d`ve y`all`dve=y`all`d`ve
youd=you`d youd`ve=you`d`ve you`dve=you`d`ve youll=you`ll youre=you`re youve=you`ve
"""
_VQA_CONTRACTIONS = dict(pair.replace("`", _Q).split("=") for pair in _VQA_CONTRACTIONS_SPEC.split())


def _vqa_punctuation(text: str) -> str:
    """The official `processPunctuation` (see the notes above)."""
    out = text
    strip_all = _VQA_COMMA.search(text) is not None
    for p in _VQA_PUNCT:
        if strip_all or (p + " " in text or " " + p in text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _VQA_PERIOD.sub("", out, count=32)


def _vqa_digits_articles(text: str) -> str:
    """The official `processDigitArticle`: lower-case, number words → digits, drop articles,
    restore contractions."""
    words = [_VQA_NUMBERS.get(w, w) for w in text.lower().split()]
    words = [_VQA_CONTRACTIONS.get(w, w) for w in words if w not in _VQA_ARTICLES]
    return " ".join(words)


def vqa_normalize(answer: str) -> str:
    """A predicted answer as the official VQA v2 evaluation compares it: newlines and tabs to
    spaces, stripped, then punctuation, digit and article processing."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return _vqa_digits_articles(_vqa_punctuation(answer))


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Official VQA v2 accuracy of one prediction against the human answers (10 in VQA v2).

    For each annotator, min(1, (number of the *other* annotators who gave the prediction) / 3),
    averaged over annotators: 3 or more matching humans out of 10 give 1.0, fewer give partial
    credit. A prediction is normalised with `vqa_normalize`; the human answers only get the
    punctuation step, and only when they disagree, exactly as in the official script (the
    released annotations are already normalised).
    """
    if isinstance(answers, str) or not answers:
        raise ValueError(f"answers: expected a non-empty list of strings, got {answers!r}")
    pred = vqa_normalize(prediction)
    gts = [_vqa_punctuation(a) for a in answers] if len(set(answers)) > 1 else list(answers)
    per_annotator = []
    for i in range(len(gts)):
        matches = sum(1 for j, gt in enumerate(gts) if j != i and gt == pred)
        per_annotator.append(min(1.0, matches / 3))
    return float(sum(per_annotator) / len(per_annotator))


def question_only_prior(questions: Sequence[str], answers: Sequence[list[str]]) -> list[float]:
    """A blind baseline: the VQA accuracy of answering each question with the most common answer
    to the same question in these examples, without looking at any image. `questions` are the
    keys that count as "the same question": templates with the named objects masked ("Is there a
    <color> <shape>?"), or the texts themselves.

    Fitted on the examples it scores, so it is an upper bound on what the question alone gives
    (a key seen once scores 1: mask what is specific to the image); a model near it answers from
    the question, not the picture. → one accuracy per example.
    """
    if len(questions) != len(answers):
        raise ValueError(f"question_only_prior: {len(questions)} questions vs {len(answers)} answer lists")
    votes: dict[str, dict[str, int]] = {}
    for q, gts in zip(questions, answers):
        for a in gts:
            votes.setdefault(q, {})[a] = votes.setdefault(q, {}).get(a, 0) + 1
    majority = {q: max(sorted(c), key=c.get) for q, c in votes.items()}  # ties: alphabetical
    return [vqa_accuracy(majority[q], gts) for q, gts in zip(questions, answers)]


# --- captions --------------------------------------------------------------------------------


_METEOR: list = []  # the process's one METEOR scorer (see _meteor)


def _meteor():
    """pycocoevalcap's METEOR scorer, started once per process and reused: each start is a Java
    process that loads its paraphrase tables (~5 s), and every EVAL request carries all the
    statistics it scores, so one process gives the same scores as a fresh one per call. A
    process that has ended is started again."""
    from pycocoevalcap.meteor.meteor import Meteor

    if not _METEOR or _METEOR[0].meteor_p.poll() is not None:
        _METEOR[:] = [Meteor()]
    return _METEOR[0]


def caption_scores(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr over a caption set, computed by pycocoevalcap itself.

    predictions: image id → one generated caption; references: image id → its reference
    captions. Both are tokenised by pycocoevalcap's PTB tokenizer (Stanford CoreNLP, Java), as
    COCOEvalCap does, so the numbers equal the COCO caption evaluation (SPICE is not computed).
    CIDEr's document frequencies come from `references`, so it depends on the whole set.
    """
    if not predictions:
        raise ValueError("caption_scores: predictions is empty")
    if set(predictions) != set(references):
        missing = sorted(set(predictions) ^ set(references))[:5]
        raise ValueError(f"caption_scores: predictions and references cover different ids, e.g. {missing}")
    for key, refs in references.items():
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{key!r}]: expected a non-empty list of captions, got {refs!r}")
    if shutil.which("java") is None:
        raise RuntimeError(
            "caption_scores needs Java for pycocoevalcap's PTB tokenizer and METEOR; install a Java "
            "runtime (Debian: apt-get install default-jre-headless, done by scripts/setup.sh)"
        )
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    keys = sorted(references)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in references[k]] for k in keys})
    res = tokenizer.tokenize({k: [{"caption": predictions[k]}] for k in keys})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"BLEU-{n}": float(b) for n, b in enumerate(bleu, start=1)}
    scores["METEOR"] = float(_meteor().compute_score(gts, res)[0])
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return scores


def names_object(caption: str, color: str, shape: str) -> bool:
    """The caption mentions a `color` `shape` ("a red circle"; a size word may stand between:
    "the small red circle")."""
    return re.search(rf"\b{color} (?:small |large )?{shape}", caption.lower()) is not None


def caption_coverage(
    captions: Sequence[str], objects: Sequence[Sequence[tuple[str, str]]]
) -> dict[str, float]:
    """How many of each image's objects, given as (colour, shape), its caption names
    (`names_object`): the share over all objects (`caption_objects_named`) and the share of
    captions that name every object of their image (`caption_all_named`)."""
    if len(captions) != len(objects):
        raise ValueError(f"caption_coverage: {len(captions)} captions vs {len(objects)} object lists")
    named = [[names_object(c, color, shape) for color, shape in objs] for c, objs in zip(captions, objects)]
    return {
        "caption_objects_named": sum(map(sum, named)) / max(1, sum(map(len, named))),
        "caption_all_named": sum(all(n) for n in named) / max(1, len(named)),
    }


# --- boxes, masks, binary scores, exact match ------------------------------------------------


def box_iou(a: Any, b: Any) -> Any:
    """Intersection over union of boxes (x1, y1, x2, y2).

    a: float[N, 4], b: float[M, 4] → float[N, M]; two single boxes float[4] → a float.
    A box with x2 < x1 or y2 < y1 is rejected; two empty boxes have IoU 0.
    """
    single = np.ndim(a) == 1 and np.ndim(b) == 1
    a = _boxes(np.atleast_2d(_to_numpy(a, "a")), "a")
    b = _boxes(np.atleast_2d(_to_numpy(b, "b")), "b")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    inter = np.clip(rb - lt, 0, None).prod(axis=2)  # (N, M)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return float(iou[0, 0]) if single else iou


def _boxes(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: expected boxes of shape (N, 4) as (x1, y1, x2, y2), got {arr.shape}")
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN")
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        raise ValueError(
            f"{name}: box {arr[bad][0].tolist()} has x2 < x1 or y2 < y1; expected (x1, y1, x2, y2)"
        )
    return arr


def grounding_accuracy(pred_boxes: Any, gt_boxes: Any, threshold: float = 0.5) -> float:
    """Fraction of referring expressions whose predicted box has IoU >= threshold with the true
    box (the RefCOCO "Acc@0.5" protocol). pred_boxes, gt_boxes: float[N, 4] (x1, y1, x2, y2)."""
    pred = _boxes(np.atleast_2d(_to_numpy(pred_boxes, "pred_boxes")), "pred_boxes")
    gt = _boxes(np.atleast_2d(_to_numpy(gt_boxes, "gt_boxes")), "gt_boxes")
    if pred.shape != gt.shape or len(pred) == 0:
        raise ValueError(f"pred_boxes {pred.shape} and gt_boxes {gt.shape}: need the same non-zero count")
    ious = np.array([box_iou(p, g) for p, g in zip(pred, gt)])
    return float(np.mean(ious >= threshold))


def random_pick_accuracy(candidates: Any, gt_boxes: Any, threshold: float = 0.5) -> float:
    """Grounding's chance: the expected Acc@0.5 of picking one of each example's candidate boxes
    at random. candidates: per example float[K, 4]; gt_boxes: float[N, 4] (x1, y1, x2, y2)."""
    hits = [np.mean(box_iou(c, [g])[:, 0] >= threshold) for c, g in zip(candidates, gt_boxes, strict=True)]
    return float(np.mean(hits))


def mean_iou(pred_masks: Any, gt_masks: Any) -> float:
    """Mean over samples of the IoU of a predicted and a true binary mask (referring
    segmentation's mIoU). pred_masks, gt_masks: bool[N, H, W] (or lists of bool[H, W] of
    matching shapes; non-zero = inside). Two empty masks count as IoU 1 (nothing to find, found)."""
    if len(pred_masks) != len(gt_masks) or len(gt_masks) == 0:
        raise ValueError(
            f"mean_iou: {len(pred_masks)} predicted vs {len(gt_masks)} true masks; need equal, > 0"
        )
    ious = []
    for i, (p, g) in enumerate(zip(pred_masks, gt_masks)):
        p, g = _to_numpy(p, f"pred_masks[{i}]").astype(bool), _to_numpy(g, f"gt_masks[{i}]").astype(bool)
        if p.shape != g.shape or p.ndim != 2:
            raise ValueError(f"mask {i}: predicted shape {p.shape} vs true {g.shape}; need the same (H, W)")
        union = np.logical_or(p, g).sum()
        ious.append(np.logical_and(p, g).sum() / union if union else 1.0)
    return float(np.mean(ious))


def binary_auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve (Hateful Memes' main metric): the probability that a random
    positive scores above a random negative, ties counting one half (= sklearn's roc_auc_score).
    scores: float[N]; labels: int[N] in {0, 1} with both classes present."""
    s = _scores(scores, "scores", ndim=1).astype(np.float64)
    y = _to_numpy(labels, "labels")
    if y.shape != s.shape:
        raise ValueError(f"labels: expected shape {s.shape}, got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels: expected 0/1, got values {sorted(set(y.tolist()))[:5]}")
    y = y.astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"binary_auroc: needs both classes, got {n_pos} positives and {n_neg} negatives")
    # Mann-Whitney U with average ranks for ties.
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0  # 1-based average rank of each tied group
    ranks[order] = np.repeat(avg, counts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def exact_match(predictions: Sequence[str], answers: Sequence[str | Sequence[str]]) -> float:
    """Fraction of predictions equal to their answer (or to any of several), compared after
    stripping surrounding whitespace and lower-casing (SNLI-VE labels, NLVR2 true/false)."""
    if len(predictions) != len(answers) or not answers:
        raise ValueError(
            f"exact_match: {len(predictions)} predictions vs {len(answers)} answers; need equal, > 0"
        )
    hits = 0
    for pred, gold in zip(predictions, answers):
        options = [gold] if isinstance(gold, str) else list(gold)
        hits += pred.strip().lower() in {o.strip().lower() for o in options}
    return hits / len(answers)
