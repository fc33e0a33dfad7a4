"""Typed run configuration: dataclasses filled from YAML recipes and `--set key=value` overrides.

A recipe is plain data. Loading is strict: an unknown key names itself and the valid keys, a
wrong type names the field and the value. The resolved config is saved next to every
checkpoint (`config.yaml`), and `load_config` on that file rebuilds the run exactly.

`sections` holds the section dataclasses, `schema` the whole `Config` (the sections each kind
has, the valid ranges), `loading` reading / writing / overrides, `stages` multi-stage recipes.
Everything is imported from here: `from vlkit.config import Config, load_config`.
"""

from vlkit.config.loading import (
    apply_override,
    config_from_dict,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from vlkit.config.schema import DISTRIBUTED, KIND_SECTIONS, RANGES, SECTIONS, Config, check_ranges
from vlkit.config.sections import (
    DEFAULT_TEMPLATES,
    PEFT_KINDS,
    ConfigError,
    DataConfig,
    DetectorConfig,
    EvalConfig,
    FusionConfig,
    ModelConfig,
    SegmenterConfig,
    SourceConfig,
    StageConfig,
    TrainConfig,
    TrainingFreeConfig,
    VisionConfig,
    VLMConfig,
    default_sources,
    default_stages,
)
from vlkit.config.stages import check_continues, stage_configs

__all__ = [
    "DEFAULT_TEMPLATES",
    "DISTRIBUTED",
    "KIND_SECTIONS",
    "PEFT_KINDS",
    "RANGES",
    "SECTIONS",
    "Config",
    "ConfigError",
    "DataConfig",
    "DetectorConfig",
    "EvalConfig",
    "FusionConfig",
    "ModelConfig",
    "SegmenterConfig",
    "SourceConfig",
    "StageConfig",
    "TrainConfig",
    "TrainingFreeConfig",
    "VLMConfig",
    "VisionConfig",
    "apply_override",
    "check_continues",
    "check_ranges",
    "config_from_dict",
    "default_sources",
    "default_stages",
    "from_dict",
    "load_config",
    "save_config",
    "stage_configs",
    "to_dict",
]
