"""Scenes with their objects' boxes, for detection training (the `scenes-boxes` source).

    ds = SceneBoxes(ScenesConfig(seed=0))
    ds[17]   # scenes' sample + "objects": [{"color", "shape", "size", "box": (x1, y1, x2, y2) in [0, 1]}]

Sample i is scene i of the world (the `scenes` source's sample i, plus the objects).
"""

from __future__ import annotations

from vlkit.data.scenes import Scenes, ScenesConfig


class SceneBoxes:
    def __init__(self, config: ScenesConfig):
        self.scenes = Scenes(config)
        self.config = config

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict:
        scene = self.scenes.scene(i)
        objects = [
            {"color": o.color, "shape": o.shape, "size": o.size, "box": tuple(o.box)} for o in scene.objects
        ]
        return {"image": scene.image, "captions": scene.captions, "objects": objects, "key": scene.key}
