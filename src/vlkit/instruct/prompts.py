"""Prompts for LLM teachers, written for vlkit in the style of LLaVA and MiniGPT-4.

LLaVA gives a text-only model a symbolic description of an image (captions + boxes), a system
prompt per kind of data, and a few worked examples as earlier user/assistant turns. The reply
format is fixed so it parses: conversations alternate lines starting "Question:" and
"Answer:"; descriptions and reasoning are "Question:" / "Answer:" once (detail: answer only).
"""

from __future__ import annotations

KINDS = ("conversation", "detail", "reasoning")

_SEEING = (
    "You are an AI visual assistant looking at a single image. What you see is given to you as "
    "several sentences, each describing the same image, and a list of the objects in it with "
    "their bounding boxes as (x1, y1, x2, y2) in [0, 1], measured from the top left corner. "
)

SYSTEM = {
    "conversation": _SEEING
    + "Write a conversation between a person asking about this image and you, answering as if "
    "you were looking at the image yourself. Ask varied questions: what the objects are, how many "
    "there are, what they are doing, where they are, and where they are relative to each other. "
    "Only ask questions that have a definite answer: either the content is clearly visible, or "
    "it is clearly absent. Never ask about details you cannot be sure of. Include at least one "
    "more complex question, for example about what is happening in the scene, and answer it with "
    "the steps of your reasoning. Do not mention boxes, coordinates or the sentences you were given.\n"
    "Write every question on a line starting with 'Question:' and every answer on a line "
    "starting with 'Answer:'. Write 3 to 6 question-answer pairs.",
    "detail": _SEEING + "Describe the image in rich detail, as if you were looking at it: every object, its "
    "appearance, its place in the picture and its place relative to the other objects, and the "
    "overall arrangement. State only what is certain. Do not mention boxes, coordinates or the "
    "sentences you were given. Write one paragraph after 'Answer:'.",
    "reasoning": _SEEING
    + "Write one question about the image that cannot be answered by describing it: answering "
    "needs a chain of reasoning over what is seen (comparing, counting after a change, inferring "
    "a purpose or a consequence). Then answer it step by step, as if you were looking at the "
    "image. Never quote coordinates or mention the sentences you were given. Write the question "
    "after 'Question:' and the answer after 'Answer:'.",
}

# One worked example per kind: (context, response). Ours, about a made-up kitchen table.
_EXAMPLE_CONTEXT = (
    "A wooden table with a bowl of three oranges and a blue mug.\n"
    "Three oranges sit in a white bowl next to a mug.\n"
    "A kitchen table holding fruit and a coffee mug.\n"
    "A bowl of fruit on a table beside a blue cup.\n"
    "Breakfast things on a wooden table.\n"
    "\n"
    "bowl: [0.120, 0.400, 0.520, 0.780]\n"
    "orange: [0.180, 0.420, 0.300, 0.560]\n"
    "orange: [0.290, 0.410, 0.410, 0.550]\n"
    "orange: [0.360, 0.470, 0.480, 0.610]\n"
    "cup: [0.640, 0.380, 0.820, 0.700]\n"
    "dining table: [0.000, 0.300, 1.000, 1.000]"
)
FEW_SHOT = {
    "conversation": [
        (
            _EXAMPLE_CONTEXT,
            "Question: What fruit is in the bowl?\nAnswer: The bowl holds oranges.\n"
            "Question: How many oranges are there?\nAnswer: There are three oranges in the bowl.\n"
            "Question: Where is the mug?\nAnswer: The blue mug stands on the table to the right of the bowl.\n"
            "Question: Is there a banana on the table?\nAnswer: No, the only fruit on the table is the three oranges.\n"
            "Question: What might the person who set this table be planning?\n"
            "Answer: A bowl of fresh fruit next to a mug suggests a simple breakfast: someone may be about "
            "to have a coffee or tea with an orange. The table is otherwise clear, so the meal has not started yet.",
        )
    ],
    "detail": [
        (
            _EXAMPLE_CONTEXT,
            "Answer: The image shows a wooden kitchen table seen from slightly above. On the left half of "
            "the table sits a white bowl holding three bright oranges, two side by side and one a little "
            "lower in front of them. To the right of the bowl stands a blue mug, about as tall as the bowl. "
            "The rest of the table is empty, which gives the scene a calm, tidy breakfast feeling.",
        )
    ],
    "reasoning": [
        (
            _EXAMPLE_CONTEXT,
            "Question: If two people each took one orange, how many would be left in the bowl?\n"
            "Answer: The bowl holds three oranges. Two people taking one each removes two of them, so one "
            "orange would be left in the bowl, next to the blue mug on the table.",
        )
    ],
}

# MiniGPT-4 stage 1: the describer sees the image and this request; "Continue" while it is short.
DESCRIBE = "Describe this image in detail. Give as many details as possible. Say everything you see."
CONTINUE = "Continue"
MIN_DESCRIPTION_TOKENS = 80

# MiniGPT-4 stage 2: the cleaning instruction given to the teacher, in our words.
CLEAN = (
    "Fix the errors in the paragraph below, delete sentences that repeat earlier ones, remove "
    "meaningless characters and any sentence that is not in English, and rewrite incomplete "
    "sentences so they are complete. Reply with the corrected paragraph only, with no comment "
    "before or after it. If the paragraph is already correct, reply with it unchanged.\n\n"
    "Paragraph: {text}"
)


def llava_messages(kind: str, context: str) -> list[dict]:
    """System prompt, few-shot turns and the query context as chat messages."""
    messages = [{"role": "system", "content": SYSTEM[kind]}]
    for example, response in FEW_SHOT[kind]:
        messages += [{"role": "user", "content": example}, {"role": "assistant", "content": response}]
    messages.append({"role": "user", "content": context})
    return messages
