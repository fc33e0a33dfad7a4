"""The held-out question wordings: every training form has one, and no training source uses them."""

import pytest

from vlkit.data.instruct_scenes import InstructScenes
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.eval.paraphrase import paraphrase


def _user_turns(n: int) -> set[str]:
    """Every question text the scenes sources train on: QA pairs and instruction conversations."""
    world = ScenesConfig(seed=0)
    texts = {qa.question for i in range(n) for qa in Scenes(world).scene(i).qa}
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
