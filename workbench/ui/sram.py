"""The "Under-volted SRAM" page: uniform BER, layer sensitivity, per-layer p and LaNMax,
energy–accuracy, weight spectra (thesis ch. 4).

Every setting of the page, the open sub-tab and the network picked on the energy–accuracy plot
included, is a query key of ``self.url`` (see :mod:`workbench.ui.urlstate`)."""

from __future__ import annotations

import math

import holoviews as hv
import numpy as np
import panel as pn
import param

from ..knobs import KnobError
from ..plots.sram import (
    METHOD_STYLE,
    energy_accuracy_plot,
    lanmax_study_plot,
    lanmax_trajectory_plot,
    layer_p_bars,
    param_count_bars,
    sensitivity_plot,
    spectra_plot,
    uniform_ber_plot,
)
from .base import ExplorerPage, about_fold, downloads, number_field, regenerate_footer, throttled_link
from .sram_explorer import DEFAULT_LAYER_P, POINT_GRIDS, REGENERATE, STUDY_REGENERATE, SRAMExplorer
from .urlstate import PageURL, URLKnob, URLValueError, fmt_number

#: the sub-tabs, as the ``tab`` key of a link names them, in the order they are shown
TABS = {"uniform": "Uniform BER", "sensitivity": "Layer sensitivity", "editor": "Per-layer p & LaNMax",
        "energy": "Energy vs accuracy", "spectra": "Spectra"}

TEXT = {
    "uniform": (
        "**Uniform BER (Fig 4.2).** Under-volting an SRAM saves energy but flips stored bits: each bit is "
        "read wrong with probability *p*, the bit error rate (BER). Here small BinaryConnect networks "
        "(1-bit weights) on handwritten digits were trained with every weight read through such a memory "
        "at the training BER *p_t*, then tested at a range of test BERs *p* (mean over seeds and "
        "Monte-Carlo draws of the errors). A network is most accurate near the BER it was trained at. The "
        "accuracy at p = 0 (no errors) has no place on the log axis and is left off."
    ),
    "sensitivity": (
        "**Layer sensitivity (Fig 4.1, 4.3).** Every layer at the base BER, one layer at *p = 0.5* (its "
        "weights pure noise): each box shows the accuracy over seeds and draws. Some layers (often the "
        "first) cannot tolerate noise, others barely notice it — the opportunity LaNMax (next tab: a BER "
        "learned per layer) exploits. The "
        "dashed line is the accuracy with every layer at the base BER."
    ),
    "editor": (
        "**Per-layer BER.** Type a BER *p* for any layer (0 = a reliable memory, at most 0.5): the memory "
        "energy updates as you type. Reading one bit at BER *p* costs η(p) = −ln(p)/a of the energy of a "
        "reliable read (eq 3.27, a = 12.8), and a network stores ζ bits per weight (ζ = 1 here), so its "
        "memory energy is ζ·Σ η(p)·(number of weights) over its layers (eq 3.30), shown as a fraction of the "
        "full-width (width 1) network read from reliable memory at 1 bit per weight, the thesis' reference "
        "(§4.4: one BER of 0.01 everywhere gives E = 0.36). A LaNMax run (Algorithm 1) learns these "
        "BERs while training: each epoch it perturbs *p* per layer, regresses the loss on the "
        "perturbation, and steps *p* along the normalised slope; a larger energy weight α trades accuracy "
        "for energy (eq 4.5)."
    ),
    "energy": (
        "**Energy vs accuracy (Fig 4.4).** Networks with reliable 16-bit and 1-bit weights at several widths, "
        "1-bit networks with one BER for every layer, and LaNMax networks over the energy weight α. "
        "Whiskers are 95 % confidence intervals over Monte-Carlo draws of the bit errors (a reliable memory "
        "has none). Energy is relative to the full-width 1-bit network read reliably, so a reliable 16-bit "
        "network sits at 16× its share of the weights. Click a point to see its per-layer BER and how "
        "sensitive each of its layers is."
    ),
    "spectra": (
        "**Weight spectra (Fig 4.6–4.8).** Each layer's real-valued (latent) weights, arranged as a matrix "
        "with one row per output channel (the mode-0 unfolding), have singular values λ_1 ≥ λ_2 ≥ …; "
        "the plots show the largest ten for networks trained at each *p_t*, and their change relative to "
        "the smallest *p_t*. The test below asks whether λ_1 and λ_2 differ between the least and the most "
        "noisy training (Welch's t-test over training seeds; the thesis reports t = −4.50, p-value 0.0028)."
    ),
}


