"""Scenes: a procedural, deterministic, endlessly indexable image-text world.

Each index renders a few flat-coloured shapes (circle, square, triangle, star; eight colours; two
sizes) on a dark, slightly noisy background, together with true captions, a hard negative
caption, question-answer pairs, boxes and masks. Sample `i` of world `seed` depends only on
(seed, i), never on access order, so any worker can render any slice and two runs see the same
data. Rendering pastes cached shape stencils with numpy: ~10k images/s per core at 64x64
(see benchmarks/scenes_speed.py).

    scenes = Scenes(ScenesConfig(image_size=64, max_objects=3, seed=0))
    sample = scenes[17]        # {"image": uint8[64, 64, 3], "captions": [...], "key": "scenes/0/17"}
    scene = scenes.scene(17)   # full record: objects (box, mask), qa, negative_caption
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from vlkit.data import scenes_text
from vlkit.data.scenes_text import QA
from vlkit.data.scenes_wordings import wordings

SHAPES = ("circle", "square", "triangle", "star")
# Saturated, far apart in RGB (pairwise distance > 90) and each one a basic colour term, so a
# text tower learns the word and per-object jitter (+-JITTER) never blurs two of them together.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 130, 25),
    "yellow": (240, 225, 50),
    "green": (50, 185, 70),
    "blue": (50, 100, 235),
    "purple": (145, 70, 205),
    "pink": (250, 140, 200),
    "white": (235, 235, 235),
}
COLOR_NAMES = list(COLORS)
SIZES = ("small", "large")
# Object side as a fraction of image_size; the gap between the ranges keeps "small" and
# "large" apart at any position (14-18 px vs 24-30 px at 64 px).
SIZE_RANGES = {"small": (0.22, 0.28), "large": (0.38, 0.47)}
MAX_OBJECTS = 6  # the fallback 3x3 grid of small objects always fits this many
MIN_IMAGE_SIZE = 32  # below this a small star is a blob
JITTER = 12  # per-channel colour jitter of each object
BACKGROUNDS = 16  # tints and grain textures each; a scene draws one of each
CAPTION_STYLES = 5  # true captions per scene (scenes_text.captions)
GAP = 2  # min pixels between two boxes, so masks never touch and relations are clear


def class_label(color: str, shape: str) -> str:
    """The zero-shot class name of a single-object scene, e.g. "red circle"."""
    return f"{color} {shape}"


# The 32 colour x shape classes, colour-major: "red circle", "red square", ..., "white star".
ZERO_SHOT_CLASSES = [class_label(color, shape) for color in COLORS for shape in SHAPES]


@dataclass
class ScenesConfig:
    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 3
    seed: int = 0  # world seed: held-out evaluation uses a different one
    # Keep the first N caption styles (1 = only the canonical "a red circle and a blue square");
    # 0 = all five. The other styles add sizes and positions, which a contrastive model then
    # learns before shape (benchmarks/README.md).
    caption_styles: int = 0
    # "templates" (the fixed forms held-out evaluation asks in), "varied" (many wordings per
    # form, for training) or "balanced" (varied, relation wordings naming either object first
    # equally often): vlkit.data.scenes_wordings
    question_wordings: str = "templates"
    # also ask where objects are ("Where is the red circle?" → "top left"; a training aid: drawn
    # from their own random stream, so the scenes and their other questions stay as they are)
    position_questions: bool = False
    # keep only these question types (scenes_text.QUESTION_TYPES); () = all. Filtered after they
    # are drawn, so the scenes and the kept questions are those of the unfiltered world.
    question_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        wordings(self.question_wordings)  # a clear error for an unknown name
        self._check_question_types()
        if not 0 <= self.caption_styles <= CAPTION_STYLES:
            raise ValueError(
                f"ScenesConfig.caption_styles={self.caption_styles}: must be in [0, {CAPTION_STYLES}] (0 = all)"
            )
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"ScenesConfig.image_size={self.image_size}: must be >= {MIN_IMAGE_SIZE}")
        if self.min_objects < 1:
            raise ValueError(f"ScenesConfig.min_objects={self.min_objects}: must be >= 1")
        if self.max_objects > MAX_OBJECTS:
            raise ValueError(
                f"ScenesConfig.max_objects={self.max_objects}: at most {MAX_OBJECTS} fit without overlap"
            )
        if self.min_objects > self.max_objects:
            raise ValueError(
                f"ScenesConfig.min_objects={self.min_objects} > max_objects={self.max_objects}: need min <= max"
            )
        if self.seed < 0:
            raise ValueError(f"ScenesConfig.seed={self.seed}: must be >= 0")

    def _check_question_types(self) -> None:
        for name in self.question_types:
            if name not in scenes_text.QUESTION_TYPES:
                raise ValueError(
                    f"ScenesConfig.question_types: unknown type {name!r}; "
                    f"known: {', '.join(scenes_text.QUESTION_TYPES)}"
                )
        if "position" in self.question_types and not self.position_questions:
            raise ValueError("ScenesConfig.question_types names 'position': set position_questions too")


@dataclass
class SceneObject:
    """One shape. box: (x1, y1, x2, y2) in [0, 1], the tight box of mask; mask: bool[H, W]."""

    shape: str
    color: str
    size: str
    box: tuple[float, float, float, float]
    mask: np.ndarray


@dataclass
class Scene:
    """A rendered scene. image: uint8[H, W, 3] RGB; captions[0] is the canonical caption."""

    image: np.ndarray
    objects: list[SceneObject]
    captions: list[str]
    qa: list[QA]
    negative_caption: str  # captions[0] with colours swapped between objects (binding)
    key: str
    shape_negative_caption: str = ""  # captions[0] with one object's shape changed
    # per caption, its hard negatives in the same wording: [colour swap, changed shape]
    caption_negatives: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Placement:
    """Where a stencil goes: top-left pixel (x, y) of a `side`-pixel shape."""

    shape: str
    color: str
    size: str
    side: int
    x: int
    y: int


@functools.lru_cache(maxsize=1024)
def _stencil(shape: str, side: int) -> np.ndarray:
    """bool[h, w]: the shape drawn in a side x side square, cropped to its pixels.

    Drawn 4x larger and downsampled by majority so edges are clean at 14 px; cached, so each
    (shape, side) is drawn once per process.
    """
    s = side * 4
    canvas = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse((0, 0, s - 1, s - 1), fill=255)
    elif shape == "square":
        # A square fills its box; at 88% of the side it looks as large as the circle.
        inset = round(s * 0.06)
        draw.rectangle((inset, inset, s - 1 - inset, s - 1 - inset), fill=255)
    elif shape == "triangle":
        draw.polygon([(s / 2, 0), (s - 1, s * 0.9), (0, s * 0.9)], fill=255)
    elif shape == "star":
        # A fat inner radius keeps the five arms visible at small sizes.
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, s / 2, s * 0.23)
        draw.polygon(
            list(zip(s / 2 + radii * np.cos(angles), s / 2 + 0.05 * s + radii * np.sin(angles))), fill=255
        )
    else:
        raise ValueError(f"unknown shape {shape!r}; valid: {SHAPES}")
    big = np.asarray(canvas, dtype=np.float32).reshape(side, 4, side, 4).mean(axis=(1, 3))
    mask = big >= 128
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


@functools.lru_cache(maxsize=8)
def _backgrounds(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(tints, grain), each uint8[BACKGROUNDS, H, W, 3]; fixed and shared by all worlds.

    Tints are dark greys with a slight colour cast (14..43 per channel), grain is noise in
    0..12, so a background stays below 56 everywhere: far from every object colour. Full-size
    banks because adding two same-shape arrays is ~20x faster than broadcasting a (3,) tint.
    """
    rng = np.random.default_rng(1234)
    tints = rng.integers(14, 44, size=(BACKGROUNDS, 1, 1, 3), dtype=np.uint8)
    tints = np.ascontiguousarray(np.broadcast_to(tints, (BACKGROUNDS, image_size, image_size, 3)))
    grain = rng.integers(0, 13, size=(BACKGROUNDS, image_size, image_size, 1), dtype=np.uint8)
    return tints, np.repeat(grain, 3, axis=3)


