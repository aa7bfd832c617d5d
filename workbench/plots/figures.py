"""The thesis figures the workbench reproduces, drawn from the result store (``workbench figure``).

Each entry of :data:`FIGURES` names a thesis figure, the shipped spec and experiment whose stored
result it draws, the plot function the pages use, and the command that regenerates its data.  A
figure is only ever *read* from the store: a result the store lacks is refused with the command
that computes it (nothing trains or samples behind a figure's back).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import holoviews as hv
import numpy as np
import xarray as xr

from ..experiments import Store
from ..experiments.sweep import CROSSBAR_SPEC, SHARPNESS_SPEC, SRAM_SPEC, load_spec, stored_experiment
from ..knobs import KnobError, check_choice
from .export import FIGURE_FORMATS, backends, render


@dataclass(frozen=True)
class Figure:
    name: str
    thesis: str                                    # "Fig 4.2"
    what: str
    spec: Path | None                              # None: computed at once, nothing stored
    experiment: str
    draw: Callable[[xr.Dataset | None], hv.core.Dimensioned]

    @property
    def command(self) -> str:
        if self.spec is None:
            return "(computed at once: no stored data)"
        return f"workbench sweep specs/{self.spec.name} --only {self.experiment}"


def _plots():
    from . import crossbar, sharpness, sram
    return sram, sharpness, crossbar


def _lanmax_p(ds: xr.Dataset):
    sram, _, _ = _plots()
    pts = np.flatnonzero(ds.method.values == "lanmax")
    if not len(pts):
        raise KnobError("the energy-accuracy study holds no LaNMax network: nothing to draw for Fig 4.5")
    i = pts[np.argmax(ds.value.values[pts])]
    p = {str(k): float(v) for k, v in zip(ds.layer.values, ds.p_layer.values[i])}
    return sram.layer_p_bars(p, f"BER per layer learned by LaNMax, α = {float(ds.value.values[i]):g} (Fig 4.5)")


def _spectra(ds: xr.Dataset):
    sram, _, _ = _plots()
    return sram.spectra_plot(ds, str(ds.layer.values[0]))


def _perturbation(_ds):
    from ..analysis.perturbation import perturbation_profile
    _, sharpness, _ = _plots()
    return sharpness.perturbation_plot(perturbation_profile(0.1, 0.5, samson_p=4.0))


def _rho(ds: xr.Dataset):
    _, sharpness, _ = _plots()
    return sharpness.rho_plot(ds, str(ds.method.values[0]))


def _catalogue() -> dict[str, Figure]:
    sram, sharpness, crossbar = _plots()
    rows = [
        ("fig4.1", "Fig 4.1", "parameters per layer", SRAM_SPEC, "sensitivity", lambda ds: sram.param_count_bars(
            ds.param_count)),
        ("fig4.2", "Fig 4.2", "accuracy vs test BER p per training BER", SRAM_SPEC, "uniform_ber",
         sram.uniform_ber_plot),
        ("fig4.3", "Fig 4.3", "layer sensitivity", SRAM_SPEC, "sensitivity", sram.sensitivity_plot),
        ("fig4.4", "Fig 4.4", "accuracy vs memory energy", SRAM_SPEC, "energy_accuracy", sram.energy_accuracy_plot),
        ("fig4.5", "Fig 4.5", "per-layer BER learned by LaNMax", SRAM_SPEC, "energy_accuracy", _lanmax_p),
        ("fig4.6", "Fig 4.6–4.8", "weight spectra vs training BER", SRAM_SPEC, "spectra", _spectra),
        ("fig5.1", "Fig 5.1", "perturbation of SAM, ASAM, SAMSON", None, "", _perturbation),
        ("fig5.2", "Fig 5.2–5.3", "accuracy vs multiplicative conductance noise σ_c", SHARPNESS_SPEC, "robustness",
         sharpness.robustness_plot),
        ("fig5.2-additive", "Fig 5.2–5.3 (additive noise)", "accuracy vs additive conductance noise σ",
         SHARPNESS_SPEC, "robustness_additive",
         lambda ds: sharpness.robustness_plot(ds, adabs=bool(ds.adabs.values.any()))),
        ("fig5.4", "Fig 5.4", "m-sharpness vs robustness", SHARPNESS_SPEC, "sharpness", sharpness.sharpness_scatter),
        ("fig5.5", "Fig 5.5", "accuracy after PCM drift", SHARPNESS_SPEC, "pcm_drift", sharpness.drift_plot),
        ("fig5.6", "Fig 5.6", "accuracy under post-training quantisation", SHARPNESS_SPEC, "quantization",
         sharpness.quantization_plot),
        ("fig5.7", "Fig 5.7", "out-of-distribution robustness", SHARPNESS_SPEC, "ood", sharpness.ood_heatmap),
        ("tab5.6", "Tab 5.6", "accuracy vs σ_c over the ρ grid", SHARPNESS_SPEC, "rho", _rho),
        ("fig6.1", "Fig 6.1", "minibatches n_a, n_p ranking two networks (eq 6.7)", CROSSBAR_SPEC, "nas_select",
         crossbar.selection_plot),
        ("fig6.2", "Fig 6.2", "power–accuracy Pareto fronts of M1, M2, M3", CROSSBAR_SPEC, "nas",
         crossbar.pareto_plot),
    ]
    return {r[0]: Figure(*r) for r in rows}


_FIGURES: dict[str, Figure] | None = None


def figures() -> dict[str, Figure]:
    """The catalogue, by name."""
    global _FIGURES
    if _FIGURES is None:
        _FIGURES = _catalogue()
    return _FIGURES


def figure_list() -> list[str]:
    """One line per figure: its name, the thesis figure, the command regenerating its data."""
    return [f"{f.name}\t{f.thesis}\t{f.command}" for f in figures().values()]


def figure_data(name: str, store: Store | None = None) -> xr.Dataset | None:
    """The stored Dataset figure ``name`` draws (None for a figure computed at once)."""
    fig = figures()[check_choice("figure", name, list(figures()))]
    if fig.spec is None:
        return None
    params = load_spec(fig.spec)["experiments"][fig.experiment]
    ds = stored_experiment(fig.experiment, params, store or Store())
    if ds is None:
        raise KnobError(f"the data of {fig.name} ({fig.thesis}) is not in the store: compute it with `{fig.command}`")
    return ds


def figure_plot(name: str, store: Store | None = None):
    """The HoloViews object of figure ``name``, drawn from the store."""
    backends()
    return figures()[check_choice("figure", name, list(figures()))].draw(figure_data(name, store))


def save_figure(name: str, out: str | Path, store: Store | None = None, dpi: int = 150) -> Path:
    """Render figure ``name`` to ``out`` (its suffix picks PDF, PNG or SVG)."""
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise KnobError(f"--out {out}: the file name must end in one of .{', .'.join(FIGURE_FORMATS)}")
    data = render(figure_plot(name, store), fmt, dpi=dpi)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


__all__ = ["Figure", "figure_data", "figure_list", "figure_plot", "figures", "save_figure"]
