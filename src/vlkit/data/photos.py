"""Photos: real photographs that ship inside scikit-image, with hand-written captions.

Twenty images, no download: a tiny real-world retrieval and captioning sanity set next to the
synthetic scenes. Each caption was written by looking at the picture and says only what it
shows. Images are decoded on first access and kept.

The split is fixed by name (`split_of`): 7 photos are held out (`split="test"`, what `vlkit eval
--data photos` and training-time evaluation read), the other 13 are for training (`split="train"`,
what a `kind: photos` source reads). Seven images make a sanity check, not a measurement.

    photos = Photos()  # the training split
    sample = photos[0]  # {"image": uint8[512, 512, 3], "captions": [...], "key": "photos/astronaut"}
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

# skimage.data function name -> captions (at least two, most specific first).
CAPTIONS: dict[str, tuple[str, ...]] = {
    "astronaut": (
        "a portrait of a smiling astronaut in an orange spacesuit",
        "a woman astronaut in front of an American flag and a model of the space shuttle",
        "a photo of an astronaut with her helmet",
    ),
    "chelsea": (
        "a close-up of a tabby cat's face with green eyes",
        "a photo of a cat looking at the camera",
    ),
    "coffee": (
        "a cup of espresso on a red saucer with a spoon",
        "a red coffee cup on a wooden table",
        "a photo of a cup of coffee",
    ),
    "rocket": (
        "a white rocket on its launch pad at dusk between launch towers",
        "a rocket standing upright under a deep blue evening sky",
    ),
    "camera": (
        "a black and white photo of a man filming with a camera on a tripod",
        "a cameraman in a dark coat standing on a field with buildings behind",
    ),
    "coins": (
        "a grey photo of old coins arranged in rows",
        "ancient coins with heads and figures on a dark background",
    ),
    "horse": (
        "a black silhouette of a horse on a white background",
        "a horse standing in profile, drawn as a black shape",
    ),
    "moon": (
        "a grey image of the surface of the moon with small craters",
        "a close-up of the lunar surface",
    ),
    "clock": (
        "a motion-blurred photo of a round clock on a grey background",
        "a blurry grey picture of a clock",
    ),
    "hubble_deep_field": (
        "a space telescope image of many small colourful galaxies on a black sky",
        "the Hubble deep field full of distant galaxies",
    ),
    "immunohistochemistry": (
        "a microscope image of tissue stained brown with blue cell nuclei",
        "a stained tissue slide under a microscope",
    ),
    "colorwheel": (
        "a colour wheel with all hues of the rainbow around a white center",
        "a round rainbow colour gradient on a black background",
    ),
    "logo": (
        "the scikit-image logo: a snake in a green and orange circle",
        "a round green and orange logo with a white S-shaped curve",
    ),
    "page": (
        "a page of printed text about region-based segmentation",
        "a photo of a book page with a heading and a line of code",
    ),
    "text": (
        "handwritten mathematical formulas on paper seen at an angle",
        "a grey photo of handwritten equations",
    ),
    "brick": (
        "a grey brick pavement with light lines of mortar",
        "a texture of long narrow bricks laid in rows",
    ),
    "grass": (
        "a black and white close-up of grass and small leaves",
        "a grey texture of a lawn",
    ),
    "gravel": (
        "a grey close-up of gravel stones",
        "a texture of many small crushed stones",
    ),
    "retina": (
        "a photo of the back of a human eye showing the retina and its blood vessels",
        "an orange-red fundus image of a retina with the optic disc on the left",
    ),
    "checkerboard": (
        "a black and white checkerboard pattern",
        "a chessboard pattern of black and white squares",
    ),
}


SPLITS = ("train", "test", "all")


def split_of(name: str) -> str:
    """ "test" for a quarter of the names (by a hash of the name, so the split never moves when a
    photo is added), "train" for the rest."""
    return "test" if int(hashlib.sha256(name.encode()).hexdigest(), 16) % 4 == 0 else "train"


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any skimage.data picture -> uint8[H, W, 3].

    Accepts bool[H, W] (True = white), uint8[H, W] grey, uint8[H, W, 3] and uint8[H, W, 4],
    whose alpha is composited on white (the logo's transparent corners become paper).
    """
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:].astype(np.float32) / 255
        return np.round(image[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(image)


class Photos:
    """Real photographs from skimage.data: the `split` part (train | test | all) of `names`
    (default: every photo).

    __getitem__(i) -> {"image": uint8[H, W, 3], "captions": list[str], "key": "photos/<name>"}
    Sizes differ per photo (102 to 1411 pixels a side); resize in the loader.
    """

    def __init__(self, names: Sequence[str] | None = None, split: str = "train") -> None:
        if split not in SPLITS:
            raise ValueError(f"Photos split {split!r} unknown; valid: {', '.join(SPLITS)}")
        names = list(names) if names is not None else list(CAPTIONS)
        unknown = [name for name in names if name not in CAPTIONS]
        if unknown:
            raise ValueError(f"Photos names {unknown} unknown; valid: {list(CAPTIONS)}")
        self.split = split
        self.names = [name for name in names if split == "all" or split_of(name) == split]
        self._images: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"photo index {i} out of range for {len(self)} photos")
        name = self.names[i]
        return {"image": self.image(name), "captions": list(CAPTIONS[name]), "key": f"photos/{name}"}

    def image(self, name: str) -> np.ndarray:
        """uint8[H, W, 3] of the named photo, decoded once."""
        if name not in self._images:
            import skimage.data  # ~0.5 s to import: only when a photo is first needed

            self._images[name] = to_rgb(getattr(skimage.data, name)())
        return self._images[name]
