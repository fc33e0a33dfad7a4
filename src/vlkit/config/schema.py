"""The whole config (`Config`): which sections each model kind has (`KIND_SECTIONS`), and the
valid range of every bounded value (`check_ranges`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vlkit.config.sections import (
    ConfigError,
    DataConfig,
    DetectorConfig,
    EvalConfig,
    FusionConfig,
    ModelConfig,
    SegmenterConfig,
    StageConfig,
    TrainConfig,
    TrainingFreeConfig,
    VisionConfig,
    VLMConfig,
)

# model kind → the sections that describe its model, and their types: all a kind's config carries
# besides data / train / eval / stages. The config floor's per-kind table (`vlkit.models.kinds`
# holds the models floor's, and checks that both name the same kinds).
KIND_SECTIONS: dict[str, dict[str, type]] = {
    "contrastive": {"model": ModelConfig},
    "generative": {"model": VisionConfig, "vlm": VLMConfig},
    "detector": {"model": ModelConfig, "detector": DetectorConfig},
    "segmenter": {"model": ModelConfig, "segmenter": SegmenterConfig},
    "training-free": {"model": TrainingFreeConfig},
    "fusion": {"model": FusionConfig},
}
SECTIONS = ("model", "vlm", "detector", "segmenter")  # every section some kind has; one a kind lacks is None


@dataclass
class Config:
    # contrastive (dual encoder: `model`) | generative (`model` + `vlm`) | detector (`model` +
    # `detector`) | training-free (`model`: a `TrainingFreeConfig`)
    kind: str = "contrastive"
    # The kind's sections (`KIND_SECTIONS`): a dual encoder's `ModelConfig`, or a generative
    # model's `VisionConfig` (the image tower) and `VLMConfig`.
    model: VisionConfig = field(default_factory=ModelConfig)
    vlm: VLMConfig | None = None
    detector: DetectorConfig | None = None
    segmenter: SegmenterConfig | None = None
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    stages: list[StageConfig] = field(default_factory=list)  # empty: one stage, the recipe itself

    def __post_init__(self) -> None:
        self._fit_sections()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "kind" and "stages" in self.__dict__:  # set after __init__: sections follow
            self._fit_sections()

    def _fit_sections(self) -> None:
        """Gives each section the kind's type (None where the kind has none), keeping the fields
        the old and new types share: `Config()` switched to generative keeps `model`'s image
        tower and loses its text tower and loss."""
        sections = KIND_SECTIONS.get(self.kind)
        if sections is None:
            return  # refused where it is read (`load_config`, `vlkit.models.kinds.model_kind`)
        for name in SECTIONS:
            cls, current = sections.get(name), getattr(self, name)
            if cls is None or type(current) is not cls:
                shared = {f.name for f in dataclasses.fields(cls)} if cls else set()
                kept = {k: v for k, v in (vars(current) if current else {}).items() if k in shared}
                object.__setattr__(self, name, cls(**kept) if cls else None)


# --------------------------------------------------------------------------- ranges

# key → (lowest, highest) valid value, None = unbounded: a value out of range passes the type
# check but would fail late (steps=0: no log to plot) or silently (grad_accum=0: trains nothing).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "train.steps": (1, None),
    "train.batch_size": (1, None),
    "train.grad_accum": (1, None),
    "train.lr": (0, None),
    "train.warmup_steps": (0, None),
    "train.min_lr_ratio": (0, 1),
    "train.weight_decay": (0, None),
    "train.grad_clip": (0, None),
    "train.log_every": (1, None),
    "train.eval_every": (0, None),
    "train.save_every": (0, None),
    "train.keep_last": (1, None),
    "train.threads": (0, None),
    "eval.num_images": (1, None),
    "model.embed_dim": (1, None),
    "model.image_size": (1, None),
    "model.patch_size": (1, None),
    "model.anchors": (1, None),
    "model.k": (1, None),
    "model.p": (0, None),
    "model.top": (1, None),
    "model.mlm_probability": (0, 1),
    "model.mlm_group_probability": (0, 1),
    "data.image_size": (1, None),
    "vlm.grounding_weight": (0, None),
    "vlm.length_groups": (1, 8),
    "vlm.lm_init_std": (1e-6, None),
    "vlm.question_noise": (0, 1),
    "model.grounding_weight": (0, None),
}


DISTRIBUTED = ("ddp", "fsdp")  # train.distributed


def check_ranges(cfg: Config) -> None:
    """Raises ConfigError naming the key, the value and the valid range of the first value out of range."""
    if cfg.train.distributed not in DISTRIBUTED:
        raise ConfigError(
            f"train.distributed={cfg.train.distributed!r}: valid values are {', '.join(DISTRIBUTED)}"
        )
    if isinstance(cfg.train.bf16, str) and cfg.train.bf16 != "auto":
        raise ConfigError(f"train.bf16={cfg.train.bf16!r}: valid values are true, false, auto")
    if cfg.vlm is not None and isinstance(cfg.vlm.fixed_shapes, str) and cfg.vlm.fixed_shapes != "auto":
        raise ConfigError(f"vlm.fixed_shapes={cfg.vlm.fixed_shapes!r}: valid values are true, false, auto")
    for key, (lo, hi) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name, None)
        if value is None:  # a field this kind's config does not have (model.embed_dim: dual encoders')
            continue
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            valid = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise ConfigError(f"{key}={value!r}: out of range; valid values are {valid}")
