"""Metrics: hand-computed answers (ties, multi-caption images, k > C) and plain-loop references."""

import numpy as np
import pytest
import torch

from vlkit import metrics
from vlkit.metrics import retrieval_recall, winoground_scores, zero_shot_accuracy

# --- zero-shot -------------------------------------------------------------------------------

# 5 samples, 4 classes; class 3 never appears in the labels, so it must not count in the mean.
ZS_LOGITS = np.array(
    [
        [0.9, 0.1, 0.0, -1.0],  # label 0: no wrong class scores >= 0.9 -> rank 0
        [0.5, 0.5, 0.2, -1.0],  # label 1: wrong class 0 ties at 0.5, and a tie counts against -> rank 1
        [0.3, 0.2, 0.1, -1.0],  # label 2: wrong classes 0 (0.3) and 1 (0.2) are >= 0.1 -> rank 2
        [0.1, 0.8, 0.05, -1.0],  # label 0: only wrong class 1 (0.8) is >= 0.1 -> rank 1
        [0.0, 0.9, 0.1, -1.0],  # label 1: no wrong class scores >= 0.9 -> rank 0
    ]
)
ZS_LABELS = np.array([0, 1, 2, 0, 1])


def test_zero_shot_known_answer_with_ties_and_k_above_num_classes():
    result = zero_shot_accuracy(ZS_LOGITS, ZS_LABELS, ks=(1, 2, 5))
    # ranks = [0, 1, 2, 1, 0]: top1 = 2/5 (samples 0, 4), top2 = 4/5 (all but sample 2); top5 is
    # clamped to all 4 classes (a rank is at most 3 < 5), so every sample is correct.
    # per-class top-1 recall: class 0 = 1/2 (sample 0), class 1 = 1/2 (sample 4, not the tied
    # sample 1), class 2 = 0/1; class 3 has no samples -> mean (1/2 + 1/2 + 0) / 3 = 1/3.
    assert result == {"top1": 0.4, "top2": 0.8, "top5": 1.0, "mean_per_class_recall": 1 / 3}


def _zero_shot_by_sorting(logits, labels, ks):
    """Reference for tie-free inputs: rank classes by sorting, as a top-k list would."""
    n, _ = logits.shape
    result = {}
    for k in ks:
        correct = 0
        for i in range(n):
            order = sorted(range(logits.shape[1]), key=lambda c, i=i: -logits[i, c])
            correct += int(labels[i] in order[:k])
        result[f"top{k}"] = correct / n
    recalls = []
    for c in sorted(set(labels.tolist())):
        members = [i for i in range(n) if labels[i] == c]
        recalls.append(sum(int(np.argmax(logits[i]) == c) for i in members) / len(members))
    result["mean_per_class_recall"] = sum(recalls) / len(recalls)
    return result


def _zero_shot_by_counting(logits, labels, ks):
    """Reference for any input: the documented rule, as loops.

    The rank is the number of wrong classes scoring at least as high (>=) as the true class, so a
    tie counts against the true class; the sample is in the top k when its rank is < k.
    """
    n, num_classes = logits.shape
    ranks = []
    for i in range(n):
        true_score = logits[i, labels[i]]
        ranks.append(sum(1 for c in range(num_classes) if c != labels[i] and logits[i, c] >= true_score))
    result = {f"top{k}": sum(r < k for r in ranks) / n for k in ks}
    recalls = []
    for c in sorted(set(labels.tolist())):
        members = [i for i in range(n) if labels[i] == c]
        recalls.append(sum(ranks[i] == 0 for i in members) / len(members))
    result["mean_per_class_recall"] = sum(recalls) / len(recalls)
    return result


@pytest.mark.parametrize("seed", range(3))
def test_zero_shot_matches_loop_references(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, size=40)
    ks = (1, 3, 5, 10)
    continuous = rng.normal(size=(40, 7))
    expected = _zero_shot_by_sorting(continuous, labels, ks)
    assert zero_shot_accuracy(continuous, labels, ks) == pytest.approx(expected)
    tied = rng.integers(0, 3, size=(40, 7)).astype(np.float32)  # many ties
    expected = _zero_shot_by_counting(tied, labels, ks)
    assert zero_shot_accuracy(tied, labels, ks) == pytest.approx(expected)


