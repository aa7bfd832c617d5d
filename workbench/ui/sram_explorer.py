"""State of the "Under-volted SRAM" page (thesis ch. 4); no Panel here.

It opens on the results of ``specs/sram_digits.json`` (shipped in ``data/store``), lets the user
edit one BER per layer with an instant energy readout (eq 3.30), launch a LaNMax run whose
per-layer ``p`` streams in epoch by epoch, and inspect any network of the energy–accuracy plot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import param

from ..experiments import Store, param_counts
from ..experiments.sram import bc_config, energy_of, energy_ratios
from ..experiments.sweep import SPEC_DIR, SRAM_SPEC, load_spec, run_experiment, stored_experiment
from ..hardware import SRAMMemory
from ..knobs import KnobError
from .base import BackgroundState, result_param
from .explorer import P_CHOICES

#: a layer's BER before anyone edits it (the sensitivity study's base BER)
DEFAULT_LAYER_P = 0.01
#: the energy–accuracy methods, as a link names them (``point=lanmax:0.1``), and the spec grid each varies
POINT_GRIDS = {"fp16": "widths", "bc": "widths", "bc_uniform": "p_uniform", "lanmax": "alphas"}

REGENERATE = "workbench sweep specs/sram_digits.json --cache-dir data/store"
#: the fair LaNMax study (issue 13 item 3), read from the store only: it takes ~30 min to compute
STUDY_SPEC = SPEC_DIR / "lanmax_study.json"
STUDY_REGENERATE = "workbench sweep specs/lanmax_study.json --cache-dir data/store"


class SRAMExplorer(BackgroundState):
    """Knobs and results of the ch. 4 page."""

    job_kinds = ("uniform_ber", "sensitivity", "energy_accuracy", "spectra", "lanmax", "point", "lanmax_study")
    cancel_kind = "lanmax"

    p_train = param.Selector(default=0.01, objects=[0.01], doc="training BER p_t highlighted in the uniform study")
    p = param.Selector(default=0.01, objects=P_CHOICES[1:], doc="test BER p marked on the uniform study")
    spectra_layer = param.Selector(default=None, objects=[], doc="layer whose weight spectrum is shown")
    layer_p = param.Dict(default={}, doc="per-layer BER being edited (layer → p)")
    alpha = param.Number(0.01, bounds=(0.0, 10.0), doc="LaNMax energy weight α (eq 4.5)")
    width = param.Selector(default=1.0, objects=[0.25, 0.5, 1.0, 2.0],
                           doc="width multiplier of the network edited / trained")
    epochs = param.Integer(20, bounds=(2, 500), doc="epochs of a LaNMax run")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="seed of a LaNMax run")
    selected = param.Integer(default=None, allow_None=True, doc="point of the energy–accuracy plot shown in detail")

    run_lanmax = param.Event(doc="start a LaNMax run with α")
    cancel = param.Event(doc="cancel the LaNMax run")

    uniform = result_param()
    sensitivity = result_param()
    energy = result_param()
    spectra = result_param()
    lanmax_p = param.Dict(default={}, precedence=-1, doc="per-layer p trajectory of the live run (layer → list)")
    lanmax_loss = param.List(default=[], precedence=-1)
    lanmax_result = param.Dict(default=None, allow_None=True, precedence=-1)
    point_sensitivity = result_param()
    study = result_param("the fair LaNMax study of specs/lanmax_study.json")
    study_missing = param.Boolean(False, precedence=-1, doc="the store has no result of the LaNMax study")

    def __init__(self, store: Store | None = None, spec_path=SRAM_SPEC, device: str = "auto", autorun: bool = True,
                 **params):
        super().__init__(**params)
        self.store = store or Store()
        self.device = device
        self.spec = load_spec(spec_path)
        self.counts = param_counts(bc_config())
        self.reference_weights = sum(param_counts(bc_config()).values())
        layers = list(self.counts)
        self.layer_p = {k: DEFAULT_LAYER_P for k in layers}
        self._pending_point: tuple[str, float] | None = None
        self.param.spectra_layer.objects = layers
        self.spectra_layer = layers[0]
        grid = self.spec["experiments"]["uniform_ber"]["p_train"]
        self.param.p_train.objects = grid
        if autorun:
            self.load()

    # ------------------------------------------------------------------ results of the spec
    def load(self) -> None:
        """Load (or compute, in the background) every experiment of the spec."""
        for name, target in (("uniform_ber", "uniform"), ("sensitivity", "sensitivity"), ("energy_accuracy", "energy"),
                             ("spectra", "spectra")):
            params = self.spec["experiments"][name]

            def job(cancel, name=name, params=params):
                return run_experiment(name, params, self.store, device=self.device, cancel=cancel)

            self.launch(name, job, into=target)
        self.load_study()

    def load_study(self) -> None:
        """Read the LaNMax study from the store (never computed here); ``study_missing`` if absent."""
        params = load_spec(STUDY_SPEC)["experiments"]["lanmax_study"]
        self.launch("lanmax_study", lambda cancel: stored_experiment("lanmax_study", params, self.store),
                    on_done=lambda ds: {"study": ds, "study_missing": ds is None}, compute=False)

    @param.depends("width", watch=True)
    def _on_width(self):
        self.counts = param_counts(bc_config(width=self.width))
        self.param.trigger("layer_p")

    # ------------------------------------------------------------------ per-layer editor
    def set_layer_p(self, layer: str, value: float) -> None:
        """Edit one layer's BER (validated like every SRAM knob)."""
        if layer not in self.counts:
            raise KeyError(f"layer={layer!r} is not a layer of this network; layers: {list(self.counts)}")
        SRAMMemory(p=value)      # raises a ValueError naming p and its range when out of bounds
        self.layer_p = {**self.layer_p, layer: float(value)}

    def edited_energy(self) -> float:
        """Memory energy (eq 3.30) of the BinaryConnect net at the edited per-layer p, relative to the
        full-width BinaryConnect net read reliably (:func:`workbench.experiments.sram.energy_of`)."""
        return energy_of(self.layer_p, self.counts, 1, self.reference_weights)

    # ------------------------------------------------------------------ energy–accuracy details
    def point_details(self) -> dict[str, Any] | None:
        ds = self.energy
        if ds is None or self.selected is None or not (0 <= self.selected < ds.sizes["point"]):
            return None
        pt = ds.isel(point=self.selected)
        return {"method": str(pt.method.values), "value": float(pt.value), "energy": float(pt.energy),
                "accuracy": float(pt.accuracy_mean), "rho": float(pt.rho),
                "p": {str(name): float(v) for name, v in zip(ds.layer.values, pt.p_layer.values)}}

    @param.depends("selected", watch=True)
    def _point_sensitivity(self):
        """Sensitivity (Fig 4.3) of the network behind the selected point, at its own BERs."""
        info = self.point_details()
        self.point_sensitivity = None
        if info is None or info["method"] == "fp16":
            return
        pt = self.energy.isel(point=self.selected)
        method, value, seed = info["method"], info["value"], int(pt.seed)

        def job(cancel):
            from ..analysis.sensitivity import layer_sensitivity
            from ..experiments import test_tensors, train_model
            from ..experiments.sram import lanmax_run
            spec = {"method": method, "value": value, "seed": seed, "draws": 5, "high_p": 0.5,
                    "lanmax": self.spec["experiments"]["energy_accuracy"].get("lanmax")}

            def compute():
                if method == "lanmax":
                    cfg = bc_config(0.0, seed)
                    model, p, _ = lanmax_run(cfg, {**(spec["lanmax"] or {}), "alpha": value}, store=self.store,
                                             device=self.device, cancel=cancel)
                    base = p
                else:
                    cfg = bc_config(value if method == "bc_uniform" else 0.0, seed,
                                    width=value if method == "bc" else 1.0)
                    model = train_model(cfg, self.store, device=self.device, cancel=cancel).model
                    base = value if method == "bc_uniform" else 0.0
                x, y = test_tensors(cfg)
                return layer_sensitivity(model, x, y, base_p=base, high_p=0.5, draws=5, seed=seed, device=self.device,
                                         cancel=cancel)
            return self.store.get_or_compute("point-sensitivity", spec, compute)

        self.launch("point", job, into="point_sensitivity", job_class="curve")

    def point_key(self) -> tuple[str, float] | None:
        """The selected point as ``(method, value)`` (what a link names), or the one a link asked
        for while the energy–accuracy study was still loading."""
        info = self.point_details()
        if info is not None:
            return info["method"], info["value"]
        return self._pending_point

    def select_point(self, key: tuple[str, float] | None) -> None:
        """Select the network ``(method, value)`` of the energy–accuracy study (``None``: none).
        Before the study has loaded the choice waits and is applied when it arrives; a value off
        the spec's grid is refused (ValueError naming the values that exist)."""
        if key is None:
            self._pending_point = None
            self.selected = None
            return
        method, value = key
        if method not in POINT_GRIDS:
            raise KnobError(f"the network must be one of {', '.join(POINT_GRIDS)}, then a colon and its value")
        grid = [float(v) for v in self.spec["experiments"]["energy_accuracy"][POINT_GRIDS[method]]]
        if not any(abs(v - value) <= 1e-9 * max(1.0, abs(v)) for v in grid):
            raise ValueError(f"{method} networks exist for {', '.join(f'{v:g}' for v in grid)}")
        if self.energy is None:
            self._pending_point = (method, float(value))
            return
        self._pending_point = None
        self.selected = self._point_index(method, float(value))

    def _point_index(self, method: str, value: float) -> int | None:
        ds = self.energy
        match = (ds.method.values == method) & np.isclose(ds.value.values.astype(float), value, rtol=1e-9)
        hits = np.flatnonzero(match)
        return int(hits[0]) if hits.size else None

    @param.depends("energy", watch=True)
    def _resolve_pending_point(self):
        if self.energy is not None and self._pending_point is not None:
            method, value = self._pending_point
            self._pending_point = None
            self.selected = self._point_index(method, value)

    def ratios(self) -> dict[str, float]:
        return energy_ratios(self.energy) if self.energy is not None else {}

    def study_rows(self) -> list[dict[str, Any]]:
        """One row per (LaNMax variant, baseline, target) of the study: ratio, its CI, target accuracy."""
        ds = self.study
        if ds is None:
            return []
        rows = []
        for v in ds.variant_name.values:
            for b in ds.baseline.values:
                for t in ds.target.values:
                    at = {"variant_name": v, "baseline": b, "target": t}
                    rows.append({"variant": str(v), "baseline": str(b), "target": str(t),
                                 "accuracy": float(ds.target_accuracy.sel(variant_name=v, target=t)),
                                 "ratio": float(ds.energy_ratio.sel(at)), "low": float(ds.ratio_ci95_low.sel(at)),
                                 "high": float(ds.ratio_ci95_high.sel(at)),
                                 "ols_samples": int(ds.ols_samples.sel(variant_name=v))})
        return rows

    # ------------------------------------------------------------------ LaNMax runs
    @param.depends("run_lanmax", watch=True)
    def _run(self):
        from ..experiments.sram import evaluate_lanmax, lanmax_run
        cfg = bc_config(0.0, self.seed, width=self.width, epochs=self.epochs)
        lanmax = {"alpha": self.alpha}
        traj: dict[str, list[float]] = {}
        losses: list[float] = []
        layers = list(self.counts)

        def progress(info):
            for name, v in zip(layers, info["p"]):
                traj.setdefault(name, []).append(float(v))
            losses.append(float(info["loss"]))
            self._set(lanmax_p={k: list(v) for k, v in traj.items()}, lanmax_loss=list(losses),
                      progress=int(100 * info["epoch"] / info["epochs"]))

        def job(cancel):
            _, p, trajectory = lanmax_run(cfg, lanmax, store=self.store, device=self.device, progress=progress,
                                          cancel=cancel)
            ev = evaluate_lanmax(cfg, lanmax, draws=10, store=self.store, device=self.device, cancel=cancel)
            return p, trajectory, ev

        def done(result):
            p, trajectory, ev = result
            full = {str(name): trajectory.p.sel(layer=name).values.tolist() for name in trajectory.layer.values}
            return dict(lanmax_p=full, layer_p=dict(p),
                        lanmax_result={"p": p, "accuracy": ev.attrs["accuracy_mean"], "energy": float(ev.energy),
                                       "alpha": lanmax["alpha"]},
                        status=f"LaNMax α = {lanmax['alpha']:g}: accuracy {ev.attrs['accuracy_mean']:.3f} at energy "
                               f"{float(ev.energy):.4f} relative to this network read reliably (its learned p is now "
                               "in the per-layer editor)")

        self.launch("lanmax", job, label=f"LaNMax run, α = {self.alpha:g}, {self.epochs} epochs…", on_done=done,
                    job_class="training", cancelled="LaNMax run cancelled", lanmax_p={}, lanmax_loss=[])


__all__ = ["DEFAULT_LAYER_P", "POINT_GRIDS", "REGENERATE", "SRAMExplorer", "STUDY_REGENERATE", "STUDY_SPEC"]