def _labelled(values) -> dict[str, float]:
    return {fmt_number(v, 4) if v else "0": v for v in values}


# ---------------------------------------------------------------------- link keys with their own syntax
def format_layer_p(layer_p: dict[str, float]) -> str:
    """``layer → p`` as a link writes it: the most common BER alone, then ``layer:p`` for every layer
    that differs (``0.01,fc:0.02``); values rounded as the editor shows them."""
    if not layer_p:
        return ""
    texts = {layer: fmt_number(v) for layer, v in layer_p.items()}
    counts: dict[str, int] = {}
    for t in texts.values():
        counts[t] = counts.get(t, 0) + 1
    base = max(counts, key=lambda t: (counts[t], t == fmt_number(DEFAULT_LAYER_P)))
    return ",".join([base] + [f"{layer}:{t}" for layer, t in texts.items() if t != base])


def parse_layer_p(text: str, layers: list[str]) -> dict[str, float]:
    """The inverse of :func:`format_layer_p`: a bare number is the BER of every layer not named,
    ``layer:p`` sets one layer; a layer named nowhere keeps the page's default BER (0.01)."""
    def ber(word: str, where: str) -> float:
        try:
            v = float(word)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and 0.0 <= v <= 0.5):
            raise URLValueError(f"per-layer BER: {where} must be a number between 0 and 0.5")
        return v

    base, named = DEFAULT_LAYER_P, {}
    seen_base = False
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if ":" in item:
            layer, _, word = item.rpartition(":")
            if layer not in layers:
                raise URLValueError(f"per-layer BER: {layer} is not a layer of this network "
                                    f"(layers: {', '.join(layers)})")
            named[layer] = ber(word, f"the BER of {layer} ({word})")
        else:
            if seen_base:
                raise URLValueError("per-layer BER: give at most one BER without a layer name "
                                    "(it applies to every layer not named)")
            base, seen_base = ber(item, f"the BER of every other layer ({item})"), True
    return {layer: named.get(layer, base) for layer in layers}


def format_point(key: tuple[str, float] | None) -> str:
    return "none" if key is None else f"{key[0]}:{fmt_number(key[1])}"


def parse_point(text: str) -> tuple[str, float] | None:
    """``lanmax:0.1`` → ``("lanmax", 0.1)``; ``none`` → no network selected."""
    if text.strip().lower() in ("", "none"):
        return None
    method, _, word = text.partition(":")
    if method not in POINT_GRIDS or not word:
        raise URLValueError(f"the selected network is written as kind:value with kind one of "
                            f"{', '.join(POINT_GRIDS)} (e.g. lanmax:0.1), or none")
    try:
        value = float(word)
    except ValueError:
        raise URLValueError(f"the selected network's value ({word}) must be a number") from None
    return method, value