def test_zero_shot_torch_numpy_and_lists_agree():
    expected = zero_shot_accuracy(ZS_LOGITS, ZS_LABELS)
    assert (
        zero_shot_accuracy(torch.tensor(ZS_LOGITS, requires_grad=True), torch.tensor(ZS_LABELS)) == expected
    )
    assert zero_shot_accuracy(ZS_LOGITS.tolist(), ZS_LABELS.tolist()) == expected
    as_bf16 = torch.tensor([[0.5, 1.0], [2.0, 0.25]], dtype=torch.bfloat16)
    assert zero_shot_accuracy(as_bf16, torch.tensor([1, 0]))["top1"] == 1.0


def test_zero_shot_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"labels: expected shape \(5,\), got \(4,\)"):
        zero_shot_accuracy(ZS_LOGITS, ZS_LABELS[:4])
    with pytest.raises(ValueError, match=r"labels: value 4 is out of range; valid values are 0..3"):
        zero_shot_accuracy(ZS_LOGITS, [0, 1, 2, 4, 1])
    with pytest.raises(ValueError, match="labels: expected integer"):
        zero_shot_accuracy(ZS_LOGITS, ZS_LABELS.astype(float))
    with pytest.raises(ValueError, match=r"logits: expected a 2-D array, got shape \(4,\)"):
        zero_shot_accuracy(np.zeros(4), [0])
    with pytest.raises(ValueError, match="logits: contains NaN"):
        zero_shot_accuracy(np.full((2, 3), np.nan), [0, 1])
    with pytest.raises(ValueError, match="ks: expected"):
        zero_shot_accuracy(ZS_LOGITS, ZS_LABELS, ks=(0,))


# --- retrieval -------------------------------------------------------------------------------

# 3 images x 4 texts; texts 0,1 describe image 0, texts 2,3 image 1; image 2 has no text.
RET_SIM = np.array(
    [
        [0.9, 0.2, 0.5, 0.1],
        [0.3, 0.8, 0.6, 0.7],
        [0.8, 0.1, 0.6, 0.2],
    ]
)
RET_IMAGE_OF_TEXT = np.array([0, 0, 1, 1])


def test_retrieval_known_answer_with_ties_and_multi_caption_images():
    result = retrieval_recall(RET_SIM, RET_IMAGE_OF_TEXT, ks=(1, 2, 5))
    # t2i ranks (wrong images scoring >= the text's own image): text0 0 (0.9 beats 0.3, 0.8),
    # text1 1 (image 1 scores 0.8 >= 0.2), text2 1 (image 2 ties image 1 at 0.6, and a tie counts
    # against the correct image), text3 0 (0.7 beats 0.1, 0.2) -> R@1 = 2/4, R@2 = R@5 = 4/4.
    # i2t (wrong texts scoring >= the image's best own text): image 0's best text (0.9) beats the
    # wrong texts 2, 3 (0.5, 0.1) -> rank 0; image 1's best own text (0.7) is beaten by the wrong
    # text 1 (0.8) -> rank 1; image 2 has no text and is left out (so i2t_R@1 is 1/2, not 1/3).
    assert result == {
        "t2i_R@1": 0.5,
        "t2i_R@2": 1.0,
        "t2i_R@5": 1.0,
        "i2t_R@1": 0.5,
        "i2t_R@2": 1.0,
        "i2t_R@5": 1.0,
    }


def _retrieval_by_sorting(sim, image_of_text, ks):
    """Reference for tie-free inputs: the CLIP_benchmark definition with explicit top-k lists."""
    n_images, n_texts = sim.shape
    result = {}
    for k in ks:
        hits = 0
        for j in range(n_texts):
            top = sorted(range(n_images), key=lambda i, j=j: -sim[i, j])[:k]
            hits += int(image_of_text[j] in top)
        result[f"t2i_R@{k}"] = hits / n_texts
    for k in ks:
        hits, counted = 0, 0
        for i in range(n_images):
            own = {j for j in range(n_texts) if image_of_text[j] == i}
            if not own:
                continue
            counted += 1
            top = sorted(range(n_texts), key=lambda j, i=i: -sim[i, j])[:k]
            hits += int(any(j in own for j in top))
        result[f"i2t_R@{k}"] = hits / counted
    return result


