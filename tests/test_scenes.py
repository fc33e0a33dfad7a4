"""The scenes world: determinism, geometry, masks against pixels, text against objects."""

import re

import numpy as np
import pytest

from vlkit.data.scenes import (
    COLORS,
    MAX_OBJECTS,
    SHAPES,
    SIZES,
    ZERO_SHOT_CLASSES,
    Scene,
    Scenes,
    ScenesConfig,
    SingleObjectScenes,
    class_label,
)
from vlkit.data.scenes_text import with_article


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    """A crowded world (1-6 objects) exercises rejection sampling and the grid fallback."""
    world = Scenes(ScenesConfig(image_size=64, min_objects=1, max_objects=MAX_OBJECTS, seed=3))
    return [world.scene(i) for i in range(150)]


def nearest_color(rgb: np.ndarray) -> str:
    return min(COLORS, key=lambda name: float(np.sum((np.array(COLORS[name]) - rgb) ** 2)))


def holds(a: tuple, b: tuple) -> dict[str, bool]:
    """Which relations box a has to box b (x1, y1, x2, y2)."""
    return {"left": a[2] <= b[0], "right": a[0] >= b[2], "above": a[3] <= b[1], "below": a[1] >= b[3]}


def test_same_seed_and_index_give_identical_samples_in_any_order():
    a, b = Scenes(ScenesConfig(seed=5)), Scenes(ScenesConfig(seed=5))
    forward = [a[i] for i in range(20)]
    backward = [b[i] for i in reversed(range(20))][::-1]
    for x, y in zip(forward, backward):
        assert np.array_equal(x["image"], y["image"])
        assert x["captions"] == y["captions"] and x["key"] == y["key"]
    assert a.scene(7).qa == b.scene(7).qa
    assert a.scene(7).negative_caption == b.scene(7).negative_caption


def test_different_indices_and_seeds_differ():
    world = Scenes()
    images = [world[i]["image"] for i in range(20)]
    assert all(not np.array_equal(images[0], im) for im in images[1:])
    assert not np.array_equal(Scenes(ScenesConfig(seed=1))[0]["image"], images[0])
    assert world[3]["key"] == "scenes/0/3"


def test_sample_follows_the_dataset_contract():
    world = Scenes(ScenesConfig(image_size=48), size=10)
    sample = world[9]
    assert sample["image"].dtype == np.uint8 and sample["image"].shape == (48, 48, 3)
    assert len(sample["captions"]) >= 3 and all(isinstance(c, str) and c for c in sample["captions"])
    assert len(world) == 10
    with pytest.raises(IndexError):
        world[10]


def test_boxes_are_normalised_and_never_intersect(scenes):
    for scene in scenes:
        for k, obj in enumerate(scene.objects):
            x1, y1, x2, y2 = obj.box
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
            for other in scene.objects[k + 1 :]:
                a, b = obj.box, other.box
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], scene.key


def test_objects_have_distinct_color_shape_pairs_and_known_attributes(scenes):
    counts = set()
    for scene in scenes:
        pairs = [(o.color, o.shape) for o in scene.objects]
        assert len(set(pairs)) == len(pairs)
        assert all(o.color in COLORS and o.shape in SHAPES and o.size in SIZES for o in scene.objects)
        counts.add(len(scene.objects))
    assert counts == set(range(1, MAX_OBJECTS + 1))


def test_masks_match_boxes_and_pixels(scenes):
    for scene in scenes:
        h, w, _ = scene.image.shape
        covered = np.zeros((h, w), dtype=bool)
        for obj in scene.objects:
            assert obj.mask.shape == (h, w) and obj.mask.dtype == bool
            rows, cols = np.nonzero(obj.mask)
            box = (cols.min() / w, rows.min() / h, (cols.max() + 1) / w, (rows.max() + 1) / h)
            assert np.allclose(box, obj.box)  # the box is the mask's tight box
            pixels = scene.image[obj.mask]
            assert (pixels == pixels[0]).all()  # flat colour, no antialiasing
            assert nearest_color(pixels[0]) == obj.color
            covered |= obj.mask
        assert scene.image[~covered].max() < 60  # dark background everywhere else