def _randint(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform in [lo, hi]; rng.randint costs ~1.5 us, and layout draws dozens per scene."""
    return lo + int(rng.random() * (hi - lo + 1))


def _fits(x: int, y: int, h: int, w: int, boxes: list[tuple[int, int, int, int]]) -> bool:
    return all(
        x + w + GAP <= bx1 or bx2 + GAP <= x or y + h + GAP <= by1 or by2 + GAP <= y
        for bx1, by1, bx2, by2 in boxes
    )


class Scenes:
    """The scenes data set: `size` virtual samples of the world `config` describes.

    __getitem__(i) -> {"image": uint8[H, W, 3], "captions": list[str], "key": "scenes/<seed>/<i>"}
    """

    def __init__(self, config: ScenesConfig | None = None, size: int = 2**31) -> None:
        if not 1 <= size <= 2**64:
            raise ValueError(f"Scenes size={size}: must be in [1, 2**64] (the index is 64 bits of the seed)")
        self.config = config or ScenesConfig()
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        scene = self.scene(i)
        return {
            "image": scene.image,
            "captions": scene.captions,
            "negative_caption": scene.negative_caption,
            # hard negatives for contrastive training (NegCLIP), per caption: binding error, shape error
            "negative_captions": scene.caption_negatives,
            "qa": [{"question": q.question, "answer": q.answer, "type": q.type} for q in scene.qa],
            # where each object is: "red circle" -> "top left" (scenes_text.REGIONS; a scene's
            # objects never share colour and shape), for `vlm.grounding_weight`
            "object_regions": {f"{o.color} {o.shape}": scenes_text.region(o) for o in scene.objects},
            "key": scene.key,
        }

    def _index(self, i: int) -> int:
        if not -self.size <= i < self.size:
            raise IndexError(f"scene index {i} out of range for {self.size} scenes")
        return i % self.size

    def _rng(self, stream: int, i: int) -> random.Random:
        # One generator per sample, seeded by (seed, stream, index) alone: order-independent.
        # Python's Random draws scalars ~5x faster than numpy's Generator, and scalars are all
        # layout and text need; its int seeding and sample/choice have been stable since 3.2.
        # Streams keep scene(i), single(i, ...) and swap_pair(i) unrelated.
        return random.Random((self.config.seed << 72) | (stream << 64) | i)

    def scene(self, i: int) -> Scene:
        """The full record of sample i: objects with boxes and masks, captions, QA, negative."""
        i = self._index(i)
        rng = self._rng(1, i)
        count = rng.randint(self.config.min_objects, self.config.max_objects)
        pairs = rng.sample(range(len(COLORS) * len(SHAPES)), count)  # distinct (color, shape) pairs
        colors = [COLOR_NAMES[p // len(SHAPES)] for p in pairs]
        shapes = [SHAPES[p % len(SHAPES)] for p in pairs]
        placements = self._layout(rng, colors, shapes, [None] * count)
        return self._build(rng, placements, f"scenes/{self.config.seed}/{i}")

    def single(self, i: int, color: str, shape: str, size: str | None = None) -> Scene:
        """A one-object scene of the given colour and shape (zero-shot classification).

        Position, size (unless given), background and jitter depend on i only, so the 32
        classes at one index differ in colour and shape alone.
        """
        if color not in COLORS or shape not in SHAPES or size not in (None, *SIZES):
            raise ValueError(
                f"single(color={color!r}, shape={shape!r}, size={size!r}): valid colors {list(COLORS)}, "
                f"shapes {list(SHAPES)}, sizes {list(SIZES)} or None"
            )
        i = self._index(i)
        rng = self._rng(2, i)
        placements = self._layout(rng, [color], [shape], [size])
        return self._build(rng, placements, f"scenes/{self.config.seed}/single/{i}/{color}-{shape}")

    def swap_pair(self, i: int) -> tuple[Scene, Scene]:
        """Two scenes with one layout: two objects of different shapes and colours, colours swapped.

        scene0.captions[0] ("a red circle and a blue square") is true of scene0 only, and
        scene1.captions[0] ("a blue circle and a red square") of scene1 only; each scene's
        negative_caption is the other's captions[0]. Winoground-style: a model that binds colour
        to shape prefers c0 for image 0 and c1 for image 1.
        """
        i = self._index(i)
        rng = self._rng(3, i)
        colors, shapes = rng.sample(COLOR_NAMES, 2), rng.sample(SHAPES, 2)
        placements = self._layout(rng, colors, shapes, [None, None])
        swapped = [
            _Placement(p.shape, q.color, p.size, p.side, p.x, p.y)
            for p, q in zip(placements, placements[::-1])
        ]
        state = rng.getstate()  # both twins draw the same background, jitter and wording
        key = f"scenes/{self.config.seed}/swap/{i}"
        first = self._build(rng, placements, key + "/0")
        rng.setstate(state)
        return first, self._build(rng, swapped, key + "/1")

    def _layout(
        self, rng: random.Random, colors: list[str], shapes: list[str], sizes: list[str | None]
    ) -> list[_Placement]:
        """Non-overlapping placements by rejection sampling; a grid of small objects if that fails.

        A None size is drawn at random; an object that finds no room at "large" tries "small"
        before the whole layout is redrawn, so crowded scenes rarely reach the grid fallback.
        """
        n = self.config.image_size
        for _ in range(4):
            placed: list[_Placement] = []
            boxes: list[tuple[int, int, int, int]] = []
            for color, shape, size in zip(colors, shapes, sizes):
                # A drawn size: large (then small if no room) or small, with equal odds.
                options = [size] if size else ["large", "small"][rng.randrange(2) :]
                for option in options:
                    lo, hi = SIZE_RANGES[option]
                    side = _randint(rng, round(lo * n), round(hi * n))
                    h, w = _stencil(shape, side).shape
                    spot = next((xy for xy in self._spots(rng, h, w) if _fits(*xy, h, w, boxes)), None)
                    if spot:
                        placed.append(_Placement(shape, color, option, side, *spot))
                        boxes.append((spot[0], spot[1], spot[0] + w, spot[1] + h))
                        break
                else:
                    break
            if len(placed) == len(colors):
                return placed
        # Crowded scenes (many large objects) can fail above; a shuffled 3x3 grid of small
        # objects always fits, GAP pixels apart, because a small side is < a third of the image.
        cell = n / 3
        placed = []
        for c, color, shape in zip(rng.sample(range(9), len(colors)), colors, shapes):
            lo, hi = SIZE_RANGES["small"]
            side = min(_randint(rng, round(lo * n), round(hi * n)), int(cell) - GAP - 1)
            h, w = _stencil(shape, side).shape
            x = int((c % 3) * cell) + 1 + _randint(rng, 0, int(cell) - w - GAP)
            y = int((c // 3) * cell) + 1 + _randint(rng, 0, int(cell) - h - GAP)
            placed.append(_Placement(shape, color, "small", side, x, y))
        return placed

    def _spots(self, rng: random.Random, h: int, w: int, tries: int = 30) -> Iterator[tuple[int, int]]:
        """Up to `tries` random top-left corners that keep an h x w box one pixel inside the image."""
        n = self.config.image_size
        for _ in range(tries):
            yield _randint(rng, 1, n - 1 - w), _randint(rng, 1, n - 1 - h)

    def _build(self, rng: random.Random, placements: list[_Placement], key: str) -> Scene:
        """Render the placements and write the text; consumes rng after _layout."""
        n = self.config.image_size
        tints, grain = _backgrounds(n)
        image = tints[rng.randrange(BACKGROUNDS)] + grain[rng.randrange(BACKGROUNDS)]  # (H, W, 3)
        objects = []
        for p in placements:
            stencil = _stencil(p.shape, p.side)
            h, w = stencil.shape
            rgb = [min(255, max(0, c + _randint(rng, -JITTER, JITTER))) for c in COLORS[p.color]]
            image[p.y : p.y + h, p.x : p.x + w][stencil] = rgb  # objects never overlap: no z-order
            mask = np.zeros((n, n), dtype=bool)
            mask[p.y : p.y + h, p.x : p.x + w] = stencil
            box = (p.x / n, p.y / n, (p.x + w) / n, (p.y + h) / n)
            objects.append(SceneObject(p.shape, p.color, p.size, box, mask))
        captions = scenes_text.captions(objects, rng)[: self.config.caption_styles or None]
        wording = wordings(self.config.question_wordings)
        qa = scenes_text.questions(objects, rng, COLOR_NAMES, SHAPES, wording)
        if self.config.position_questions:
            qa += scenes_text.position_questions(objects, random.Random(f"{key}/position"), wording)
        if self.config.question_types:
            qa = [q for q in qa if q.type in self.config.question_types]
        edits = [
            scenes_text.binding_edit(objects, rng, COLOR_NAMES),
            scenes_text.shape_edit(objects, rng, SHAPES),
        ]
        negatives = [_negatives(objects, c, edits, f"{key}/negatives/{i}") for i, c in enumerate(captions)]
        return Scene(
            image=image,
            objects=objects,
            captions=captions,
            qa=qa,
            negative_caption=negatives[0][0],
            key=key,
            shape_negative_caption=negatives[0][1],
            caption_negatives=negatives,
        )


def _negatives(objects: list[SceneObject], caption: str, edits: list, key: str) -> list[str]:
    """[colours swapped, a shape changed] of `caption` by the scene's `edits`; where that does not
    make it false (the edit changes an object the caption does not name: a relation caption names
    two of three), that edit drawn again among the named objects (its own seeded draw, so the
    scene's other text stays as it was)."""
    out = [scenes_text.apply_edit(caption, e) for e in edits]
    if all(scenes_text.shows_edit(n, e, objects) for n, e in zip(out, edits)):
        return out
    named, rng = scenes_text.named_in(caption, objects), random.Random(key)
    again = [
        scenes_text.binding_edit(objects, rng, COLOR_NAMES, among=named),
        scenes_text.shape_edit(objects, rng, SHAPES, among=named),
    ]
    return [
        n if scenes_text.shows_edit(n, e, objects) else scenes_text.apply_edit(caption, a)
        for n, e, a in zip(out, edits, again)
    ]


_ATTRIBUTE_WORDS = re.compile(rf"\b(?:{'|'.join(COLOR_NAMES)})\b|\b(?:{'|'.join(SHAPES)})s?\b")


def question_template(question: str) -> str:
    """The question with its colour and shape words masked: "Is there a <color> <shape>?".

    What a question-only baseline may know: the wording, not which objects it names (nor the
    article, which would tell "an orange" from "a red")."""
    masked = _ATTRIBUTE_WORDS.sub(
        lambda m: "<shape>" if m.group(0).rstrip("s") in SHAPES else "<color>", question
    )
    return re.sub(r"\ban <color>", "a <color>", masked)


class SingleObjectScenes:
    """Zero-shot classification over ZERO_SHOT_CLASSES: `per_class` one-object scenes per class.

    __getitem__(i) -> {"image", "captions", "key", "label"}; sample i is class i % 32 at
    scene index i // 32, so every block of 32 shares position and background.
    """

    classes = ZERO_SHOT_CLASSES

    def __init__(self, config: ScenesConfig | None = None, per_class: int = 10) -> None:
        self.scenes = Scenes(config)
        self.per_class = per_class

    def __len__(self) -> int:
        return self.per_class * len(self.classes)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        i %= len(self)
        label = i % len(self.classes)
        color, shape = self.classes[label].split(" ")
        scene = self.scenes.single(i // len(self.classes), color, shape)
        return {"image": scene.image, "captions": scene.captions, "key": scene.key, "label": label}
