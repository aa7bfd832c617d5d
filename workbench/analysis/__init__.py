"""Analyses built on trained networks and memory models (Monte Carlo, sensitivity, spectra, ...)."""

from .montecarlo import clean_accuracy, mc_evaluate, memory_energy_of, summarize

__all__ = ["clean_accuracy", "mc_evaluate", "memory_energy_of", "summarize"]