def _retrieval_by_counting(sim, image_of_text, ks):
    """Reference for any input: per correct item, count the WRONG candidates scoring >= it (loops).

    t2i: a text's rank is the number of other images scoring >= its own image. i2t: an image's rank
    is, minimised over its own texts, the number of texts describing other images that score >= that
    own text; its own texts are never wrong candidates, so ties among them do not count against it.
    """
    n_images, n_texts = sim.shape
    t2i = []
    for j in range(n_texts):
        true_image = image_of_text[j]
        t2i.append(sum(1 for i in range(n_images) if i != true_image and sim[i, j] >= sim[true_image, j]))
    i2t = []
    for i in range(n_images):
        own = [j for j in range(n_texts) if image_of_text[j] == i]
        wrong = [t for t in range(n_texts) if image_of_text[t] != i]
        if own:
            i2t.append(min(sum(1 for t in wrong if sim[i, t] >= sim[i, j]) for j in own))
    result = {f"t2i_R@{k}": sum(r < k for r in t2i) / len(t2i) for k in ks}
    return result | {f"i2t_R@{k}": sum(r < k for r in i2t) / len(i2t) for k in ks}


@pytest.mark.parametrize("seed", range(3))
def test_retrieval_matches_loop_references(seed):
    rng = np.random.default_rng(seed)
    n_images, n_texts = 12, 30
    image_of_text = rng.integers(0, n_images, size=n_texts)  # some images get 0 texts, some several
    ks = (1, 5, 10, 50)
    continuous = rng.normal(size=(n_images, n_texts))
    expected = _retrieval_by_sorting(continuous, image_of_text, ks)
    assert retrieval_recall(continuous, image_of_text, ks) == pytest.approx(expected)
    tied = rng.integers(0, 3, size=(n_images, n_texts)).astype(np.float32)
    expected = _retrieval_by_counting(tied, image_of_text, ks)
    assert retrieval_recall(tied, image_of_text, ks) == pytest.approx(expected)


def test_collapsed_model_gets_zero_top1_and_zero_recall_at_1():
    # A model that scores every candidate identically must not get credit from ties.
    # zero-shot: 4 samples x 3 classes, all 0.5 -> every sample has 2 tied wrong classes, rank 2.
    collapsed_logits = np.full((4, 3), 0.5)
    result = zero_shot_accuracy(collapsed_logits, [0, 1, 2, 0], ks=(1, 2, 3))
    assert result == {"top1": 0.0, "top2": 0.0, "top3": 1.0, "mean_per_class_recall": 0.0}
    # retrieval: 3 images x 6 texts (2 per image), all 0.5. t2i: each text ties its 2 wrong images
    # -> rank 2. i2t: each image ties its 4 wrong texts -> rank 4; its own tied text does not count,
    # so the rank is 4, not 5, and R@5 is full marks.
    collapsed_sim = np.full((3, 6), 0.5)
    result = retrieval_recall(collapsed_sim, [0, 0, 1, 1, 2, 2], ks=(1, 2, 3, 4, 5))
    assert result == {
        "t2i_R@1": 0.0,
        "t2i_R@2": 0.0,
        "t2i_R@3": 1.0,
        "t2i_R@4": 1.0,
        "t2i_R@5": 1.0,
        "i2t_R@1": 0.0,
        "i2t_R@2": 0.0,
        "i2t_R@3": 0.0,
        "i2t_R@4": 0.0,
        "i2t_R@5": 1.0,
    }


def test_retrieval_chunked_equals_unchunked(monkeypatch):
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(50, 120)).astype(np.float32)
    image_of_text = np.repeat(np.arange(40), 3)  # 10 images without text
    whole = retrieval_recall(sim, image_of_text)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 7 * 50)  # 7-column / 2-row chunks, uneven tails
    assert retrieval_recall(sim, image_of_text) == whole


def test_retrieval_torch_and_numpy_agree():
    expected = retrieval_recall(RET_SIM, RET_IMAGE_OF_TEXT)
    assert retrieval_recall(torch.tensor(RET_SIM), torch.tensor(RET_IMAGE_OF_TEXT)) == expected
    assert retrieval_recall(RET_SIM.tolist(), RET_IMAGE_OF_TEXT.tolist()) == expected


def test_retrieval_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"image_of_text: expected shape \(4,\), got \(3,\)"):
        retrieval_recall(RET_SIM, [0, 0, 1])
    with pytest.raises(ValueError, match=r"image_of_text: value 3 is out of range; valid values are 0..2"):
        retrieval_recall(RET_SIM, [0, 0, 1, 3])
    with pytest.raises(ValueError, match="similarity: contains NaN"):
        retrieval_recall(np.where(RET_SIM > 0.85, np.nan, RET_SIM), RET_IMAGE_OF_TEXT)


# --- winoground ------------------------------------------------------------------------------


