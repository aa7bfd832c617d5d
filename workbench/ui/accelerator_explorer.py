"""The Accelerator page's state: a network on a crossbar chip with converters, tiles and faults,
and a hardware profile (no Panel here).

Every knob is a bounded ``param`` (the widgets, the URL and the notebook share those bounds).  One
setting applies to all layers; :attr:`AcceleratorExplorer.overrides` changes some knobs for single
layers.  A change of any knob evaluates the setting as a :meth:`BackgroundState.launch` job
(:func:`~workbench.experiments.core.evaluate` with the profile: accuracy over Monte-Carlo draws,
energy in J per inference by layer and component, latency in s); a failed job sets ``error`` and
keeps the earlier result.  The default setting is a cell of ``specs/accelerator_digits.json``, so
the page opens on shipped results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import param

from ..experiments import Store, evaluate, param_counts, preset_config
from ..experiments.accelerator import DEFAULT_DRAWS, DEFAULT_MEMORY, DEFAULT_PRESET, cell_memory
from ..experiments.sweep import ACCELERATOR_SPEC, load_spec, stored_experiment
from ..hardware import COMPONENTS, PROFILES, HardwareProfile, make_profile
from ..knobs import KnobError
from .base import BackgroundState, result_param
from .urlstate import URLKnob, URLValueError, fmt_number

#: the knobs a layer may set for itself (the table's columns), in the order shown
LAYER_KNOBS = ("adc_bits", "dac_bits", "stuck_at", "act_p")
#: why each component costs what it costs (the explanation's second sentence; model of
#: :mod:`workbench.hardware.profile`)
WHY = {
    "array": "the crossbar itself draws current through every conductance for the whole read time of each "
             "output position (power × t_read, eq 3.41–3.44); it grows with g_u and the read voltage",
    "dac": "every row of every tile is driven by a DAC once per output position, and one conversion costs "
           "FOM × 2^bits, so it doubles with each DAC bit and grows with the number of positions a "
           "convolution reads",
    "adc": "every column of every row tile is converted once per output position, and one conversion costs "
           "FOM × 2^bits (Walden), so it doubles with each ADC bit; smaller tiles mean more conversions",
    "weight_buffer": "weights kept in digital SRAM are read once per inference, bit by bit",
    "activation_buffer": "each layer's input is written to and read from an SRAM buffer once per inference; "
                         "it grows with the activation word length",
    "accumulation": "the partial sums of a layer split into several row tiles are added digitally, one addition "
                    "per column, position and extra tile",
}


class LayerKnobs(param.Parameterized):
    """The knobs one layer may set for itself, with the bounds of the all-layers knobs (parsing and
    checking a table cell or a link's value)."""

    adc_bits = param.Integer(6, bounds=(2, 16), doc="ADC resolution (bits)")
    dac_bits = param.Integer(4, bounds=(2, 16), doc="DAC resolution (bits)")
    stuck_at = param.Number(0.0, bounds=(0.0, 1.0), doc="rate of stuck devices")
    act_p = param.Number(0.0, bounds=(0.0, 0.5), doc="activation buffer bit error rate")


def check_layer_value(knob: str, text: str) -> Any:
    """``text`` as a value of the layer knob ``knob`` (URLValueError naming it and its range)."""
    return URLKnob(knob, _LAYER_PROBE, knob).from_text(text)


_LAYER_PROBE = LayerKnobs()


def layer_names(preset: str = DEFAULT_PRESET) -> list[str]:
    """The layers of the page's network (weights per layer, in network order)."""
    return list(param_counts(preset_config(preset)))


def profile_values(name: str) -> dict[str, Any]:
    """Every knob of the named preset (the defaults plus the preset's overrides)."""
    return make_profile(name).to_dict()


def parse_layers(text: str, layers: list[str]) -> dict[str, dict[str, Any]]:
    """``"features.0:adc_bits:4,features.0:act_p:0.01,classifier:stuck_at:0.1"`` (``layer:knob:value``
    items, characters a link keeps as they are) -> per-layer knob changes; each value checked
    against its knob's range (URLValueError naming the layer and the knob)."""
    out: dict[str, dict[str, Any]] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        parts = item.split(":")
        if len(parts) != 3 or parts[0] not in layers:
            raise URLValueError(f"per-layer settings are written layer:knob:value,…; layers are {', '.join(layers)} "
                                f"(got {item!r})")
        layer, knob, value = parts
        if knob not in LAYER_KNOBS:
            raise URLValueError(f"a layer's knobs are {', '.join(LAYER_KNOBS)} (got {knob!r} for {layer})")
        try:
            out.setdefault(layer, {})[knob] = check_layer_value(knob, value)
        except URLValueError as exc:
            raise URLValueError(f"layer {layer}: {exc}") from None
    return out


def format_layers(overrides: dict[str, dict[str, Any]]) -> str:
    """Inverse of :func:`parse_layers`."""
    return ",".join(f"{layer}:{k}:{fmt_number(v)}"
                    for layer, changes in sorted(overrides.items()) for k, v in sorted(changes.items()))


def memory_knobs(values: dict[str, Any]) -> dict[str, Any]:
    """The page's knobs (``stuck_at`` one rate) as crossbar memory knobs (half of the stuck devices
    at g_min, half at g_max, as ``workbench evaluate --stuck-at``)."""
    out = dict(values)
    if "stuck_at" in out:
        rate = out.pop("stuck_at")
        out["stuck_min"] = out["stuck_max"] = rate / 2
    return out


def explain(ds) -> str:
    """Plain words for a first-time reader: which component and which layer take most of the
    energy of ``ds`` (an evaluate result with ``layer_energy_j``) and why, from its numbers."""
    from ..plots.accelerator import COMPONENT_WORDS, fmt_energy, fmt_time
    e = ds.layer_energy_j.mean("draw") if "draw" in ds.layer_energy_j.dims else ds.layer_energy_j
    by_comp = e.sum("layer")
    total = float(by_comp.sum())
    if not total > 0:
        return "This setting uses no energy in the model (every constant of the profile is zero)."
    comps = sorted(((float(by_comp.sel(component=c)), str(c)) for c in by_comp.component.values), reverse=True)
    (top_j, top), (second_j, second) = comps[0], comps[1]
    by_layer = e.sum("component")
    layer = str(by_layer.layer.values[int(np.argmax(by_layer.values))])
    layer_share = float(by_layer.max()) / total
    text = (f"One inference costs **{fmt_energy(total)}** and takes **{fmt_time(float(ds.latency_s))}**. "
            f"The largest part, {100 * top_j / total:.0f} % of the energy, goes to the **{COMPONENT_WORDS[top]}**, "
            f"the next, {100 * second_j / total:.0f} %, to the {COMPONENT_WORDS[second]}. Why: {WHY[top]}. "
            f"Layer **{layer}** uses {100 * layer_share:.0f} % of the energy.")
    return text


class AcceleratorExplorer(BackgroundState):
    """State of the Accelerator page: converter bits, tiles, faults, a profile and its result."""

    job_kinds = ("eval", "study")
    cancel_kind = "eval"

    profile = param.Selector(default="isaac", objects=sorted(PROFILES), doc="hardware profile (named preset)")
    sigma_c = param.Number(DEFAULT_MEMORY["sigma_c"], bounds=(0.0, 1.0), softbounds=(0.0, 0.5),
                           doc="multiplicative conductance noise σ_c")
    adc_bits = param.Integer(DEFAULT_MEMORY["adc_bits"], bounds=(2, 16), doc="ADC resolution (bits)")
    dac_bits = param.Integer(DEFAULT_MEMORY["dac_bits"], bounds=(2, 16), doc="DAC resolution (bits)")
    tile_rows = param.Integer(DEFAULT_MEMORY["tile_rows"], bounds=(1, 4096), doc="tile rows (devices)")
    tile_cols = param.Integer(DEFAULT_MEMORY["tile_cols"], bounds=(1, 4096), doc="tile columns (devices)")
    stuck_at = param.Number(0.0, bounds=(0.0, 1.0), doc="rate of stuck devices (half at g_min, half at g_max)")
    act_p = param.Number(0.0, bounds=(0.0, 0.5), doc="activation buffer bit error rate")
    act_bits = param.Integer(8, bounds=(2, 32), doc="activation word length (bits)")
    draws = param.Integer(DEFAULT_DRAWS, bounds=(2, 500), doc="Monte-Carlo draws")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="seed of the noise draws")
    #: per-layer changes of :data:`LAYER_KNOBS`: {layer: {knob: value}}
    overrides = param.Dict(default={}, doc="per-layer settings")
    #: the profile's constants (edited in place: a preset choice resets them)
    hw = param.ClassSelector(class_=HardwareProfile, precedence=-1)

    result = result_param("evaluation at the current setting")
    study = result_param("the shipped accuracy/energy-vs-ADC-bits study (None until read or when absent)")
    evaluating = param.Boolean(False, precedence=-1)

    def __init__(self, store: Store | None = None, device: str = "auto", autorun: bool = True, **params):
        params.setdefault("hw", make_profile(params.get("profile", "isaac")))
        super().__init__(**params)
        self.store = store or Store()
        self.device = device
        self.layers = layer_names()
        self._resetting = False
        self.hw.param.watch(self._hw_changed, list(self._hw_knobs()))
        if autorun:
            self.load()

    @staticmethod
    def _hw_knobs() -> list[str]:
        return [k for k in HardwareProfile.param if k != "name"]

    # ------------------------------------------------------------------ state -> evaluation
    def memory(self) -> dict[str, Any]:
        """The memory map of the current setting (validated)."""
        knobs = memory_knobs({"adc_bits": self.adc_bits, "dac_bits": self.dac_bits, "tile_rows": self.tile_rows,
                              "tile_cols": self.tile_cols, "stuck_at": self.stuck_at, "act_p": self.act_p,
                              "act_bits": self.act_bits})
        base = {**DEFAULT_MEMORY, "sigma_c": self.sigma_c}
        return cell_memory(base, {k: memory_knobs(v) for k, v in self.overrides.items()}, **knobs)

    def load(self) -> None:
        """Evaluate the current setting and read the shipped study (never computed here)."""
        params = load_spec(ACCELERATOR_SPEC)["experiments"]["accelerator"]
        self.launch("study", lambda cancel: stored_experiment("accelerator", params, self.store), into="study",
                    compute=False)
        self.evaluate_now()

    def evaluate_now(self) -> None:
        try:
            memory, profile = self.memory(), make_profile(self.profile, **self.hw.to_dict())
        except KnobError as exc:
            self.refuse(str(exc))
            return
        cfg, draws, seed = preset_config(DEFAULT_PRESET), self.draws, self.seed
        label = (f"evaluating {draws} draws at ADC {self.adc_bits} bits, DAC {self.dac_bits} bits, "
                 f"tiles {self.tile_rows}×{self.tile_cols}…")

        def progress(info):
            if info.get("draws"):
                self._set(progress=min(99, int(100 * info["draw"] / info["draws"])),
                          status=f"{label} {info['draw']} of {info['draws']} draws done")

        def job(cancel):
            return evaluate(cfg, memory, draws=draws, seed=seed, store=self.store, device=self.device,
                            cancel=cancel, profile=profile, progress=progress)

        def done(ds):
            return {"result": ds, "evaluating": False,
                    "status": f"done: {ds.sizes['draw']} draws ({ds.attrs.get('cache', 'computed')})"}

        def failed(message):
            self._fail(message, evaluating=False)

        self.launch("eval", job, label=label, on_done=done, on_error=failed, evaluating=True,
                    cancelled="cancelled — earlier results kept")

    @param.depends("sigma_c", "adc_bits", "dac_bits", "tile_rows", "tile_cols", "stuck_at", "act_p", "act_bits",
                   "draws", "seed", "overrides", watch=True)
    def _changed(self) -> None:
        self.evaluate_now()

    @param.depends("running", watch=True)
    def _stopped(self) -> None:
        # a cancelled evaluation ends with ``running`` False and no result: nothing is evaluating
        if not self.running and self.evaluating:
            self.evaluating = False

    @param.depends("profile", watch=True)
    def _on_profile(self) -> None:
        self._resetting = True
        try:
            self.hw.param.update(**profile_values(self.profile))
        finally:
            self._resetting = False
        self.evaluate_now()

    def _hw_changed(self, *_) -> None:
        if not self._resetting:
            self.evaluate_now()

    # ------------------------------------------------------------------ per-layer table
    def set_layer(self, layer: str, knob: str, value: Any) -> None:
        """Set (``value`` None: clear) one layer's ``knob``; a bad layer, knob or value raises a
        KnobError naming it and changes nothing."""
        if layer not in self.layers:
            raise KnobError(f"layer must be one of {', '.join(self.layers)}, got {layer!r}")
        if knob not in LAYER_KNOBS:
            raise KnobError(f"a layer's knob must be one of {', '.join(LAYER_KNOBS)}, got {knob!r}")
        changes = dict(self.overrides.get(layer, {}))
        if value is None:
            changes.pop(knob, None)
        else:
            try:
                changes[knob] = check_layer_value(knob, str(value))
            except URLValueError as exc:
                raise KnobError(f"layer {layer}: {exc}") from None
        new = {k: v for k, v in self.overrides.items() if k != layer}
        if changes:
            new[layer] = changes
        self.overrides = new

    def layer_rows(self) -> list[dict[str, Any]]:
        """One row per layer: its own value of each :data:`LAYER_KNOBS` knob, None where it uses the
        all-layers setting."""
        return [{"layer": layer, **{k: self.overrides.get(layer, {}).get(k) for k in LAYER_KNOBS}}
                for layer in self.layers]

    def url_knobs(self) -> list[URLKnob]:
        """The page's settings as URL keys (profile before its constants: choosing it resets them)."""
        keys = ["profile", "sigma_c", "adc_bits", "dac_bits", "tile_rows", "tile_cols", "stuck_at", "act_p",
                "act_bits", "draws", "seed"]
        knobs = [URLKnob(k, self, k) for k in keys]
        knobs[1:1] = [URLKnob(f"hw_{k}", self.hw, k, label=f"profile constant {k}",
                                fmt=lambda v: fmt_number(v, 10)) for k in self._hw_knobs()]
        knobs.append(URLKnob("layers", self, "overrides", label="per-layer settings",
                             parse=lambda text: parse_layers(text, self.layers), fmt=format_layers))
        return knobs

    def energy_by_component(self) -> dict[str, float]:
        """Total energy per inference (J) of each component at the current result."""
        if self.result is None:
            return {}
        e = self.result.layer_energy_j.mean("draw").sum("layer")
        return {c: float(e.sel(component=c)) for c in COMPONENTS}


__all__ = ["AcceleratorExplorer", "LAYER_KNOBS", "LayerKnobs", "WHY", "check_layer_value", "explain", "format_layers",
           "layer_names", "memory_knobs", "parse_layers", "profile_values"]
