"""Training: the loop, its recipe and (in later modules) SAM-family optimizers and LaNMax."""

from .config import TrainConfig, parse_assignment
from .trainer import Cancelled, TrainResult, accuracy, make_model, train

__all__ = ["Cancelled", "TrainConfig", "TrainResult", "accuracy", "make_model", "parse_assignment", "train"]

from .lanmax import LaNMaxConfig, LaNMaxResult, ols_slopes, train_lanmax

__all__ += ["LaNMaxConfig", "LaNMaxResult", "ols_slopes", "train_lanmax"]

from .sam import (ASAM, RHO_GRIDS, SAM, SAMSON, SAMFamily, disable_running_stats, enable_running_stats,
                  frozen_running_stats, make_sam_optimizer)

__all__ += ["ASAM", "RHO_GRIDS", "SAM", "SAMSON", "SAMFamily", "disable_running_stats", "enable_running_stats",
            "frozen_running_stats", "make_sam_optimizer"]