class SRAMPage(ExplorerPage):
    """Under-volted SRAM and LaNMax."""

    explorer_class = SRAMExplorer
    title = "Under-volted SRAM"

    tab = param.Selector(default="uniform", objects=list(TABS), doc="sub-tab of the page")

    def __init__(self, **params):
        super().__init__(**params)
        ex = self.explorer
        grid = list(ex.param.p_train.objects)
        self._p_train = throttled_link(pn.widgets.DiscreteSlider(label="training BER p_t", options=_labelled(grid),
                                                                 value=ex.p_train, width=300), ex, "p_train")
        self._p = throttled_link(pn.widgets.DiscreteSlider(label="test BER p (log scale)", value=ex.p, width=300,
                                                           options=_labelled(ex.param.p.objects)), ex, "p")
        self._inputs = {}
        for layer, value in ex.layer_p.items():
            w = pn.widgets.TextInput(label=f"p of {layer}", value=fmt_number(value), width=150)
            w.param.watch(lambda e, layer=layer: self._typed(layer, e.new), "value_input")
            self._inputs[layer] = w
        ex.param.watch(self._sync_inputs, "layer_p")
        self._edit_error = pn.pane.Markdown("", visible=False, styles={"color": "#b3261e"}, css_classes=["field-error"],
                                            sizing_mode="stretch_width")
        self._alpha = throttled_link(pn.widgets.FloatSlider(label="α (energy weight)", start=0.0, end=10.0, step=0.01,
                                                            value=ex.alpha, width=260), ex, "alpha")
        self._width = throttled_link(pn.widgets.DiscreteSlider(label="width multiplier", value=ex.width, width=220,
                                                               options=_labelled(ex.param.width.objects)), ex, "width")
        self._epochs = number_field(ex, "epochs", "LaNMax epochs", width=150)
        self._seed = number_field(ex, "seed", "seed of the run", width=150)
        self._run_controls("run_lanmax", "Run LaNMax")
        self._layer = pn.widgets.Select.from_param(ex.param.spectra_layer, label="layer", width=220)
        self._tabs: pn.Tabs | None = None      # built with the page's view (its plots need a plotting extension)
        self.param.watch(self._show_tab, "tab")
        #: the page's settings as link keys, in the order a link applies them
        self.url = PageURL([
            URLKnob("tab", self, "tab", label="sub-tab"),
            URLKnob("p_t", ex, "p_train", label="training BER p_t"),
            URLKnob("p", ex, "p", label="test BER p", parse=self._parse_p),
            URLKnob("layer_p", ex, "layer_p", label="per-layer BER", fmt=format_layer_p,
                    parse=lambda text: parse_layer_p(text, list(ex.counts))),
            URLKnob("alpha", ex, "alpha", label="α (LaNMax energy weight)"),
            URLKnob("width", ex, "width", label="width multiplier"),
            URLKnob("epochs", ex, "epochs", label="LaNMax epochs"),
            URLKnob("seed", ex, "seed", label="seed of a LaNMax run"),
            URLKnob("layer", ex, "spectra_layer", label="spectra layer"),
            URLKnob("point", ex, "selected", label="selected network", parse=parse_point, fmt=format_point,
                    read=ex.point_key, apply=ex.select_point),
        ])
        self._start()

    def _parse_p(self, text: str) -> float:
        options = list(self.explorer.param.p.objects)
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        for o in options:
            if math.isfinite(value) and math.isclose(value, o, rel_tol=1e-9):
                return o
        raise URLValueError(
            f"test BER p must be one of the slider's values: {', '.join(fmt_number(o) for o in options)}"
        )

    # ---------------------------------------------------------------- editor
    def _typed(self, layer: str, text: str) -> None:
        try:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            self.explorer.set_layer_p(layer, value)
        except (ValueError, KnobError):
            self._edit_error.object = (f"p of {layer} must be a number between 0 (a reliable memory) and 0.5 — "
                                       f"still using {fmt_number(self.explorer.layer_p[layer])}")
            self._edit_error.visible = True
            return
        self._edit_error.visible = False

    def _sync_inputs(self, event) -> None:
        for layer, value in event.new.items():
            w = self._inputs.get(layer)
            if w is not None:
                try:
                    same = math.isclose(float(w.value_input or w.value), value, rel_tol=1e-4)
                except ValueError:
                    same = False
                if not same:
                    w.value = fmt_number(value)

    # ---------------------------------------------------------------- views
    @param.depends("explorer.uniform", "explorer.p_train", "explorer.p")
    def _uniform(self):
        ds = self.explorer.uniform
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "loading the uniform-BER study…")
        ex = self.explorer
        plot = uniform_ber_plot(ds, ex.p_train, ex.p)
        return pn.Column(pn.pane.HoloViews(plot, linked_axes=False, sizing_mode="stretch_width"),
                         downloads(lambda: plot, lambda: ds, lambda: ["sram", "fig4.2", f"p_t={ex.p_train:g}"]),
                         sizing_mode="stretch_width")

    @param.depends("explorer.sensitivity")
    def _sensitivity(self):
        ds = self.explorer.sensitivity
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "loading the sensitivity study…")
        plot = sensitivity_plot(ds)
        return pn.Column(
            pn.pane.HoloViews(plot, linked_axes=False, sizing_mode="stretch_width"),
            downloads(lambda: plot, lambda: ds, lambda: ["sram", "fig4.3"]),
            pn.pane.HoloViews(param_count_bars(ds.param_count), linked_axes=False, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    @param.depends("explorer.layer_p")
    def _energy_readout(self):
        e = self.explorer.edited_energy()
        number = pn.indicators.Number(label="memory energy E", value=e, format="{value:.5f}", font_size="28pt",
                                      title_size="11pt")
        saving = f"{100 * (1 - e):.0f} % less memory energy than" if e <= 1 else f"{e:.2f}× the memory energy of"
        words = pn.pane.Markdown(
            f"The energy of reading this network's weights from the under-volted SRAM at the BERs above, as a "
            f"fraction of the full-width network read from reliable memory at 1 bit per weight (the thesis' "
            f"reference, §4.4): it uses {saving} that reference.", sizing_mode="stretch_width", min_width=200)
        return pn.FlexBox(number, words, flex_wrap="wrap", sizing_mode="stretch_width")

    @param.depends("explorer.layer_p")
    def _edited_bars(self):
        return pn.pane.HoloViews(layer_p_bars(self.explorer.layer_p, "edited BER per layer"), linked_axes=False,
                                 sizing_mode="stretch_width")

    @param.depends("explorer.lanmax_p", "explorer.lanmax_loss")
    def _trajectory(self):
        loss = self.explorer.lanmax_loss
        if not loss and not self.explorer.lanmax_p:
            return pn.pane.Markdown("*Run LaNMax to watch each layer's learned BER, epoch by epoch.*")
        curve = hv.Curve(
            (np.arange(1, len(loss) + 1), loss), "epoch", hv.Dimension("loss", label="training loss")
        ).opts(responsive=True, min_height=280, line_width=2, title="LaNMax: training loss by epoch")
        return pn.Column(
            pn.pane.HoloViews(
                lanmax_trajectory_plot(self.explorer.lanmax_p), linked_axes=False, sizing_mode="stretch_width"
            ),
            pn.pane.HoloViews(curve, linked_axes=False, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    @param.depends("explorer.energy")
    def _energy_plot(self):
        ds = self.explorer.energy
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "loading the energy–accuracy study…")
        plot = energy_accuracy_plot(ds)
        tap = hv.streams.Tap(source=plot, x=None, y=None)
        tap.add_subscriber(lambda x, y: self._pick(x, y))
        ratios = self.explorer.ratios()
        text = ""
        if ratios:
            text = (f"**Energy at equal accuracy ({ratios['target_accuracy']:.3f}):** one BER for every layer needs "
                    f"{ratios.get('ratio_vs_bc_uniform', float('nan')):.2f}× and reliable 1-bit weights (any width) "
                    f"{ratios.get('ratio_vs_bc', float('nan')):.2f}× the memory energy of LaNMax (above 1: LaNMax "
                    f"saves energy). The thesis reports 2.4× and 3.3× for a wide residual network (WRN-28-10) on "
                    f"CIFAR-10 images.")
        return pn.Column(
            pn.pane.HoloViews(plot, linked_axes=False, sizing_mode="stretch_width"),
            downloads(lambda: plot, lambda: ds, lambda: ["sram", "fig4.4"]),
            pn.pane.Markdown(text),
            sizing_mode="stretch_width",
        )

    @param.depends("explorer.study", "explorer.study_missing")
    def _study(self):
        ex = self.explorer
        if ex.study is None:
            if ex.study_missing:
                return pn.pane.Markdown(f"*The fair LaNMax study is not in this store; compute it with "
                                        f"`{STUDY_REGENERATE}` (about 30 minutes on two shared cores).*")
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "loading the LaNMax study…")
        return pn.Column(pn.pane.Markdown(study_text(ex.study, ex.study_rows())),
                         pn.pane.HoloViews(lanmax_study_plot(ex.study, "common"), linked_axes=False,
                                           sizing_mode="stretch_width"),
                         pn.pane.Markdown("<small>Dashed line: parity (ratio 1); dotted line: the thesis' 2.4× "
                                          "(WRN-28-10 on CIFAR-10). Above 1, LaNMax saves energy.</small>"),
                         sizing_mode="stretch_width")

    def _pick(self, x, y):
        ds = self.explorer.energy
        if x is None or y is None or ds is None or x <= 0:
            return
        d = (np.log10(ds.energy.values) - np.log10(x)) ** 2 / 0.25 + (ds.accuracy_mean.values - y) ** 2 / 0.01
        self.explorer.selected = int(np.argmin(d))

    @param.depends("explorer.selected", "explorer.energy", "explorer.point_sensitivity")
    def _details(self):
        info = self.explorer.point_details()
        if info is None:
            return pn.pane.Markdown("*Click a network on the plot to see its per-layer BER.*")
        method = info["method"]
        knob = {"fp16": "width", "bc": "width", "bc_uniform": "BER p", "lanmax": "α"}[method]
        head = (
            f"**{METHOD_STYLE[method][0]}**, {knob} = {info['value']:g}: mean test accuracy {info['accuracy']:.3f}, "
            f"memory energy E = {info['energy']:.4f} (relative to the full-width 1-bit network read reliably), "
            f"{info['rho']:.2f}× the weights of the width-1 network"
        )
        sens = self.explorer.point_sensitivity
        if method == "fp16":
            sens_view = pn.pane.Markdown("*16-bit networks are stored reliably: no BER to be sensitive to.*")
        elif sens is None:
            sens_view = pn.Row(pn.indicators.LoadingSpinner(value=True, size=25), "sensitivity of this network…")
        else:
            sens_view = pn.pane.HoloViews(sensitivity_plot(sens), linked_axes=False, sizing_mode="stretch_width")
        return pn.Column(pn.pane.Markdown(head), pn.pane.HoloViews(layer_p_bars(info["p"]), linked_axes=False,
                                                                   sizing_mode="stretch_width"),
                         sens_view, sizing_mode="stretch_width")

    @param.depends("explorer.spectra", "explorer.spectra_layer")
    def _spectra(self):
        ds = self.explorer.spectra
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "loading the spectra…")
        layer = self.explorer.spectra_layer
        lines = spectra_test_lines(ds, layer)
        rows, cols = int(ds.unfolding_rows.sel(layer=layer)), int(ds.unfolding_cols.sel(layer=layer))
        if min(rows, cols) < ds.sizes["rank"]:
            lines.append(f"The weights of {layer} form a {rows} × {cols} matrix, so it has only {min(rows, cols)} "
                         f"singular values.")
        return pn.Column(pn.pane.HoloViews(spectra_plot(ds, layer), linked_axes=False, sizing_mode="stretch_width"),
                         pn.pane.Markdown("  \n".join(lines), sizing_mode="stretch_width"), sizing_mode="stretch_width")

    # ---------------------------------------------------------------- layout
    def _build_tabs(self) -> pn.Tabs:
        lanmax = pn.Column(
            "#### LaNMax: learn a BER per layer",
            pn.FlexBox(
                self._alpha, self._width, self._epochs, self._seed, flex_wrap="wrap", sizing_mode="stretch_width"
            ),
            pn.Row(self._run, self._cancel),
            self._progress,
            sizing_mode="stretch_width",
        )
        pages = {
            "uniform": pn.Column(
                pn.FlexBox(self._p_train, self._p, flex_wrap="wrap", sizing_mode="stretch_width"),
                self._uniform,
                pn.pane.Markdown(TEXT["uniform"]),
                sizing_mode="stretch_width",
            ),
            "sensitivity": pn.Column(
                self._sensitivity, pn.pane.Markdown(TEXT["sensitivity"]), sizing_mode="stretch_width"
            ),
            "editor": pn.Column(
                pn.FlexBox(*self._inputs.values(), flex_wrap="wrap", sizing_mode="stretch_width"),
                self._edit_error,
                self._energy_readout,
                self._edited_bars,
                lanmax,
                self._trajectory,
                pn.pane.Markdown(TEXT["editor"]),
                sizing_mode="stretch_width",
            ),
            "energy": pn.Column(
                self._energy_plot, self._details, pn.pane.Markdown(TEXT["energy"]), self._study,
                sizing_mode="stretch_width"
            ),
            "spectra": pn.Column(
                self._layer, self._spectra, pn.pane.Markdown(TEXT["spectra"]), sizing_mode="stretch_width"
            ),
        }
        keys = list(TABS)
        tabs = pn.Tabs(*[(TABS[k], pages[k]) for k in keys], active=keys.index(self.tab), dynamic=True,
                       sizing_mode="stretch_width")
        tabs.param.watch(lambda e: setattr(self, "tab", keys[e.new]), "active")
        return tabs

    def _show_tab(self, event) -> None:
        if self._tabs is not None:
            self._tabs.active = list(TABS).index(event.new)

    def __panel__(self):
        if self._tabs is None:
            self._tabs = self._build_tabs()
        links = pn.pane.Markdown(
            "<small>The address bar holds this page's whole state, so a link reopens it: <code>tab</code> (the "
            "sub-tab), <code>p_t</code> and <code>p</code> (training and test BER), <code>layer_p</code> (the "
            "edited BERs: one number for every layer, then <code>layer:p</code> for each layer that differs, e.g. "
            "<code>0.01,fc:0.3</code>), <code>alpha</code>, <code>width</code>, <code>epochs</code>, "
            "<code>seed</code> (the LaNMax run), <code>layer</code> (of the spectra) and <code>point</code> (the "
            "network picked on the energy plot, e.g. <code>lanmax:0.1</code>, or <code>none</code>).</small>",
            sizing_mode="stretch_width")
        return pn.Column(self._status, self._tabs, about_fold(regenerate_footer(REGENERATE), links),
                         sizing_mode="stretch_width")


def study_text(ds, rows: list[dict]) -> str:
    """The fair LaNMax study in words: the verdict against a uniform BER for the thesis' settings at
    each target accuracy, then every variant's ratio with its CI (Markdown)."""
    from ..experiments.lanmax_study import verdict
    names = {"uniform": "one BER for all layers", "width": "reliable 1-bit weights, narrower"}
    targets = {"noiseless": "noiseless full-width net − 1 point", "common": "best all curves reach − 1 point"}
    seeds = sorted({int(s) for s in ds.seed.values})
    lines = [f"**Fair LaNMax study** (every method trained {ds.attrs['epochs']} epochs at the variant's batch size, "
             f"seeds {', '.join(map(str, seeds))}; energy relative to the full-width 1-bit network read reliably; "
             "95 % CI: percentile bootstrap over seeds; a bound of 0 means that in some resamples LaNMax never "
             "reaches the target)."]
    for r in rows:
        if r["variant"] == "thesis" and r["baseline"] == "uniform":
            lines.append(f"At {targets.get(r['target'], r['target'])} ({r['accuracy']:.3f}): "
                         + verdict(r["ratio"], r["low"], r["high"], "a uniform BER"))
    table = ["| LaNMax variant | OLS samples per slope | baseline | target accuracy | baseline E ÷ LaNMax E "
             "| 95 % CI |", "|---|---|---|---|---|---|"]
    for r in rows:
        value = f"{r['ratio']:.2f}" if math.isfinite(r["ratio"]) else "LaNMax does not reach it"
        table.append(f"| {r['variant']} | {r['ols_samples']} | {names.get(r['baseline'], r['baseline'])} | "
                     f"{r['accuracy']:.3f} ({r['target']}) | {value} | {r['low']:.2f}–{r['high']:.2f} |")
    return "\n\n".join(lines) + "\n\n" + "\n".join(table)


def spectra_test_lines(ds, layer: str) -> list[str]:
    """One line per λ_1, λ_2 of ``layer``: Welch's t-test over training seeds between the smallest
    and the largest training BER (thesis §4.5), or, where no test can be made, why, in words."""
    from ..analysis.spectra import spectra_ttest
    pts = [float(v) for v in ds.p_train.values]
    lines = []
    for rank in (1, 2):                     # spectra_ttest's rank is 1-based: 1 = the largest
        what = f"λ_{rank} ({'largest' if rank == 1 else 'second largest'} singular value)"
        if len(pts) < 2:
            lines.append(f"{what}: no test — the spectra hold a single training BER, nothing to compare")
            continue
        sv = ds.singular_value.sel(layer=layer, rank=rank)
        n = [int(np.isfinite(sv.sel(p_train=p).values).sum()) for p in (pts[0], pts[-1])]
        if min(n) < 2:
            lines.append(f"{what}: no test — not enough networks for a t-test: it needs at least 2 training seeds per "
                         f"training BER, and p_t = {pts[0]:g} has {n[0]}, p_t = {pts[-1]:g} has {n[1]}")
            continue
        try:
            t = spectra_ttest(ds, layer, rank, pts[0], pts[-1])
        except KnobError:
            lines.append(f"{what}: no test — these spectra do not hold the values a t-test needs")
            continue
        lines.append(f"{what}, p_t = {pts[0]:g} against {pts[-1]:g}: Welch t = {t['t']:.2f}, "
                     f"p-value = {t['p_value']:.3g} ({t['n_a']} and {t['n_b']} seeds)")
    return lines
