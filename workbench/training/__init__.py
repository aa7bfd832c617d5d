"""Training: the loop, its recipe, SAM-family optimizers and LaNMax."""

from .config import TrainConfig, parse_assignment
from .lanmax import LaNMaxConfig, LaNMaxResult, ols_slopes, train_lanmax
from .sam import (
    ASAM,
    RHO_GRIDS,
    SAM,
    SAMSON,
    SAMFamily,
    disable_running_stats,
    enable_running_stats,
    frozen_running_stats,
    make_sam_optimizer,
)
from .trainer import Cancelled, TrainResult, accuracy, data_for, make_model, train

__all__ = ["Cancelled", "TrainConfig", "TrainResult", "accuracy", "data_for", "make_model", "parse_assignment", "train",
           "LaNMaxConfig", "LaNMaxResult", "ols_slopes", "train_lanmax",
           "ASAM", "RHO_GRIDS", "SAM", "SAMSON", "SAMFamily", "disable_running_stats", "enable_running_stats",
           "frozen_running_stats", "make_sam_optimizer"]
