"""Scenes with their objects' boxes, for detection training (the `scenes-boxes` source).

    ds = SceneBoxes(ScenesConfig(seed=0))
    ds[17]   # scenes' sample + "objects": [{"color", "shape", "size", "box": (x1, y1, x2, y2) in [0, 1]}]
    SceneBoxes(ScenesConfig(seed=0), masks=True)[17]   # each object also has "mask": bool[H, W]

Sample i is scene i of the world (the `scenes` source's sample i, plus the objects). The
`scenes-masks` source (segmentation) is the same with each object's mask.
"""

from __future__ import annotations

from vlkit.data.scenes import Scenes, ScenesConfig


class SceneBoxes:
    def __init__(self, config: ScenesConfig, masks: bool = False):
        self.scenes = Scenes(config)
        self.config = config
        self.masks = masks

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict:
        scene = self.scenes.scene(i)
        objects = [
            {"color": o.color, "shape": o.shape, "size": o.size, "box": tuple(o.box)}
            | ({"mask": o.mask} if self.masks else {})
            for o in scene.objects
        ]
        return {"image": scene.image, "captions": scene.captions, "objects": objects, "key": scene.key}
