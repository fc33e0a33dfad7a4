"""Config loading: every recipe parses, errors name the field, overrides get the right types."""

import dataclasses
import logging
from pathlib import Path

import pytest
import yaml

from vlkit.config import (
    KIND_SECTIONS,
    SECTIONS,
    Config,
    ConfigError,
    ModelConfig,
    SourceConfig,
    VisionConfig,
    VLMConfig,
    load_config,
    save_config,
    stage_configs,
    to_dict,
)
from vlkit.models.kinds import KINDS
from vlkit.tour import clip_defaults

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_defaults_build():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.model.image_encoder == "vit-tiny" and cfg.model.text_encoder == "text-tiny"
    assert [(s.kind, s.max_objects, s.caption_styles) for s in cfg.data.sources] == [
        ("scenes", 1, 1),  # single objects, canonical captions
        ("scenes", 0, 0),  # the whole 1-3 object world, every caption style
    ]
    assert cfg.model.vision_stem == "conv"
    assert cfg.train.betas == (0.9, 0.98)


def test_recipes_exist():
    assert RECIPES, f"no recipes under {ROOT / 'recipes'}"


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_parses_and_starts_with_a_comment(recipe):
    first = recipe.read_text().splitlines()[0]
    assert first.startswith("#"), f"{recipe.name}: should start with a comment saying how to run it"
    cfg = load_config(recipe)
    assert isinstance(cfg, Config)
    assert cfg.train.out_dir  # every recipe writes somewhere


def test_clip_scenes_recipe_documents_the_defaults():
    """The recipe is the tour's CLIP: the defaults with its curriculum (`default_stages`), bf16 auto."""
    cfg = load_config(ROOT / "recipes" / "clip-scenes.yaml")
    defaults = load_config(None, defaults=clip_defaults())
    assert [(s.name, s.set) for s in cfg.stages] == [(s.name, s.set) for s in defaults.stages]
    cfg.train.out_dir = defaults.train.out_dir
    assert cfg == defaults, {
        section: {
            k: (v, getattr(getattr(defaults, section), k))
            for k, v in dataclasses.asdict(getattr(cfg, section)).items()
            if dataclasses.asdict(getattr(defaults, section))[k] != v
        }
        for section in ("model", "data", "train", "eval")
    }


@pytest.mark.parametrize(
    ("override", "names", "valid"),
    [
        ("lrr=1", "'lrr'", ["data", "eval", "model", "train"]),
        ("train.lrr=1", "'train.lrr'", ["lr", "steps", "batch_size", "warmup_steps"]),
        ("model.embed=3", "'model.embed'", ["embed_dim", "image_encoder"]),
    ],
)
def test_unknown_key_names_it_and_lists_valid_keys(override, names, valid):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert f"unknown key {names}" in message
    for key in valid:
        assert key in message.split("valid keys here:")[1]


