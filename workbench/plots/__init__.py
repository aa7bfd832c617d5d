"""Pure plotting functions: ``xarray.Dataset -> holoviews element`` (no state, no Panel)."""

from .playground import accuracy_distribution, layer_cost_bars, noise_curve_plot, training_curve

__all__ = ["accuracy_distribution", "layer_cost_bars", "noise_curve_plot", "training_curve"]