def test_captions_name_every_object_and_canonical_caption_lists_them(scenes):
    for scene in scenes:
        assert len(scene.captions) >= 3 and len(set(scene.captions)) == len(scene.captions)
        listed = sorted(re.split(r", | and ", scene.captions[0]))
        assert listed == sorted(with_article(f"{o.color} {o.shape}") for o in scene.objects)
        for obj in scene.objects:
            assert f"{obj.size} {obj.color} {obj.shape}" in scene.captions[1]


def test_relation_captions_are_true():
    world = Scenes(ScenesConfig(min_objects=2, max_objects=2))
    phrase = {"left of": "left", "right of": "right", "above": "above", "below": "below", "beneath": "below"}
    for i in range(50):
        scene = world.scene(i)
        by_name = {with_article(f"{o.size} {o.color} {o.shape}"): o for o in scene.objects}
        names = "|".join(by_name)
        match = re.fullmatch(
            rf"({names}) (?:to the )?(left of|right of|above|below|beneath) ({names})", scene.captions[3]
        )
        assert match, scene.captions[3]
        a, b = by_name[match.group(1)].box, by_name[match.group(3)].box
        assert holds(a, b)[phrase[match.group(2)]]


def test_negative_caption_is_false_and_differs_from_every_caption(scenes):
    for scene in scenes:
        assert scene.negative_caption not in scene.captions
        named = set(re.findall(rf"({'|'.join(COLORS)}) ({'|'.join(SHAPES)})", scene.negative_caption))
        assert named - {(o.color, o.shape) for o in scene.objects}, scene.negative_caption


def test_every_captions_negatives_differ_from_it_and_name_an_absent_object():
    """Each caption's own negatives (what ITM and NegCLIP train on), the relation caption that
    names two of three objects included: before, ~1% of them were the caption itself."""
    world = Scenes(ScenesConfig(image_size=64, seed=0, min_objects=3, max_objects=3))
    pattern = rf"({'|'.join(COLORS)}) ({'|'.join(SHAPES)})"
    for i in range(120):
        scene = world.scene(i)
        present = {(o.color, o.shape) for o in scene.objects}
        for caption, negatives in zip(scene.captions, scene.caption_negatives):
            for negative in negatives:
                assert negative != caption and set(re.findall(pattern, negative)) - present, negative


def test_shape_negative_changes_exactly_one_shape_to_an_absent_object(scenes):
    pattern = rf"({'|'.join(COLORS)}) ({'|'.join(SHAPES)})"
    for scene in scenes:
        canonical = re.findall(pattern, scene.captions[0])
        negative = re.findall(pattern, scene.shape_negative_caption)
        changed = [(a, b) for a, b in zip(canonical, negative) if a != b]
        assert len(canonical) == len(negative) and len(changed) == 1, scene.shape_negative_caption
        ((before, after),) = changed
        assert before[0] == after[0] and before[1] != after[1]  # same colour, another shape
        assert after not in {(o.color, o.shape) for o in scene.objects}


def test_qa_answers_agree_with_objects(scenes):
    types = set()
    for scene in scenes:
        objects = scene.objects
        assert len(scene.qa) >= 5
        assert {"yes", "no"} <= {qa.answer for qa in scene.qa if qa.type == "existence"}
        for qa in scene.qa:
            types.add(qa.type)
            words = qa.question.rstrip("?").split()
            if qa.type == "count":
                shape = next((s for s in SHAPES if s + "s" in words), None)
                expected = sum(o.shape == shape for o in objects) if shape else len(objects)
                assert qa.answer == str(expected), qa
            elif qa.type == "color":
                (obj,) = [o for o in objects if o.shape in words]
                assert qa.answer == obj.color, qa
            elif qa.type == "shape":
                (obj,) = [o for o in objects if o.color in words]
                assert qa.answer == obj.shape, qa
            elif qa.type == "existence":
                found = re.search(rf"({'|'.join(COLORS)}) ({'|'.join(SHAPES)})", qa.question)
                exists = (found.group(1), found.group(2)) in {(o.color, o.shape) for o in objects}
                assert qa.answer == ("yes" if exists else "no"), qa
            else:
                assert qa.type == "relation"
                named = re.findall(rf"the ({'|'.join(COLORS)}) ({'|'.join(SHAPES)})", qa.question)
                first, second = ({(o.color, o.shape): o.box for o in objects}[pair] for pair in named)
                assert holds(first, second)[qa.answer], qa
    assert types == {"count", "color", "shape", "existence", "relation"}


