"""Analyses built on trained networks and memory models (Monte Carlo, sensitivity, spectra, ...)."""

from .montecarlo import clean_accuracy, mc_evaluate, memory_energy_of, summarize
from .sensitivity import layer_sensitivity, median_layer, sensitivity_test
from .spectra import (
    penultimate_layer,
    relative_change,
    spectra_dataset,
    spectra_ttest,
    top_singular_values,
    unfold,
    welch_test,
)

__all__ = [
    "clean_accuracy",
    "layer_sensitivity",
    "mc_evaluate",
    "median_layer",
    "memory_energy_of",
    "penultimate_layer",
    "relative_change",
    "sensitivity_test",
    "spectra_dataset",
    "spectra_ttest",
    "summarize",
    "top_singular_values",
    "unfold",
    "welch_test",
]