def test_winoground_known_answer():
    # ex0 all correct; ex1 image only; ex2 ties (strict > fails both); ex3 text only.
    c0i0 = [1.0, 1.0, 1.0, 0.5]
    c0i1 = [0.0, 0.5, 0.0, 0.6]
    c1i0 = [0.0, 0.2, 1.0, 0.1]
    c1i1 = [1.0, 0.4, 1.0, 0.7]
    assert winoground_scores(c0i0, c0i1, c1i0, c1i1) == {"text": 0.5, "image": 0.5, "group": 0.25}
    as_torch = [torch.tensor(x) for x in (c0i0, c0i1, c1i0, c1i1)]
    assert winoground_scores(*as_torch) == {"text": 0.5, "image": 0.5, "group": 0.25}


def test_winoground_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"same shape.*'s_c1_i1': \(2,\)"):
        winoground_scores([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0])


# --- VQA v2 (official answer processing and accuracy) -----------------------------------------
# Expected normalisations worked out by hand from the official vqaEval.py rules (see metrics.py).


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two", "2"),  # number words -> digits, lower-cased
        ("a dog.", "dog"),  # article dropped, trailing period stripped
        ("The  Dog\n", "dog"),  # whitespace collapsed
        ("dont", "don\u2019t"),  # contractions restored with the typographic apostrophe
        ("whats up", "what\u2019s up"),
        ("don't", "don t"),  # "'" touches no space -> replaced by a space, as in the official script
        ("it's ok ,", "it s ok"),  # the rule is per mark: "," touches a space (deleted), "'" does not
        ("1,000 people", "1000 people"),  # digit-comma-digit -> marks deleted, not spaced
        ("3.5", "3.5"),  # a period before a digit stays
        ("yes!", "yes!"),  # "!" is not in the official punctuation list
        ("left/right", "left right"),
        ("none", "0"),
    ],
)
def test_vqa_normalize_known_answers(raw, expected):
    assert metrics.vqa_normalize(raw) == expected


def test_vqa_accuracy_known_answers():
    ten = ["2"] * 3 + ["3"] * 7
    # 3 humans said "2": each of them sees 2 others (2/3), each of the 7 others sees 3 (1) -> 0.9
    assert metrics.vqa_accuracy("two", ten) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)
    assert metrics.vqa_accuracy("3", ten) == 1.0
    assert metrics.vqa_accuracy("4", ten) == 0.0
    one_match = ["cat"] + ["dog"] * 9  # 1 human: 9 annotators see 1 match (1/3), he sees none
    assert metrics.vqa_accuracy("A cat.", one_match) == pytest.approx(9 * (1 / 3) / 10)
    # Ground truth gets only the punctuation step, and only when the humans disagree:
    assert metrics.vqa_accuracy("two", ["two"] * 10) == 0.0  # prediction becomes "2", answers stay "two"
    # ... and it is not stripped afterwards: "yes?" becomes "yes " (mark -> space), never "yes".
    assert metrics.vqa_accuracy("yes", ["yes?"] * 4 + ["no"] * 6) == 0.0
    assert metrics.vqa_accuracy("yes", ["yes"] * 4 + ["no"] * 6) == 1.0
    with pytest.raises(ValueError, match="answers: expected a non-empty list"):
        metrics.vqa_accuracy("yes", "yes")


# --- boxes, masks, AUROC, exact match ----------------------------------------------------------


def test_box_iou_known_answers():
    assert metrics.box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)  # 1 / (4 + 4 - 1)
    assert metrics.box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    matrix = metrics.box_iou([[0, 0, 2, 2], [0, 0, 1, 1]], [[0, 0, 2, 2], [1, 1, 3, 3], [0, 0, 1, 2]])
    np.testing.assert_allclose(matrix, [[1, 1 / 7, 0.5], [0.25, 0, 0.5]])
    with pytest.raises(ValueError, match="x2 < x1"):
        metrics.box_iou([2, 0, 1, 1], [0, 0, 1, 1])


def test_grounding_accuracy_threshold_is_inclusive():
    gt = [[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2]]
    pred = [[0, 0, 2, 2], [0, 0, 2, 1], [1, 1, 3, 3]]  # IoU 1, exactly 0.5, 1/7
    assert metrics.grounding_accuracy(pred, gt) == pytest.approx(2 / 3)
    assert metrics.grounding_accuracy(pred, gt, threshold=0.51) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="same non-zero count"):
        metrics.grounding_accuracy(pred[:2], gt)


