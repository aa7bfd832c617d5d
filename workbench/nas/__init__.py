"""Neural architecture search co-optimising the architecture and the memristor scale ``g_u``
(thesis ch. 6): the state encoding ``s = (m, g_u)`` (``space``), the weight-sharing layers
(``elastic``) and the supernet built and trained from them (``supernet``), the repair and genetic
operators, the accuracy/power estimator, and NSGA-II strategies M1/M2/M3 (pymoo).  Optionally
(issue 15) one ADC-bits gene per layer and accuracy against energy per inference (J) and latency (s)
from a hardware profile (``cost``: the exact converter/buffer energy and latency).

Place in the layer stack: above ``analysis`` (it uses the Monte-Carlo evaluator and the
trainer's ``Cancelled``), below ``experiments``.
"""

from .cost import CostModel
from .elastic import SubNet, fold_batchnorm, recalibrate_bn
from .estimator import (
    ENERGY_TARGETS,
    SIGMA,
    TARGETS,
    Estimator,
    collect,
    evaluate_draw,
    lhs_gu,
    memory_map,
    minibatch_curves,
    r2,
    select_n,
    state_memory_map,
)
from .operators import (
    StateCrossover,
    StateMutation,
    StateRepair,
    StateSampling,
    crossover_states,
    mutate_states,
    repair_states,
    sample_states,
)
from .pipeline import NASConfig, NASResult, run_nas
from .search import (
    DEFAULT_OBJECTIVES,
    M3_FACTORS,
    OBJECTIVES,
    STRATEGIES,
    EstimatorProblem,
    SearchResult,
    check_objectives,
    compare,
    estimate_objectives,
    hypervolume,
    non_dominated,
    pareto_mask,
    resimulate,
    run_search,
    scale_states,
)
from .space import Arch, ArchSpace
from .supernet import Supernet, SupernetConfig, SupernetResult, calibration_tensor, train_supernet

__all__ = [
    "DEFAULT_OBJECTIVES", "ENERGY_TARGETS", "OBJECTIVES", "TARGETS", "CostModel", "check_objectives",
    "estimate_objectives", "pareto_mask", "state_memory_map",
    "Arch", "ArchSpace", "Estimator", "EstimatorProblem", "M3_FACTORS", "NASConfig", "NASResult", "SIGMA", "STRATEGIES",
    "SearchResult", "StateCrossover", "StateMutation", "StateRepair", "StateSampling", "SubNet", "Supernet",
    "SupernetConfig", "SupernetResult", "calibration_tensor", "collect", "compare", "crossover_states",
    "evaluate_draw", "fold_batchnorm", "hypervolume", "lhs_gu", "memory_map", "minibatch_curves", "mutate_states",
    "non_dominated", "r2", "recalibrate_bn", "repair_states", "resimulate", "run_nas", "run_search", "sample_states",
    "scale_states", "select_n", "train_supernet",
]
