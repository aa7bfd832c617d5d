"""The compute layer: experiment functions, presets and the result store."""

from .core import (
    CH5_BEST,
    CURVE_GRIDS,
    DEFAULT_PRESET,
    PRESET_FOR_TECHNOLOGY,
    PRESETS,
    Trained,
    evaluate,
    evaluate_spec,
    noise_curve,
    param_counts,
    preset_config,
    test_tensors,
    train_model,
)
from .store import CODE_VERSION, SHIPPED_ROOT, Store, spec_key

__all__ = [
    "CH5_BEST",
    "CODE_VERSION",
    "CURVE_GRIDS",
    "DEFAULT_PRESET",
    "PRESETS",
    "PRESET_FOR_TECHNOLOGY",
    "SHIPPED_ROOT",
    "Store",
    "Trained",
    "evaluate",
    "evaluate_spec",
    "noise_curve",
    "param_counts",
    "preset_config",
    "spec_key",
    "test_tensors",
    "train_model",
]