def test_mean_iou_known_answer():
    gt = np.zeros((2, 4, 4), bool)
    gt[0, :2, :2] = True  # 4 pixels
    pred = np.zeros((2, 4, 4), bool)
    pred[0, :2, :1] = True  # 2 of them -> IoU 0.5
    # sample 1: both empty -> 1.0
    assert metrics.mean_iou(pred, gt) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="mask 0"):
        metrics.mean_iou([np.zeros((2, 2))], [np.zeros((3, 3))])


def test_binary_auroc_known_answer_and_sklearn_parity():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4, 0.8>0.1, 0.4=0.4 -> 1/2, 0.4>0.1) -> 3.5/4
    assert metrics.binary_auroc([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.integers(0, 2, 200)
        scores = rng.integers(0, 10, 200) / 10 + rng.normal(size=200) * (rng.random() < 0.5)
        assert metrics.binary_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="needs both classes"):
        metrics.binary_auroc([0.1, 0.2], [1, 1])


def test_exact_match():
    assert (
        metrics.exact_match([" Yes", "no", "entailment"], ["yes", "yes", ["neutral", "Entailment"]]) == 2 / 3
    )


# --- captions (pycocoevalcap, needs Java) ------------------------------------------------------


@pytest.mark.slow  # two JVM start-ups per scoring run (~8 s each)
def test_caption_scores_equal_cocoevalcap_on_coco_format_files(tmp_path, monkeypatch):
    import json

    from pycocoevalcap import eval as cocoeval
    from pycocotools.coco import COCO

    refs = {
        1: ["A red circle on the left.", "a small red circle", "A circle that is red, at left."],
        2: ["Two blue squares.", "two squares, both blue", "A pair of blue squares!"],
        3: ["A yellow star above a green triangle.", "a star and a triangle"],
    }
    preds = {1: "a red circle", 2: "a blue square and a blue square", 3: "a green star"}
    gt_file = tmp_path / "captions_val2014.json"
    gt_file.write_text(
        json.dumps(
            {
                "images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in refs],
                "annotations": [
                    {"id": 10 * i + j, "image_id": i, "caption": c}
                    for i, caps in refs.items()
                    for j, c in enumerate(caps)
                ],
            }
        )
    )
    res_file = tmp_path / "captions_val2014_results.json"
    res_file.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in preds.items()]))
    coco = COCO(str(gt_file))
    coco_eval = cocoeval.COCOEvalCap(coco, coco.loadRes(str(res_file)))

    class NoSpice:  # SPICE downloads Stanford models at first use; we do not report it
        def compute_score(self, gts, res):
            return 0.0, [0.0] * len(gts)

        def method(self):
            return "SPICE"

    monkeypatch.setattr(cocoeval, "Spice", NoSpice)
    coco_eval.evaluate()
    # vlkit's METEOR process is reused across calls: one that scored another set first gives the same
    metrics.caption_scores({"9": "two green stars"}, {"9": ["a green star", "stars"]})
    ours = metrics.caption_scores({str(i): c for i, c in preds.items()}, {str(i): r for i, r in refs.items()})
    names = {"BLEU-1": "Bleu_1", "BLEU-2": "Bleu_2", "BLEU-3": "Bleu_3", "BLEU-4": "Bleu_4"}
    names |= {"METEOR": "METEOR", "ROUGE-L": "ROUGE_L", "CIDEr": "CIDEr"}
    assert set(ours) == set(names)
    for ours_name, theirs in names.items():
        assert ours[ours_name] == pytest.approx(coco_eval.eval[theirs], abs=1e-6), ours_name
    assert 0 < ours["BLEU-1"] < 1 and ours["CIDEr"] > 0


def test_caption_scores_reject_mismatched_ids():
    with pytest.raises(ValueError, match="different ids"):
        metrics.caption_scores({"1": "a cat"}, {"2": ["a dog"]})


def test_question_only_prior_answers_each_question_with_its_majority():
    from vlkit.metrics import question_only_prior

    questions = ["Is there a red circle?", "Is there a red circle?", "Is there a red circle?", "How many?"]
    answers = [["no"] * 10, ["no"] * 10, ["yes"] * 10, ["2"] * 10]
    assert question_only_prior(questions, answers) == [1.0, 1.0, 0.0, 1.0]
    # a tie goes to the alphabetically first answer, so the baseline is deterministic
    assert question_only_prior(["q", "q"], [["yes"] * 10, ["no"] * 10]) == [0.0, 1.0]
    with pytest.raises(ValueError, match="2 questions vs 1"):
        question_only_prior(["a", "b"], [["x"]])