def test_position_questions_are_true_and_leave_the_scene_as_it_was():
    """`position_questions` adds "Where is the red circle?" → the region of its box centre, and
    changes nothing else: the same pictures, objects and questions, then the new ones."""
    plain = Scenes(ScenesConfig(seed=3, question_wordings="varied"))
    asked = Scenes(ScenesConfig(seed=3, question_wordings="varied", position_questions=True))
    regions = set()
    for i in range(60):
        before, after = plain.scene(i), asked.scene(i)
        assert np.array_equal(before.image, after.image) and before.captions == after.captions
        assert after.qa[: len(before.qa)] == before.qa
        added = after.qa[len(before.qa) :]
        assert 1 <= len(added) <= 2 and all(qa.type == "position" for qa in added)
        for qa in added:
            (obj,) = [o for o in after.objects if f"{o.color} {o.shape}" in qa.question]
            cx, cy = (obj.box[0] + obj.box[2]) / 2, (obj.box[1] + obj.box[3]) / 2
            column = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
            row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
            assert qa.answer == (f"{row} {column}".strip() or "center"), (qa, obj.box)
            regions.add(qa.answer)
    assert len(regions) == 9  # every region of the 3 x 3 grid is asked about


def test_a_source_passes_position_questions_on():
    from vlkit.config import DataConfig, SourceConfig
    from vlkit.data import build_source

    world = build_source(SourceConfig(kind="scenes", position_questions=True), DataConfig())
    assert any(qa.type == "position" for qa in world.scene(0).qa)
    with pytest.raises(ValueError, match=r"data.sources\[0\].position_questions: True applies to scenes"):
        build_source(SourceConfig(kind="photos", position_questions=True), DataConfig())


def test_question_types_keep_only_the_named_types_of_the_same_world():
    """`question_types` filters the drawn questions: the same pictures and, of the questions, the
    named types in their order; unknown names and "position" without position questions are
    refused naming the field; a source passes the list on (and only a scenes source takes it)."""
    from vlkit.config import DataConfig, SourceConfig
    from vlkit.data import build_source

    full = Scenes(ScenesConfig(seed=3, min_objects=2, position_questions=True))
    kept = Scenes(
        ScenesConfig(seed=3, min_objects=2, position_questions=True, question_types=("position", "relation"))
    )
    for i in range(40):
        before, after = full.scene(i), kept.scene(i)
        assert np.array_equal(before.image, after.image) and before.captions == after.captions
        assert after.qa == [qa for qa in before.qa if qa.type in ("position", "relation")]
        assert {qa.type for qa in after.qa} == {"position", "relation"}
    with pytest.raises(ValueError, match="question_types: unknown type 'colour'"):
        ScenesConfig(question_types=("colour",))
    with pytest.raises(ValueError, match="names 'position': set position_questions"):
        ScenesConfig(question_types=("position",))
    source = SourceConfig(kind="scenes", min_objects=2, question_types=["relation"])
    assert {qa.type for qa in build_source(source, DataConfig()).scene(0).qa} == {"relation"}
    with pytest.raises(
        ValueError, match=r"data.sources\[0\].question_types: \['relation'\] applies to scenes"
    ):
        build_source(SourceConfig(kind="photos", question_types=["relation"]), DataConfig())


