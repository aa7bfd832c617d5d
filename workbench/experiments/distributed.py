"""Distributed sweeps (``workbench sweep SPEC --scheduler ADDRESS``): the cell catalogue lives in
:mod:`.cells`, the cluster runner in :mod:`.cluster`; this module keeps the documented import path
``workbench.experiments.distributed.run_spec_distributed``."""

from .cells import CELLS, Cell, experiment_cells, spec_cells
from .cluster import CellsRun, SweepError, SweepReport, connect, run_cells, run_spec_distributed, warm_up

__all__ = ["CELLS", "Cell", "CellsRun", "SweepError", "SweepReport", "connect", "experiment_cells", "run_cells",
           "run_spec_distributed", "spec_cells", "warm_up"]
