"""Endless instruction data: every scene with a LLaVA-style conversation written by the template
teacher (`vlkit.data.instruct_template`: conversation, detailed description or complex reasoning,
correct by construction), so generative models instruction-tune on scenes without a file.

    ds = InstructScenes(ScenesConfig(seed=0), kinds=("conversation", "detail", "reasoning"))
    ds[17]   # {"image", "captions", "qa", "messages": [{"role", "content"}, ...], "key"}

Sample i is scene i of the world with kind `kinds[i % len(kinds)]`; it is the record
`vlkit instruct llava --source scenes` writes for that scene and kind (same ids, same wording).
"""

from __future__ import annotations

from collections.abc import Sequence

from vlkit.data import instruct_template as template
from vlkit.data.contexts import scene_context
from vlkit.data.scenes import Scenes, ScenesConfig

ROLES = {"human": "user", "gpt": "assistant"}


class InstructScenes:
    def __init__(self, config: ScenesConfig, kinds: Sequence[str] = ("conversation", "detail", "reasoning")):
        unknown = set(kinds) - {"conversation", "detail", "reasoning"}
        if not kinds or unknown:
            raise ValueError(
                f"scenes-instruct kinds {list(kinds)}: valid kinds are conversation, detail, reasoning"
            )
        self.scenes = Scenes(config)
        self.kinds = list(kinds)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict:
        scene = self.scenes.scene(i)
        seed = self.scenes.config.seed
        ctx = scene_context(scene, f"scenes-{seed}-{i:06d}", f"images/{i:06d}.png")
        turns = template.write(ctx, self.kinds[i % len(self.kinds)])
        return {
            "image": scene.image,
            "captions": scene.captions,
            "qa": [{"question": q.question, "answer": q.answer, "type": q.type} for q in scene.qa],
            "messages": [{"role": ROLES[t["from"]], "content": t["value"]} for t in turns],
            "key": f"{scene.key}/instruct",
        }