def test_swap_pair_twins_share_layout_with_colours_swapped():
    world = Scenes()
    for i in range(30):
        first, second = world.swap_pair(i)
        a, b = first.objects
        assert a.shape != b.shape and a.color != b.color
        assert [o.box for o in first.objects] == [o.box for o in second.objects]
        assert [o.shape for o in first.objects] == [o.shape for o in second.objects]
        assert [o.color for o in second.objects] == [b.color, a.color]
        assert all(np.array_equal(x.mask, y.mask) for x, y in zip(first.objects, second.objects))
        c0, c1 = first.captions[0], second.captions[0]
        assert c0 != c1 and first.negative_caption == c1 and second.negative_caption == c0
        assert sorted(c0.split()) == sorted(c1.split())  # same words, different binding


def test_single_object_scenes_cover_the_32_classes():
    world = Scenes()
    assert len(ZERO_SHOT_CLASSES) == len(set(ZERO_SHOT_CLASSES)) == 32
    assert ZERO_SHOT_CLASSES[0] == class_label("red", "circle") == "red circle"
    scene = world.single(4, "purple", "triangle", size="large")
    (obj,) = scene.objects
    assert (obj.color, obj.shape, obj.size) == ("purple", "triangle", "large")
    assert "purple triangle" in scene.captions[0]
    # Only the class changes within an index: same box for every colour of one shape.
    assert world.single(4, "red", "triangle", "large").objects[0].box == obj.box
    with pytest.raises(ValueError, match="teal"):
        world.single(0, "teal", "circle")

    dataset = SingleObjectScenes(per_class=2)
    assert len(dataset) == 64 and dataset.classes == ZERO_SHOT_CLASSES
    sample = dataset[37]
    assert ZERO_SHOT_CLASSES[sample["label"]] in sample["captions"][0]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_objects": 3, "max_objects": 2}, "min_objects=3"),
        ({"max_objects": MAX_OBJECTS + 1}, f"max_objects={MAX_OBJECTS + 1}"),
        ({"min_objects": 0}, "min_objects=0"),
        ({"image_size": 16}, "image_size=16"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_config_validation_names_field_and_value(fields, message):
    with pytest.raises(ValueError, match=message):
        ScenesConfig(**fields)


def test_other_image_sizes_render_within_bounds():
    for size in (32, 96):
        scene = Scenes(ScenesConfig(image_size=size, max_objects=MAX_OBJECTS)).scene(11)
        assert scene.image.shape == (size, size, 3)
        assert all(o.mask.shape == (size, size) and o.mask.any() for o in scene.objects)


def test_caption_styles_keep_the_first_styles_and_the_rest_of_the_scene():
    """caption_styles=1 keeps the canonical caption; image, QA and negatives stay those of the full world."""
    full = Scenes(ScenesConfig(seed=5))
    canonical = Scenes(ScenesConfig(seed=5, caption_styles=1))
    for i in range(20):
        a, b = full.scene(i), canonical.scene(i)
        assert b.captions == a.captions[:1]
        assert b.caption_negatives == a.caption_negatives[:1]
        assert np.array_equal(a.image, b.image) and a.qa == b.qa


@pytest.mark.parametrize("styles", [-1, 6])
def test_caption_styles_out_of_range_names_the_field(styles):
    with pytest.raises(ValueError, match=f"caption_styles={styles}"):
        ScenesConfig(caption_styles=styles)


def test_a_source_can_narrow_the_object_count():
    from vlkit.config import DataConfig, SourceConfig
    from vlkit.data import build_source

    world = build_source(SourceConfig(kind="scenes", max_objects=1), DataConfig(max_objects=3))
    assert all(len(world.scene(i).objects) == 1 for i in range(30))
    assert world.config.max_objects == 1 and world.config.min_objects == 1


def test_scene_only_source_fields_are_refused_elsewhere():
    from vlkit.config import DataConfig, SourceConfig
    from vlkit.data import build_source

    with pytest.raises(ValueError, match=r"data.sources\[0\].caption_styles: 1 applies to scenes"):
        build_source(SourceConfig(kind="photos", caption_styles=1), DataConfig())
    with pytest.raises(ValueError, match=r"data.sources\[0\]: ScenesConfig.min_objects=2 > max_objects=1"):
        build_source(SourceConfig(kind="scenes", min_objects=2, max_objects=1), DataConfig())
