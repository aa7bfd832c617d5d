"""The noise playground's state: knobs, the current network, and results (no Panel here).

Every knob is a bounded ``param`` (the widgets, the URL and the CLI share those bounds); heavy
work (Monte-Carlo evaluation, curves, training) runs on a :class:`TaskRunner` thread and writes
its results back into ``param`` state.  A failed job sets ``error`` and leaves earlier results
intact.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, Callable

import param
import xarray as xr

from ..experiments import PRESET_FOR_TECHNOLOGY, Store, evaluate, noise_curve, param_counts, preset_config, train_model
from ..experiments.shipped import PLAYGROUND_DRAWS, REGENERATE_COMMAND
from ..hardware import MemristorMemory, SRAMMemory, memory_from_dict
from ..hardware.sram import eta
from ..training import TrainConfig
from .tasks import TaskRunner

NO_LAYER = "(none)"
#: log-spaced choices of the p slider (the slider is discrete so it can be logarithmic)
P_CHOICES = [0.0, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2, 0.1, 0.2, 0.3, 0.5]


class NoiseExplorer(param.Parameterized):
    """State of the noise playground: pick a memory, drag its knobs, watch accuracy and cost."""

    technology = param.Selector(default="sram", objects=["sram", "memristor"], doc="memory technology")
    p = param.Number(0.01, bounds=(0.0, 0.5), doc="SRAM bit error rate p")
    noise = param.Selector(default="multiplicative", objects=["multiplicative", "additive"], doc="conductance noise model")
    sigma_c = param.Number(0.1, bounds=(0.0, 1.0), softbounds=(0.0, 0.5), doc="multiplicative conductance noise σ_c")
    sigma = param.Number(0.94, bounds=(0.0, 100.0), softbounds=(0.0, 8.0), doc="additive conductance noise σ (µS)")
    g_u = param.Number(25.0, bounds=(0.5, 25.0), doc="conductance scale g_u (µS)")
    layer = param.Selector(default=NO_LAYER, objects=[NO_LAYER], doc="layer whose noise is set separately")
    layer_value = param.Number(0.5, bounds=(0.0, 1.0), doc="that layer's p (SRAM) or σ_c / σ-scaled g_u (memristor)")
    draws = param.Integer(PLAYGROUND_DRAWS, bounds=(2, 500), doc="Monte-Carlo draws per setting")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="seed of the noise draws and of training")
    epochs = param.Integer(20, bounds=(1, 200), doc="epochs of a (re)training run")
    trained_with = param.Dict(default=None, allow_None=True, doc="memory used while training the current network (None: clean)")

    train = param.Event(doc="retrain with hardware-aware noise at the current setting")
    cancel = param.Event(doc="cancel the running training")
    use_clean = param.Event(doc="go back to the network trained without noise")

    # results (written by background jobs)
    result = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True, precedence=-1)
    curve = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True, precedence=-1)
    history = param.Dict(default={}, precedence=-1)
    status = param.String("", precedence=-1)
    curve_status = param.String("", precedence=-1)
    error = param.String("", precedence=-1)
    evaluating = param.Boolean(False, precedence=-1)
    training = param.Boolean(False, precedence=-1)
    train_progress = param.Integer(0, bounds=(0, 100), precedence=-1)

    def __init__(self, store: Store | None = None, device: str = "auto", autorun: bool = True, **params):
        super().__init__(**params)
        self.store = store or Store()
        self.device = device
        self.runner = TaskRunner()
        #: how results computed on worker threads are applied; a served page replaces it with a
        #: hand-over to its document's event loop (see ``NoisePlayground``), so that all state
        #: changes, and the page updates they cause, happen in order on one thread
        self.dispatch: Callable[[Callable[[], None]], None] = lambda fn: fn()
        self._update_layers()
        if autorun:
            self.refresh()

    # ------------------------------------------------------------------ derived state
    @property
    def sweep_knob(self) -> str:
        if self.technology == "sram":
            return "p"
        return "sigma_c" if self.noise == "multiplicative" else "g_u"

    def layer_memory_knob(self) -> str:
        return {"sram": "p"}.get(self.technology, "sigma_c" if self.noise == "multiplicative" else "g_u")

    def memory(self) -> dict[str, Any]:
        """The current memory map, as :meth:`MemoryMap.to_dict`."""
        if self.technology == "sram":
            base = SRAMMemory(p=self.p, bits=1)
        else:
            base = MemristorMemory(noise=self.noise, sigma_c=self.sigma_c, sigma=self.sigma, g_u=self.g_u)
        overrides = {}
        if self.layer != NO_LAYER:
            knob = self.layer_memory_knob()
            value = self.layer_value if knob != "g_u" else max(0.5, self.layer_value * 25.0)
            overrides[self.layer] = base.clone(**{knob: min(value, 0.5) if knob == "p" else value}).knobs()
        return {"default": base.knobs(), "overrides": overrides}

    def train_config(self) -> TrainConfig:
        preset = PRESET_FOR_TECHNOLOGY[self.technology]
        extra = {"epochs": self.epochs, "seed": self.seed} if self.trained_with is not None else {}
        return preset_config(preset, train_memory=self.trained_with, **extra)

    def network_label(self) -> str:
        preset = PRESET_FOR_TECHNOLOGY[self.technology]
        if self.trained_with is None:
            return f"{preset}, trained without noise"
        d = self.trained_with["default"]
        knob = "p" if d["technology"] == "sram" else ("sigma_c" if d.get("noise") == "multiplicative" else "sigma")
        return f"{preset}, trained with {d['technology']} noise {knob}={d[knob]:g}"

    def energy_readout(self) -> dict[str, Any]:
        """Memory energy (SRAM, eq 3.27/3.30) or crossbar power (memristor, eq 3.39–3.44) of the result."""
        ds = self.result
        if ds is None:
            return {}
        if self.technology == "sram":
            counts = param_counts(self.train_config())
            mem = self.memory()
            per_layer = {}
            total_ref = 16 * sum(counts.values())
            for name, n in counts.items():
                p = mem["overrides"].get(name, mem["default"])["p"]
                per_layer[name] = eta(p) * n / total_ref
            return {"value": float(ds.energy), "label": "memory energy ÷ reliable 16-bit", "eta": eta(self.p),
                    "per_layer": per_layer, "units": "1"}
        if "power" not in ds:
            return {}
        per_layer = {str(l): float(ds.layer_power.sel(layer=l).mean()) for l in ds.layer.values}
        return {"value": float(ds.power.mean()), "label": "crossbar power per inference", "per_layer": per_layer,
                "units": "a.u."}

    # ------------------------------------------------------------------ actions
    def _update_layers(self):
        names = list(param_counts(self.train_config()))
        self.param.layer.objects = [NO_LAYER, *names]
        if self.layer not in self.param.layer.objects:
            self.layer = NO_LAYER

    @param.depends("technology", watch=True)
    def _on_technology(self):
        self.trained_with = None
        self._update_layers()

    @param.depends("technology", "p", "noise", "sigma_c", "sigma", "g_u", "layer", "layer_value", "draws", "seed",
                   "trained_with", watch=True)
    def refresh(self):
        """(Re)compute the distribution at the current setting and the accuracy-vs-noise curve."""
        try:
            mem = self.memory()
            memory_from_dict(mem["default"])
        except ValueError as exc:
            self.error = str(exc)
            return
        cfg = self.train_config()
        draws, seed, knob = self.draws, self.seed, self.sweep_knob
        self.error = ""
        self.evaluating = True
        self.status = "evaluating…"

        def eval_job(cancel: threading.Event):
            return evaluate(cfg, mem, draws=draws, seed=seed, store=self.store, device=self.device, cancel=cancel)

        def eval_done(ds):
            self._set(result=ds, evaluating=False, status=self._status_text(ds))

        def curve_job(cancel: threading.Event):
            def progress(info):
                self._set(curve_status=f"computing the curve: {info['cell']}/{info['cells']} points")
            return noise_curve(cfg, {"default": mem["default"], "overrides": mem["overrides"]}, knob, draws=draws,
                               seed=seed, store=self.store, device=self.device, progress=progress, cancel=cancel)

        def curve_done(ds):
            self._set(curve=ds, curve_status=f"{len(ds[knob])} points × {draws} draws")

        self.curve_status = "computing the curve…"
        self.runner.submit("eval", eval_job, eval_done, self._fail, priority=0)   # before curves of any session
        self.runner.submit("curve", curve_job, curve_done, self._fail)

    def _set(self, **values) -> None:
        """Apply results from a worker thread through :attr:`dispatch`."""
        self.dispatch(partial(self.param.update, **values))

    def _status_text(self, ds) -> str:
        if ds is None:
            return ""
        cache = ds.attrs.get("cache", "")
        return f"{self.network_label()} · {int(ds.attrs['draws'])} draws · {'cached' if cache == 'hit' else 'computed'}"

    def _fail(self, message: str) -> None:
        self._set(error=message, evaluating=False, training=False, status="failed — earlier results kept")

    @param.depends("train", watch=True)
    def _train(self):
        mem = self.memory()
        preset = PRESET_FOR_TECHNOLOGY[self.technology]
        cfg = preset_config(preset, train_memory=mem, epochs=self.epochs, seed=self.seed)
        self.param.update(training=True, train_progress=0, history={"loss": [], "test_accuracy": []}, error="",
                          status=f"training {preset} with hardware-aware noise…")

        losses, accs = [], []

        def progress(info):
            losses.append(info["loss"])
            accs.append(info["test_accuracy"])
            self._set(history={"loss": list(losses), "test_accuracy": list(accs)},
                      train_progress=int(100 * info["epoch"] / info["epochs"]))

        def job(cancel):
            return train_model(cfg, self.store, device=self.device, progress=progress, cancel=cancel)

        def done(tr):
            history = {k: tr.history[k].values.tolist() for k in ("loss", "test_accuracy")}
            self._set(history=history, training=False, train_progress=100, trained_with=mem,
                      status=f"trained in {tr.train_seconds:.1f} s ({'cached' if tr.cached else tr.device}): "
                             f"clean accuracy {tr.test_accuracy:.3f}")

        def cancelled():
            self._set(training=False, train_progress=0, status="training cancelled — network unchanged")

        self.runner.submit("train", job, done, self._fail, cancelled)

    @param.depends("cancel", watch=True)
    def _cancel(self):
        self.runner.cancel("train")

    @param.depends("use_clean", watch=True)
    def _use_clean(self):
        self.trained_with = None

    def wait(self, timeout: float = 300.0, kinds: tuple[str, ...] = ("train", "eval", "curve")) -> None:
        """Block until the running jobs of ``kinds`` end (tests, notebooks)."""
        self.runner.wait_all(kinds, timeout)


__all__ = ["NO_LAYER", "NoiseExplorer", "P_CHOICES", "REGENERATE_COMMAND"]