def test_unknown_key_in_a_recipe_names_the_file(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("# bad\ntrain:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'train\.stepz'; valid keys here: .*steps"):
        load_config(recipe)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.steps=abc", "train.steps: expected int, got 'abc'"),
        ("train.bf16=3", "train.bf16: value 3 is not a bool | str"),
        ("train.bf16=fast", "train.bf16='fast': valid values are true, false, auto"),
        ("model.loss=[1]", "model.loss: expected str, got [1]"),
        ("train.betas=[0.9]", "train.betas: expected a list of 2 values, got [0.9]"),
        ("train", "expected key=value"),
    ],
)
def test_wrong_type_names_field_and_value(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_a_bad_fixed_shapes_value_is_named():
    with pytest.raises(ConfigError, match=r"vlm.fixed_shapes='always': valid values are true, false, auto"):
        load_config("recipes/llava-clip-scenes-staged.yaml", ["vlm.fixed_shapes=always"])


def test_overrides_get_the_field_types():
    cfg = load_config(
        None,
        ["train.lr=3e-4", "model.loss=siglip", "train.betas=[0.8,0.9]", "train.steps=7", "train.bf16=true"],
    )
    assert cfg.train.lr == 3e-4 and type(cfg.train.lr) is float
    assert cfg.model.loss == "siglip"
    assert cfg.train.betas == (0.8, 0.9) and type(cfg.train.betas) is tuple
    assert cfg.train.steps == 7 and type(cfg.train.steps) is int
    assert cfg.train.bf16 is True
    # an int written for a float field is still a float
    assert type(load_config(None, ["train.lr=1"]).train.lr) is float


def test_overrides_apply_on_top_of_a_recipe():
    cfg = load_config(ROOT / "recipes" / "clip-scenes.yaml", ["train.steps=7", "model.embed_dim=16"])
    assert cfg.train.steps == 7 and cfg.model.embed_dim == 16
    assert cfg.model.vision_width == Config().model.vision_width


def test_list_of_sources_with_a_bad_entry_names_its_index():
    good = load_config(None, ["data.sources=[{kind: scenes}, {kind: folder, path: x, weight: 2}]"])
    assert good.data.sources == [SourceConfig(), SourceConfig(kind="folder", path="x", weight=2.0)]
    with pytest.raises(ConfigError, match=r"data\.sources\[1\]\.kind: expected str, got 3"):
        load_config(None, ["data.sources=[{kind: scenes}, {kind: 3}]"])
    with pytest.raises(ConfigError, match=r"unknown key 'data\.sources\[1\]\.kindd'"):
        load_config(None, ["data.sources=[{kind: scenes}, {kindd: scenes}]"])


def test_save_load_round_trip(tmp_path):
    cfg = load_config(
        None,
        [
            "train.lr=3e-4",
            "train.betas=[0.8,0.9]",
            "model.loss=siglip",
            "data.sources=[{kind: scenes, weight: 0.5}, {kind: photos}]",
            "eval.templates=['a {}', 'the {}']",
        ],
    )
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg


def test_missing_recipe_and_bad_yaml_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="recipe not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)


def test_stages_chain_and_command_line_overrides_win_in_every_stage(tmp_path):
    from vlkit.config import stage_configs

    recipe = tmp_path / "two.yaml"
    recipe.write_text(
        "kind: generative\ntrain: {out_dir: runs/x, steps: 100}\n"
        "stages:\n  - {name: align, set: ['train.steps=80', 'vlm.freeze_lm=true']}\n"
        "  - {name: instruct, set: ['vlm.peft=lora']}\n"
    )
    stages = stage_configs(load_config(recipe, ["train.steps=2"]))
    assert [name for name, _ in stages] == ["align", "instruct"]
    (_, align), (_, instruct) = stages
    assert align.train.steps == instruct.train.steps == 2  # the command line beats the stage's own set
    assert align.vlm.freeze_lm and not instruct.vlm.freeze_lm and instruct.vlm.peft == "lora"
    assert align.train.out_dir == "runs/x/align" and instruct.vlm.init_from == "runs/x/align"
    assert not align.stages and not instruct.stages
    recipe.write_text("stages:\n  - {name: 'a/b'}\n")
    with pytest.raises(ConfigError, match=r"stages\[0\]\.name"):
        stage_configs(load_config(recipe))


def test_the_staged_vlm_recipe_documents_the_tours_vlm():
    """The tour's generative step (`vlkit.tour.GENERATIVE`, on the embedded defaults) trains what
    recipes/llava-clip-scenes-staged.yaml trains, stage by stage."""
    from vlkit.config import stage_configs
    from vlkit.tour import GENERATIVE

    paths = ["train.out_dir=runs/x", "vlm.vision_init=runs/clip"]
    recipe = stage_configs(load_config(ROOT / "recipes" / "llava-clip-scenes-staged.yaml", paths))
    tour = stage_configs(load_config(None, paths, defaults=GENERATIVE))
    assert [name for name, _ in recipe] == [name for name, _ in tour] == ["grounding", "mix"]
    for (name, want), (_, got) in zip(recipe, tour, strict=True):
        assert got == want, {
            (name, section): {
                k: (v, getattr(getattr(want, section), k))
                for k, v in dataclasses.asdict(getattr(got, section)).items()
                if dataclasses.asdict(getattr(want, section))[k] != v
            }
            for section in ("model", "vlm", "data", "train", "eval")
        }


def test_a_stage_named_override_changes_that_stage_only_and_an_unknown_stage_is_named(tmp_path):
    from vlkit.config import stage_configs

    recipe = tmp_path / "two.yaml"
    recipe.write_text(
        "kind: generative\ntrain: {out_dir: runs/x, steps: 100}\n"
        "stages:\n  - {name: align, set: ['train.steps=80']}\n  - {name: instruct, set: []}\n"
    )
    overrides = ["instruct:train.steps=7", "align:vlm.tasks=[vqa]", "train.lr=0.01"]
    (_, align), (_, instruct) = stage_configs(load_config(recipe, overrides))
    assert (align.train.steps, instruct.train.steps) == (80, 7)
    assert align.vlm.tasks == ["vqa"] and instruct.vlm.tasks != ["vqa"]
    assert align.train.lr == instruct.train.lr == 0.01
    # in its stage, the override naming it wins over a plain one, in whatever order given
    (_, align), _ = stage_configs(load_config(recipe, ["align:train.steps=3", "train.steps=2"]))
    assert align.train.steps == 3
    with pytest.raises(ConfigError, match=r"no stage named 'mixx' \(the stages are align, instruct\)"):
        load_config(recipe, ["mixx:train.steps=1"])
    recipe.write_text("train: {steps: 5}\n")
    with pytest.raises(ConfigError, match="this recipe has no stages"):
        load_config(recipe, ["mix:train.steps=1"])
    # a value holding ':' is a plain override
    assert load_config(recipe, ["data.sources=[{kind: scenes}]"]).data.sources[0].kind == "scenes"


def test_a_generative_first_stage_tokenizer_also_learns_the_later_stages_sources(tmp_path):
    """Later stages keep the first stage's tokenizer, so it learns their texts too; a contrastive
    curriculum is left as its figures were measured."""
    from vlkit.config import SourceConfig

    where = "{kind: scenes, position_questions: true, question_types: [position]}"
    recipe = tmp_path / "two.yaml"
    recipe.write_text(
        "kind: generative\ndata: {sources: [{kind: scenes}]}\n"
        f"stages:\n  - {{name: where, set: ['data.sources=[{where}]']}}\n"
        "  - {name: all, set: ['data.sources=[{kind: scenes}, {kind: scenes, min_objects: 2}]']}\n"
    )
    (_, first), (_, second) = stage_configs(load_config(recipe))
    assert first.data.sources == [
        SourceConfig(kind="scenes", position_questions=True, question_types=["position"])
    ]
    assert first.data.tokenizer_sources == [
        SourceConfig(kind="scenes"),
        SourceConfig(kind="scenes", min_objects=2),
    ]
    assert second.data.tokenizer_sources == []
    recipe.write_text(recipe.read_text().replace("kind: generative", "kind: contrastive"))
    assert all(not c.data.tokenizer_sources for _, c in stage_configs(load_config(recipe)))


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.steps=0", r"train.steps=0: out of range; valid values are >= 1"),
        ("train.steps=-5", r"train.steps=-5: out of range"),
        ("train.batch_size=0", r"train.batch_size=0: out of range"),
        ("train.grad_accum=0", r"train.grad_accum=0: out of range"),
        ("train.min_lr_ratio=1.5", r"train.min_lr_ratio=1.5: out of range; valid values are in \[0, 1\]"),
        ("eval.num_images=0", r"eval.num_images=0: out of range"),
    ],
)
def test_values_out_of_range_name_the_key_value_and_range(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_a_stage_override_out_of_range_names_the_stage(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - name: a\n    set: ['train.grad_accum=0']\n")
    with pytest.raises(ConfigError, match=r"stages\[0\] \(a\): train.grad_accum=0: out of range"):
        stage_configs(load_config(recipe))


def test_stages_in_a_kind_that_cannot_continue_a_run_are_refused_naming_it(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("kind: detector\nstages:\n  - name: a\n  - name: b\n")
    with pytest.raises(ConfigError, match=r"stages\[1\] \(b\): a detector recipe has no stages"):
        stage_configs(load_config(recipe))


# ------------------------------------------------------------------ each kind carries its own fields

DUAL_ONLY = {f.name for f in dataclasses.fields(ModelConfig)} - {
    f.name for f in dataclasses.fields(VisionConfig)
}


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_each_kind_carries_only_its_own_sections_and_fields(recipe, tmp_path):
    cfg = load_config(recipe)
    assert set(KIND_SECTIONS) == set(KINDS)  # the config floor names the same kinds as the models floor
    for name in SECTIONS:
        want = KIND_SECTIONS[cfg.kind].get(name)
        assert (type(getattr(cfg, name)) is want) if want else getattr(cfg, name) is None, name
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert {s for s in SECTIONS if s in saved} == set(KIND_SECTIONS[cfg.kind])
    if cfg.kind == "generative":  # the dual encoder's text tower, loss and locking are not carried
        assert not DUAL_ONLY & set(saved["model"]) and not any(hasattr(cfg.model, k) for k in DUAL_ONLY)
    assert load_config(tmp_path / "config.yaml") == cfg


def _old_saved(cfg: Config, tmp_path: Path, **model: object) -> Path:
    """A config.yaml as vlkit wrote it before the split: every kind's sections, every field."""
    data = to_dict(cfg)
    data["model"] = {**to_dict(ModelConfig()), **data["model"], **model}
    data["vlm"] = data.get("vlm") or to_dict(VLMConfig())
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path / "old.yaml"


def test_configs_saved_before_the_split_load(tmp_path, caplog):
    generative = load_config(ROOT / "recipes" / "llava-scenes.yaml")
    with caplog.at_level(logging.WARNING, logger="vlkit.config"):
        assert load_config(_old_saved(generative, tmp_path)) == generative  # defaults: nothing to say
        assert load_config(_old_saved(Config(), tmp_path)) == Config()  # a dual encoder's dead vlm section
    assert not caplog.records
    # the tour passed its dual encoder's sizes to its generative step: they had no effect, and are named
    with caplog.at_level(logging.WARNING, logger="vlkit.config"):
        assert load_config(_old_saved(generative, tmp_path, text_width=16, loss="siglip")) == generative
    assert "ignoring model.text_width=16, model.loss='siglip': a contrastive model's" in caplog.text
    assert "(a generative config has no such fields)" in caplog.text


def test_a_key_no_kind_has_is_still_an_error_naming_the_kinds_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'model.text_widht'; valid keys here: image_encoder"):
        load_config(ROOT / "recipes" / "llava-scenes.yaml", ["model.text_widht=3"])
    with pytest.raises(ConfigError, match=r"vlm: a contrastive config has no vlm section; got \{'conector'"):
        load_config(None, ["vlm.conector=linear"])
    with pytest.raises(
        ConfigError, match="kind: 'dense' is not a model kind; valid: contrastive, generative"
    ):
        load_config(None, ["kind=dense"])


def test_switching_a_config_in_code_fits_its_sections():
    cfg = Config()
    cfg.model.vision_width, cfg.model.text_width = 16, 16
    cfg.kind = "generative"  # the image tower is kept; the text tower, loss and locking are not the VLM's
    assert type(cfg.model) is VisionConfig and cfg.model.vision_width == 16 and cfg.vlm == VLMConfig()
    cfg.kind = "contrastive"
    assert type(cfg.model) is ModelConfig and cfg.model.vision_width == 16 and cfg.vlm is None
    assert dataclasses.replace(cfg, kind="generative").model == VisionConfig(vision_width=16)