def test_retrieval_chance_by_hand_and_by_random_rankings():
    from vlkit.metrics import retrieval_chance

    # 3 images with 2, 1, 1 texts (T = 4): i2t R@1 = mean(1 - C(2,1)/C(4,1), 1 - 3/4, 1 - 3/4) = 1/3
    chance = retrieval_chance([2, 1, 1], ks=(1, 2))
    assert chance["t2i_R@1"] == pytest.approx(1 / 3)
    assert chance["t2i_R@2"] == pytest.approx(2 / 3)
    assert chance["i2t_R@1"] == pytest.approx(1 / 3)
    assert chance["i2t_R@2"] == pytest.approx(np.mean([1 - 1 / 6, 1 - 3 / 6, 1 - 3 / 6]))
    # the mean recall of random similarity matrices converges to it
    rng = np.random.default_rng(0)
    runs = [retrieval_recall(rng.random((3, 4)), [0, 0, 1, 2], ks=(1, 2)) for _ in range(4000)]
    for key, value in chance.items():
        assert np.mean([r[key] for r in runs]) == pytest.approx(value, abs=0.02)
    with pytest.raises(ValueError, match="texts_per_image"):
        retrieval_chance([0, 0])


def test_shared_queries_and_recall_counting_any_image_with_the_query_text():
    from vlkit.metrics import shared_queries, t2i_recall_any

    captions = [["a red circle", "a circle"], ["A red circle "], ["a blue star"]]
    assert shared_queries(captions) == [True, False, True, False]
    # query 0 ("a red circle", image 0) scores image 1 highest: a miss for the strict R@1, a hit
    # when any image captioned "a red circle" counts; query 1 ("a circle") has only image 0.
    sim = np.array(
        [
            [0.5, 0.2, 0.6, 0.1],
            [0.9, 0.8, 0.7, 0.2],
            [0.1, 0.1, 0.1, 0.9],
        ]
    )
    strict = retrieval_recall(sim, [0, 0, 1, 2], ks=(1,))
    assert strict["t2i_R@1"] == pytest.approx(2 / 4)  # queries 2 and 3 right, 0 and 1 wrong
    assert t2i_recall_any(sim, captions, ks=(1,)) == {"t2i_R@1_any": pytest.approx(3 / 4)}


def test_retrieval_chance_when_k_exceeds_the_candidates():
    from vlkit.metrics import retrieval_chance

    assert retrieval_chance([1, 1], ks=(5,)) == {"t2i_R@5": 1.0, "i2t_R@5": 1.0}


def test_caption_coverage_counts_objects_named_by_colour_and_shape():
    from vlkit.metrics import caption_coverage

    captions = [
        "A small red circle left of a blue square.",  # both named (a size word may stand between)
        "a red shape and a circle",  # colour and shape apart: not named
        "the green large star",
    ]
    objects = [
        [("red", "circle"), ("blue", "square")],
        [("red", "circle")],
        [("green", "star"), ("red", "circle")],
    ]
    # objects named: 2 + 0 + 1 of 5; every object named: the first caption of 3
    assert caption_coverage(captions, objects) == {"caption_objects_named": 3 / 5, "caption_all_named": 1 / 3}
    with pytest.raises(ValueError, match="2 captions vs 3 object lists"):
        caption_coverage(captions[:2], objects)


def test_t2i_recall_any_equals_a_brute_force_count_on_random_scores():
    from vlkit.metrics import t2i_recall_any

    rng = np.random.default_rng(1)
    pool = ["a red circle", "a blue star", "two shapes", "a green square"]
    captions = [list(rng.choice(pool, size=2, replace=False)) for _ in range(12)]
    texts = [t for c in captions for t in c]
    sim = rng.integers(0, 5, size=(12, len(texts))).astype(float)  # many ties
    ranks = []
    for j, t in enumerate(texts):
        hits = [i for i, c in enumerate(captions) if t in c]
        best = max(sim[i, j] for i in hits)
        ranks.append(sum(sim[i, j] >= best for i in range(12) if i not in hits))
    expected = {f"t2i_R@{k}_any": float(np.mean(np.array(ranks) < k)) for k in (1, 2, 5)}
    assert t2i_recall_any(sim, captions, ks=(1, 2, 5)) == pytest.approx(expected)
