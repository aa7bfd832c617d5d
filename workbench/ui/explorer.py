"""The noise playground's state: knobs, the current network, and results (no Panel here).

Every knob is a bounded ``param`` (the widgets, the URL and the CLI share those bounds); heavy
work (Monte-Carlo evaluation, curves, training) runs as :meth:`BackgroundState.launch` jobs and
writes its results back into ``param`` state.  A failed job sets ``error`` and leaves earlier
results intact.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import param
import xarray as xr

from ..experiments import (
    CURVE_GRIDS,
    PRESET_FOR_TECHNOLOGY,
    Store,
    evaluate,
    noise_curve,
    param_counts,
    preset_config,
    train_model,
)
from ..experiments.shipped import PLAYGROUND_DRAWS, REGENERATE_COMMAND
from ..hardware import ENERGY_REFERENCES, MemristorMemory, SRAMMemory, memory_from_dict, memory_map_from_dict
from ..hardware.sram import eta, memory_map_energy_terms
from ..keys import spec_key
from ..knobs import KnobError
from ..plugins import MODEL_GROUP, registered
from ..training import TrainConfig
from .base import BackgroundState, result_param
from .urlstate import URLKnob, URLValueError, fmt_number

NO_LAYER = "(none)"
#: the network picker's entry for the built-in network of the chosen memory
BUILTIN = "built-in"
#: log-spaced choices of the p slider (the slider is discrete so it can be logarithmic)
P_CHOICES = [0.0, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2, 0.1, 0.2, 0.3, 0.5]
#: the networks and memories in plain words (the page never shows a preset's internal name)
NETWORK_WORDS = {"digits-bc": "the small BinaryConnect CNN on handwritten digits",
                 "digits-cnn": "the small CNN on handwritten digits"}
TECHNOLOGY_WORDS = {"sram": "under-volted SRAM", "memristor": "memristor crossbar"}
KNOB_WORDS = {"p": "bit error rate p", "sigma_c": "multiplicative noise σ_c", "sigma": "additive noise σ",
              "g_u": "conductance scale g_u"}
#: the knobs a trained network's link names, per technology (all of them enter its memory map)
TRAINED_KNOBS = {"sram": ("p",), "memristor": ("noise", "sigma_c", "sigma", "g_u")}
_COUNTS: dict[tuple[str, str], dict[str, int]] = {}


def network_choices() -> list[str]:
    """The playground's networks: the built-in one, then every name an installed package registers
    under ``workbench.models`` (a served page offers these names only, never a path or code)."""
    return [BUILTIN, *sorted(registered(MODEL_GROUP))]


def playground_config(technology: str, network: str = BUILTIN, **overrides) -> TrainConfig:
    """The training config of ``network`` for ``technology``: its preset's recipe (BinaryConnect for
    the SRAM, whose 1-bit readout needs binary weights), with a registered network in place of the
    preset's when one is chosen."""
    if network != BUILTIN:
        overrides["user_model"] = network
    return preset_config(PRESET_FOR_TECHNOLOGY[technology], **overrides)


def layer_counts(technology: str, network: str = BUILTIN) -> dict[str, int]:
    """Weights per layer of the playground's network (its structure only: computed once per process)."""
    if (technology, network) not in _COUNTS:
        _COUNTS[(technology, network)] = param_counts(playground_config(technology, network))
    return _COUNTS[(technology, network)]


def curve_knob(noise_knob: str) -> str:
    """The knob the playground's accuracy curve sweeps, and a layer's own value sets, for a memory
    whose ``noise_knob`` is given: that knob, except ``g_u`` under additive noise.  There σ is a
    fixed device property (µS) and g_u decides how much of it reaches the weights (σ/g_u, eq 3.36)
    and the crossbar power (eq 3.41–3.44): the trade-off the thesis' additive-noise study varies."""
    return "g_u" if noise_knob == "sigma" else noise_knob


