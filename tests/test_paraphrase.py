"""The held-out question wordings: every training form has one, and no training source uses them."""

import pytest

from vlkit.data.instruct_scenes import InstructScenes
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.eval.paraphrase import paraphrase


def _user_turns(n: int) -> set[str]:
    """Every question text the scenes sources train on: QA pairs and instruction conversations."""
    world = ScenesConfig(seed=0)
    texts = {qa.question for i in range(n) for qa in Scenes(world).scene(i).qa}
    for table in ("varied", "balanced"):
        varied = Scenes(ScenesConfig(seed=0, question_wordings=table, position_questions=True))
        texts |= {qa.question for i in range(n) for qa in varied.scene(i).qa}
    instruct = InstructScenes(world)
    for i in range(n):
        texts |= {
            m["content"].replace("<image>", "").strip()
            for m in instruct[i]["messages"]
            if m["role"] == "user"
        }
    return texts


def test_paraphrases_are_never_training_questions():
    training = _user_turns(300)
    held_out = {
        paraphrase(qa.question) for i in range(300) for qa in Scenes(ScenesConfig(seed=9)).scene(i).qa
    }
    assert len(held_out) > 100  # many questions, several forms
    assert not held_out & training
    # not even as a wording with other colours and shapes: the opening words differ too
    openings = {" ".join(t.split()[:3]) for t in training}
    assert not {" ".join(q.split()[:3]) for q in held_out} & openings


def test_paraphrase_keeps_the_names_in_the_question():
    assert paraphrase("What color is the circle?") in (
        "Tell me the colour of the circle.",
        "The circle has which colour?",
    )
    assert "red square" in paraphrase("Is the red square left or right of the blue star?")
    assert "blue star" in paraphrase("Is the red square left or right of the blue star?")


def test_an_unknown_question_form_is_a_clear_error():
    with pytest.raises(ValueError, match="no paraphrase for the question 'Why is the sky blue\\?'"):
        paraphrase("Why is the sky blue?")


@pytest.mark.parametrize("table", ["varied", "balanced"])
def test_every_varied_wording_is_used_and_keeps_its_answer(table):
    """The varied scenes questions use every wording of the table, and each form keeps the
    templates' answers: the same scene index asked in templates and in varied wordings has the
    same objects, so its count questions agree."""
    from vlkit.data.scenes_wordings import WORDINGS

    varied = Scenes(ScenesConfig(seed=0, question_wordings=table, position_questions=True))
    asked = {qa.question for i in range(400) for qa in varied.scene(i).qa}
    for form, options in WORDINGS[table].items():
        for wording in options:
            head = wording.split("{")[0]
            assert any(q.startswith(head) for q in asked), (form, wording)
    plain = Scenes(ScenesConfig(seed=0))
    for i in range(20):
        assert varied.scene(i).qa[0].answer == plain.scene(i).qa[0].answer  # how many objects


def test_an_unknown_wording_table_is_a_clear_error():
    with pytest.raises(ValueError, match="question_wordings='fancy': valid are templates, varied"):
        ScenesConfig(question_wordings="fancy")


def test_balanced_relation_wordings_name_either_object_first_equally_often():
    """What `balanced` is for: the order in which a relation question names its two objects does
    not tell which one is asked about, in every relation form (in `varied` it does, mostly)."""
    from vlkit.data.scenes_wordings import BALANCED, VARIED

    def asked_first(table: dict, form: str) -> list[bool]:
        return [w.index("{a}") < w.index("{b}") for w in table[form]]

    for form in ("left_right", "above_below", "where"):
        order = asked_first(BALANCED, form)
        assert order.count(True) == order.count(False), form
        assert set(VARIED[form]) <= set(BALANCED[form])  # varied's wordings (left_right was balanced)
    assert asked_first(VARIED, "where").count(True) > asked_first(VARIED, "where").count(False)