def join_points(cells: list[xr.Dataset], knob: str) -> xr.Dataset:
    """One-point curves (``noise_curve`` with one value each) joined along ``knob``: the curve
    ``noise_curve`` returns for the whole grid, available point by point."""
    ds = xr.concat(cells, dim=knob, combine_attrs="override")
    ds.attrs = {"clean_accuracy": cells[0].attrs.get("clean_accuracy", float("nan")), "knob": knob}
    return ds


class JobCancel:
    """The cancel flag of whichever job runs the next epoch of a paused run (a run outlives its jobs)."""

    def __init__(self):
        self.event: threading.Event | None = None

    def is_set(self) -> bool:
        return self.event is not None and self.event.is_set()


class NoiseExplorer(BackgroundState):
    """State of the noise playground: pick a memory, drag its knobs, watch accuracy and cost."""

    job_kinds = ("train", "eval", "curve")
    wait_rounds = 2             # a finished readout starts the curve
    cancel_kind = "train"

    technology = param.Selector(default="sram", objects=["sram", "memristor"], doc="memory technology")
    network = param.Selector(default=BUILTIN, objects=[BUILTIN],
                             doc="network: the built-in one or a registered plug-in")
    p = param.Number(0.01, bounds=(0.0, 0.5), doc="SRAM bit error rate p")
    noise = param.Selector(default="multiplicative", objects=["multiplicative", "additive"],
                           doc="conductance noise model")
    sigma_c = param.Number(0.1, bounds=(0.0, 1.0), softbounds=(0.0, 0.5), doc="multiplicative conductance noise σ_c")
    sigma = param.Number(0.94, bounds=(0.0, 100.0), softbounds=(0.0, 8.0), doc="additive conductance noise σ (µS)")
    g_u = param.Number(25.0, bounds=(0.5, 25.0), doc="conductance scale g_u (µS)")
    layer = param.Selector(default=NO_LAYER, objects=[NO_LAYER], doc="layer whose noise is set separately")
    layer_value = param.Number(0.5, bounds=(0.0, 1.0), doc="that layer's p (SRAM) or σ_c / σ-scaled g_u (memristor)")
    draws = param.Integer(PLAYGROUND_DRAWS, bounds=(2, 500), doc="Monte-Carlo draws per setting")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="seed of the noise draws and of training")
    epochs = param.Integer(20, bounds=(1, 200), doc="epochs of a training run from the page")
    trained_with = param.Dict(default=None, allow_None=True,
                              doc="memory used while training the current network (None: clean)")
    #: the page's knob values that trained the current network (with its epochs and seed); None: clean
    trained_knobs = param.Dict(default=None, allow_None=True, precedence=-1)

    train = param.Event(doc="retrain with hardware-aware noise at the current setting")
    step_epoch = param.Event(doc="hardware-aware training, one epoch more (the curve is redrawn after it)")
    play = param.Event(doc="hardware-aware training epoch after epoch, each curve drawn before the next epoch")
    pause = param.Event(doc="stop after the epoch that is running")
    #: epochs done by the stepped training shown now (0: none), and whether it plays on by itself
    stepped = param.Integer(0, precedence=-1)
    playing = param.Boolean(False, precedence=-1)
    cancel = param.Event(doc="cancel the running training")
    use_clean = param.Event(doc="go back to the network trained without noise")

    forget_uploads = param.Event(doc="go back to the page's own network and test set")
    #: what the session uploaded, in words (empty: nothing): {"weights": ..., "test": ...}
    uploads = param.Dict(default={}, precedence=-1)
    upload_error = param.String("", precedence=-1)

    # results (written by background jobs); ``running``/``progress`` follow a training
    result = result_param()
    curve = result_param()
    history = param.Dict(default={}, precedence=-1)
    curve_status = param.String("", precedence=-1)
    #: curve points done and in all while a curve is computed (0, 0 when none is)
    curve_done = param.Integer(0, precedence=-1)
    curve_total = param.Integer(0, precedence=-1)
    #: the readout at the current setting is being computed
    evaluating = param.Boolean(False, precedence=-1)

    def __init__(self, store: Store | None = None, device: str = "auto", autorun: bool = True, **params):
        network = params.pop("network", BUILTIN)
        super().__init__(**params)
        self.param.network.objects = network_choices()
        with param.parameterized.discard_events(self):
            self.network = network             # refused by name unless built-in or registered
        self.store = store or Store()
        self.device = device
        #: uploaded in this session only (never written to the store or to disk beyond a read):
        #: a state dict for the current network, and a test set (x, y) for it
        self._uploaded_state: dict | None = None
        self._uploaded_test: tuple | None = None
        #: the stepped training run (a generator paused between epochs) and the knobs it trains with
        self._stepper = None
        self._stepper_knobs: dict | None = None
        self._step_cancel = JobCancel()
        #: counts :meth:`refresh` calls: a result of an older setting is never applied
        self._generation = 0
        self._update_layers()
        if autorun:
            self.refresh()

    # ------------------------------------------------------------------ derived state
    @property
    def curve_knob(self) -> str:
        """The knob of the accuracy curve and of a layer's own value (see :func:`curve_knob`)."""
        mem = SRAMMemory() if self.technology == "sram" else MemristorMemory(noise=self.noise)
        return curve_knob(mem.noise_knob)

    def knob_values(self) -> dict[str, Any]:
        """The knobs that make the memory map (see :meth:`memory_for`)."""
        names = ("technology", "p", "noise", "sigma_c", "sigma", "g_u", "layer", "layer_value")
        return {k: getattr(self, k) for k in names}

    def memory(self) -> dict[str, Any]:
        """The current memory map, as :meth:`MemoryMap.to_dict`."""
        return self.memory_for(self.knob_values())

    @staticmethod
    def memory_for(v: dict[str, Any]) -> dict[str, Any]:
        """The memory map of the knob values ``v`` (technology, p or the crossbar's noise, σ_c, σ,
        g_u, and one layer's own value)."""
        if v["technology"] == "sram":
            base = SRAMMemory(p=v["p"], bits=1)
        else:
            base = MemristorMemory(noise=v["noise"], sigma_c=v["sigma_c"], sigma=v["sigma"], g_u=v["g_u"])
        knob = curve_knob(base.noise_knob)
        overrides = {}
        layer = v.get("layer", NO_LAYER)
        if layer != NO_LAYER:
            value = v["layer_value"] if knob != "g_u" else max(0.5, v["layer_value"] * 25.0)
            overrides[layer] = base.clone(**{knob: min(value, 0.5) if knob == "p" else value}).knobs()
        return {"default": base.knobs(), "overrides": overrides}

    def train_config(self) -> TrainConfig:
        if self.trained_with is None:
            return playground_config(self.technology, self.network)
        t = self.trained_knobs or {"epochs": self.epochs, "seed": self.seed}
        return playground_config(self.technology, self.network, train_memory=self.trained_with, epochs=t["epochs"],
                                 seed=t["seed"])

    def network_words(self) -> str:
        """The network in plain words."""
        if self.network != BUILTIN:
            kind = "BinaryConnect " if self.technology == "sram" else ""
            return f"the {kind}plug-in network “{self.network}” on handwritten digits"
        return NETWORK_WORDS.get(PRESET_FOR_TECHNOLOGY[self.technology], "the network")

    def network_label(self) -> str:
        net = self.network_words()
        if self.trained_with is None:
            return f"{net}, trained without noise"
        d = self.trained_with["default"]
        knob = memory_from_dict(d).noise_knob
        words = {"p": "p", "sigma_c": "σ_c", "sigma": "σ"}[knob]
        unit = " µS" if knob == "sigma" else ""
        layer = ""
        if self.trained_knobs and self.trained_knobs.get("layer", NO_LAYER) != NO_LAYER:
            layer = f", layer {self.trained_knobs['layer']} at {fmt_number(self.trained_knobs['layer_value'])}"
        return f"{net}, trained with {TECHNOLOGY_WORDS[d['technology']]} noise ({words} = {d[knob]:g}{unit}{layer})"

    # ------------------------------------------------------------------ the trained network in a link
    def trained_text(self) -> str:
        """The trained network as a link value: ``sram,p:0.01,epochs:3,seed:0`` (a layer of its
        own adds ``layer:features.3,layer_value:0.3``); ``none`` for the network trained without noise."""
        t = self.trained_knobs
        if t is None:
            return "none"
        parts = [t["technology"], *(f"{k}:{_text(t[k])}" for k in TRAINED_KNOBS[t["technology"]])]
        if t.get("layer", NO_LAYER) != NO_LAYER:
            parts += [f"layer:{t['layer']}", f"layer_value:{_text(t['layer_value'])}"]
        parts += [f"epochs:{t['epochs']}", f"seed:{t['seed']}"]
        return ",".join(parts)

    def parse_trained(self, text: str) -> dict[str, Any] | None:
        """The knob values a :meth:`trained_text` stands for (None for ``none``), checked against
        the knobs' ranges; :class:`URLValueError` in plain words otherwise."""
        text = text.strip()
        if text in ("none", ""):
            return None
        shape = ("write it as the page does, e.g. sram,p:0.01,epochs:3,seed:0 — or none for the network "
                 "trained without noise")
        tech, *rest = text.split(",")
        if tech not in TRAINED_KNOBS:
            raise URLValueError(f"the trained network must start with its memory, sram or memristor: {shape}")
        values: dict[str, Any] = {"technology": tech, "layer": NO_LAYER}
        for item in rest:
            key, sep, raw = item.partition(":")
            allowed = (*TRAINED_KNOBS[tech], "layer", "layer_value", "epochs", "seed")
            if not sep or key not in allowed:
                raise URLValueError(f"the trained network's `{item}` is not one of {', '.join(allowed)}: {shape}")
            if key == "layer":
                names = list(layer_counts(tech, self.network))
                if raw not in names:
                    raise URLValueError(f"the trained network's layer must be one of {', '.join(names)}")
                values[key] = raw
            else:
                values[key] = URLKnob(key, self, key, label=f"the trained network's {key}").from_text(raw)
        missing = [k for k in (*TRAINED_KNOBS[tech], "epochs", "seed") if k not in values]
        if values["layer"] != NO_LAYER and "layer_value" not in values:
            missing.append("layer_value")
        if missing:
            raise URLValueError(f"the trained network needs {', '.join(missing)}: {shape}")
        return values

    def trained_config(self, values: dict[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
        mem = self.memory_for({**self.knob_values(), **values})
        cfg = playground_config(values["technology"], self.network, train_memory=mem, epochs=values["epochs"],
                                seed=values["seed"])
        return mem, cfg

    def set_trained(self, values: dict[str, Any] | None) -> None:
        """Show the network trained with ``values`` (from a link): only one the results store holds —
        a link never starts a training."""
        if values is None:
            self.param.update(trained_with=None, trained_knobs=None)
            return
        if values["technology"] != self.technology:
            raise URLValueError(f"the trained network was trained on the {TECHNOLOGY_WORDS[values['technology']]}, "
                                f"but the page shows the {TECHNOLOGY_WORDS[self.technology]}: add technology="
                                f"{values['technology']} to the link")
        mem, cfg = self.trained_config(values)
        if self.store.find("weights", spec_key("weights", cfg.to_dict()), "pt") is None:
            raise URLValueError("that trained network is not in this server's results store, and a link does not "
                                "start a training: press “Train with this noise” with those settings to train it")
        self.param.update(trained_with=mem, trained_knobs=dict(values))

    def trained_knob(self) -> URLKnob:
        """The URL key ``trained`` (applied after the technology it belongs to)."""
        return URLKnob("trained", self, "trained_with", label="the trained network", parse=self.parse_trained,
                       fmt=lambda _: self.trained_text(), apply=self.set_trained)

    def energy_readout(self) -> dict[str, Any]:
        """Memory energy (SRAM, eq 3.27/3.30) or crossbar power (memristor, eq 3.39–3.44) of the result."""
        ds = self.result
        if ds is None:
            return {}
        if self.technology == "sram":
            counts = layer_counts(self.technology, self.network)
            reference = ds.attrs["energy_reference"]
            per_layer = memory_map_energy_terms(counts, memory_map_from_dict(self.memory()), reference)
            return {"value": float(ds.energy),
                    "label": f"memory energy E, {ENERGY_REFERENCES[reference]}",
                    "eta": eta(self.p), "per_layer": per_layer, "units": "1"}
        if "power" not in ds:
            return {}
        per_layer = {str(name): float(ds.layer_power.sel(layer=name).mean()) for name in ds.layer.values}
        return {"value": float(ds.power.mean()),
                "label": "crossbar power per inference, in arbitrary units (only ratios between settings mean "
                         "something)",
                "per_layer": per_layer, "units": "arbitrary units"}

    # ------------------------------------------------------------------ actions
    def _update_layers(self):
        names = list(layer_counts(self.technology, self.network))
        self.param.layer.objects = [NO_LAYER, *names]
        if self.layer not in self.param.layer.objects:
            self.layer = NO_LAYER

    @param.depends("technology", "network", watch=True)
    def _on_technology(self):
        self._uploaded_state = self._uploaded_test = None       # they fit the network they were checked against
        self.param.update(trained_with=None, trained_knobs=None, uploads={}, upload_error="")
        self._update_layers()

    @param.depends("technology", "network", "p", "noise", "sigma_c", "sigma", "g_u", "layer", "layer_value", "draws",
                   "seed", "trained_with", "uploads", watch=True)
    def refresh(self):
        """(Re)compute the distribution at the current setting and the accuracy-vs-noise curve."""
        try:
            mem = self.memory()
            memory_from_dict(mem["default"])
        except ValueError as exc:
            self.error = str(exc)
            return
        cfg = self.train_config()
        draws, seed, knob = self.draws, self.seed, self.curve_knob
        self._generation += 1
        gen = self._generation
        values = list(CURVE_GRIDS[knob])
        what = f"the accuracy-vs-{KNOB_WORDS[knob].split()[-1]} curve"

        pending: dict[str, Any] = {}
        lock = threading.Lock()

        def flush():
            with lock:
                values = dict(pending)
                pending.clear()
            if gen == self._generation:
                self.param.update(**values)

        def current(**kw):
            """Apply ``kw`` unless a newer setting replaced this one meanwhile.  Updates that arrive
            while an earlier one still waits for the session's event loop join it (the latest value
            of each wins): a busy server redraws a page once per turn, not once per draw or point."""
            with lock:
                first = not pending
                pending.update(kw)
            if first:
                self.dispatch(flush)

        session = self._session_evaluator() if self.uploads else None

        def eval_job(cancel):
            def progress(info):
                current(status=f"evaluating the accuracy: {info['draw']} of {info['draws']} Monte-Carlo draws")
            if session is not None:
                return session(cfg, mem, draws=draws, seed=seed, cancel=cancel, progress=progress)
            return evaluate(cfg, mem, draws=draws, seed=seed, store=self.store, device=self.device, cancel=cancel,
                            progress=progress)

        def eval_done(ds):
            # the curve starts once the readout is shown, so the two never share the cores, and the
            # curve's point at this setting is then a store read
            current(result=ds, evaluating=False, status=self._status_text(ds),
                    curve_status=f"computing {what}: 0 of {len(values)} points ({draws} draws each)")
            if gen == self._generation:
                self.launch("curve", curve_job, on_done=curve_done, job_class="curve")

        def curve_job(cancel):
            # point by point (each one cached like a whole curve's), so the plot grows as they arrive
            cells = []
            shown = 0.0
            for i, v in enumerate(values):
                cells.append(noise_curve(cfg, mem, knob, [v], draws=draws, seed=seed, store=self.store,
                                         device=self.device, cancel=cancel, evaluator=session))
                if cancel.is_set():
                    break
                # the partial curve at most once a second (each is a redraw of the plot on the loop)
                if i + 1 < len(values) and (i == 0 or time.monotonic() - shown >= 1.0):
                    shown = time.monotonic()
                    current(curve=join_points(cells, knob), curve_done=i + 1,
                            curve_status=f"computing {what}: {i + 1} of {len(values)} points ({draws} draws each)")
            return join_points(cells, knob)

        def curve_done(ds):
            current(curve=ds, curve_done=0, curve_total=0,
                    curve_status=f"{len(ds[knob])} points × {draws} Monte-Carlo draws")

        self.runner.cancel("curve")
        self.param.update(curve_done=0, curve_total=len(values),
                          curve_status=f"computing {what}: waiting for the readout above (0 of {len(values)} points)")
        self.launch("eval", eval_job, label=f"evaluating the accuracy over {draws} Monte-Carlo draws…",
                    on_done=eval_done, priority=0, evaluating=True)    # priority 0: before curves of any session

    def _status_text(self, ds) -> str:
        if ds is None:
            return ""
        cache = ds.attrs.get("cache", "")
        source = "read from the results store" if cache == "hit" else "just computed"
        if self.uploads:
            source = "just computed (uploads stay in this session: nothing is stored)"
        label = self.uploads.get("weights") or self.network_label()
        test = f" · {self.uploads['test']}" if "test" in self.uploads else ""
        return f"{label}{test} · {int(ds.attrs['draws'])} Monte-Carlo draws · {source}"

    # ------------------------------------------------------------------ uploads (this session only)
    #: the largest file a page accepts (a small network's state dict, a small test set)
    MAX_UPLOAD_BYTES = 10 * 2**20

    def _check_upload(self, filename: str, data: bytes, suffixes: tuple[str, ...]) -> None:
        if not str(filename).lower().endswith(suffixes):
            raise KnobError(f"{filename}: expected a {' or '.join(suffixes)} file")
        if len(data) > self.MAX_UPLOAD_BYTES:
            raise KnobError(f"{filename} is {len(data) / 2**20:.1f} MiB: an upload here is at most "
                            f"{self.MAX_UPLOAD_BYTES // 2**20} MiB")

    def upload_weights(self, filename: str, data: bytes) -> bool:
        """Use the state dict in ``data`` (a ``.pt`` file's bytes) as the current network's weights,
        in this session only.  Read with ``weights_only=True`` (never unpickled) and loaded strictly
        (missing or unexpected keys are named); a refusal sets ``upload_error`` and changes nothing."""
        from ..nn.external import load_weights
        from ..training.trainer import data_for, make_model
        try:
            self._check_upload(filename, data, (".pt", ".pth"))
            cfg = playground_config(self.technology, self.network)
            model = make_model(cfg, data_for(cfg))
            with tempfile.TemporaryDirectory() as tmp:       # torch.load reads a file; it lives for the read only
                path = Path(tmp) / "uploaded.pt"
                path.write_bytes(data)
                try:
                    load_weights(model, path, knob=f"the uploaded file {filename}")
                except KnobError as exc:          # the message names the upload, not the temporary file
                    raise KnobError(str(exc).replace(f" {path}", "")) from None
        except KnobError as exc:
            self.upload_error = str(exc)
            return False
        self._uploaded_state = {k: v.clone() for k, v in model.state_dict().items()}
        self.upload_error = ""
        self.param.update(trained_with=None, trained_knobs=None,
                          uploads={**self.uploads, "weights": f"{self.network_words()} with your weights ({filename})"})
        return True

    def upload_test_set(self, filename: str, data: bytes) -> bool:
        """Evaluate on the test set in ``data`` (a ``.npz`` of ``x_test``, ``y_test`` in the units of
        the network's training data, e.g. digits' pixel intensities ÷ 16), in this session only;
        checked by :func:`workbench.userdata.read_test_npz`.  A refusal sets ``upload_error`` and
        changes nothing."""
        from ..training.trainer import data_for
        from ..userdata import read_test_npz
        try:
            self._check_upload(filename, data, (".npz",))
            bundle = data_for(playground_config(self.technology, self.network))
            shape = tuple(bundle.test[0][0].shape)
            x, y = read_test_npz(data, sample_shape=shape, num_classes=bundle.num_classes,
                                 normalization=bundle.normalization, name=f"the uploaded file {filename}")
        except KnobError as exc:
            self.upload_error = str(exc)
            return False
        self._uploaded_test = (x, y)
        self.upload_error = ""
        self.uploads = {**self.uploads, "test": f"your test set ({filename}, {len(y)} samples)"}
        return True

    @param.depends("forget_uploads", watch=True)
    def _forget_uploads(self):
        self._uploaded_state = self._uploaded_test = None
        self.param.update(uploads={}, upload_error="")

    def _session_evaluator(self):
        """Evaluation of the uploaded weights and/or test set: Monte Carlo as :func:`evaluate`
        computes it, kept in this session (nothing is read from or written to the store but the
        page's own network, when only a test set was uploaded)."""
        from ..analysis import clean_accuracy, mc_evaluate
        from ..experiments.core import restate_energy, test_tensors
        from ..training.trainer import data_for, make_model
        state, test = self._uploaded_state, self._uploaded_test

        def run(cfg, mem, *, draws, seed, cancel=None, progress=None):
            if state is not None:
                model = make_model(cfg, data_for(cfg))
                model.load_state_dict(state)
                model.eval()
            else:
                model = train_model(cfg, self.store, device=self.device, cancel=cancel).model
            x, y = test if test is not None else test_tensors(cfg)
            mmap = memory_map_from_dict(mem)
            ds = mc_evaluate(model, x, y, mmap, draws, seed=seed, device=self.device, progress=progress, cancel=cancel)
            ds.attrs.update(clean_accuracy=clean_accuracy(model, x, y, device=self.device), cache="session")
            return restate_energy(ds, mmap, "same-network", lambda: layer_counts(self.technology, self.network))
        return run

    def _fail(self, message: str, **also) -> None:
        super()._fail(message, evaluating=False, curve_done=0, curve_total=0, **also)

    @param.depends("train", watch=True)
    def _train(self):
        knobs = {**{k: v for k, v in self.knob_values().items()
                    if k in ("technology", "layer", "layer_value", *TRAINED_KNOBS[self.technology])},
                 "epochs": self.epochs, "seed": self.seed}
        mem, cfg = self.trained_config(knobs)
        losses, accs = [], []

        def progress(info):
            losses.append(info["loss"])
            accs.append(info["test_accuracy"])
            self._set(history={"loss": list(losses), "test_accuracy": list(accs)},
                      progress=int(100 * info["epoch"] / info["epochs"]))

        def job(cancel):
            return train_model(cfg, self.store, device=self.device, progress=progress, cancel=cancel)

        def done(tr):
            history = {k: tr.history[k].values.tolist() for k in ("loss", "test_accuracy")}
            how = "read from the results store" if tr.cached else f"trained on {tr.device}"
            self._uploaded_state = None                   # the trained network replaces uploaded weights
            return dict(history=history, trained_with=mem, trained_knobs=knobs,
                        uploads={k: v for k, v in self.uploads.items() if k != "weights"},
                        status=f"{how} in {tr.train_seconds:.1f} s: accuracy without noise {tr.test_accuracy:.3f}")

        self.launch("train", job, job_class="training", on_done=done,
                    cancelled="training cancelled — network unchanged",
                    label=f"training {self.network_words()} with hardware-aware noise "
                          f"({self.epochs} epochs)…", history={"loss": [], "test_accuracy": []})

    # ------------------------------------------------------------------ stepped training (play / pause / step)
    def _stepper_for(self):
        """The generator of the stepped run at the current setting (a new one when a knob changed)."""
        from ..training.trainer import train_epochs
        knobs = {**{k: v for k, v in self.knob_values().items()
                    if k in ("technology", "layer", "layer_value", *TRAINED_KNOBS[self.technology])},
                 "network": self.network, "epochs": self.epochs, "seed": self.seed}
        if self._stepper is None or self._stepper_knobs != knobs:
            _, cfg = self.trained_config(knobs)
            self._stepper = train_epochs(cfg, device=self.device, cancel=self._step_cancel)
            self._stepper_knobs = knobs
            self.stepped = 0
        return self._stepper

    @param.depends("step_epoch", watch=True)
    def _step(self):
        if self.running:
            return
        gen = self._stepper_for()

        def job(cancel):
            self._step_cancel.event = cancel      # the run checks the cancel of the epoch's own job
            try:
                info = next(gen, None)
            except BaseException:
                self._stepper = None                # a cancelled or failed run cannot resume
                raise
            if info is None:
                return None
            # the evaluated copy: the run itself goes on training its own model
            state = {k: v.detach().cpu().clone() for k, v in info["model"].state_dict().items()}
            return info["epoch"], info["epochs"], state, {k: list(v) for k, v in info["history"].items()}

        def done(out):
            if out is None:
                self._stepper = None
                return dict(playing=False, status="the stepped training is complete: press Step or Play to start again")
            epoch, epochs, state, hist = out
            self._uploaded_state = state            # this session's network: the one trained so far
            if epoch == epochs:
                self._stepper = None                # the next step starts a new run
            return dict(stepped=epoch, playing=self.playing and epoch < epochs,
                        history={"loss": hist["loss"], "test_accuracy": hist["test_accuracy"]},
                        trained_with=None, trained_knobs=None,
                        uploads={**self.uploads, "weights": f"{self.network_words()} after {epoch} of {epochs} "
                                 "hardware-aware epochs (step by step)"})

        self.launch("train", job, job_class="training", on_done=done,
                    cancelled="stepped training cancelled — the network of the last epoch stays",
                    label=f"hardware-aware training: epoch {self.stepped + 1} of {self.epochs}…")

    @param.depends("play", watch=True)
    def _play(self):
        self.playing = True
        if not self.running:
            self.param.trigger("step_epoch")

    @param.depends("pause", watch=True)
    def _pause(self):
        self.playing = False

    @param.depends("curve_total", watch=True)
    def _next_when_drawn(self):
        # playing: the next epoch starts once this epoch's curve is drawn (curve_total back to 0)
        if self.playing and self.curve_total == 0 and self.curve is not None and not self.running:
            self.param.trigger("step_epoch")

    @param.depends("use_clean", watch=True)
    def _use_clean(self):
        self.param.update(trained_with=None, trained_knobs=None)

    def load(self) -> None:
        """The readout and curve of the current setting (a page calls this once it watches them)."""
        self.refresh()


def _text(value) -> str:
    return fmt_number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


__all__ = ["BUILTIN", "NO_LAYER", "NoiseExplorer", "P_CHOICES", "REGENERATE_COMMAND", "curve_knob", "join_points",
           "layer_counts", "network_choices", "playground_config"]
