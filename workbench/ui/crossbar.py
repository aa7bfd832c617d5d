"""The "Crossbar power & search" page: a subnet of the supernet with one g_u per layer and its live
power and accuracy, the power–accuracy Pareto fronts of NAS strategies M1/M2/M3 with click-through
details, the n_a/n_p selection, and NSGA-II searches streamed from the page (thesis ch. 6).

Its whole state is in the URL (``?page=crossbar&tab=subnet&depth=3,2,1&gu=0.8,1,...&point=M2:5``):
``gu`` lists g_u / g_u^d of the subnet's layers in network order, so it applies after ``depth``;
a link's subnet is checked against the supernet's layout (known from its configuration before the
trained weights load), and a ``point`` only once the fronts have loaded (refused then on the page).
``xaxis``/``yaxis`` name the quantities on the Pareto fronts' axes (left out of the link at the
default power–accuracy view)."""

from __future__ import annotations

from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from ..knobs import range_words
from ..plots.crossbar import (
    AXIS_NAMES,
    SHORT_NAMES,
    accuracy_histogram,
    g_u_bars,
    layer_power_bars,
    number_formatter,
    pareto_axes,
    pareto_plot,
    robustness_curve,
    selection_plot,
    short_layer_name,
    si_unit,
)
from .base import ExplorerPage, about_fold, downloads, hv_pane, number_field, regenerate_footer, spinner
from .crossbar_explorer import REGENERATE, CrossbarExplorer
from .urlstate import PageURL, URLKnob, URLValueError

TEXT = {
    "subnet": (
        "**Your subnet on crossbars (eq 3.33–3.44).** The network is a *supernet*: one trained network from which "
        "smaller networks (subnets) are cut by choosing, for each of its 3 stages, how many blocks it keeps (D), how "
        "wide its layers are and how much each block expands inside. Every layer's weights are stored as "
        "conductances of memristor crossbars, up to a largest conductance g_u. Its default g_u^d = ‖W‖∞ is the "
        "largest absolute weight of the layer (eq 6.1), and each layer's g_u is set here as a multiple of it, "
        "between 0.5 and 1.5 (eq 6.2): a smaller g_u programs smaller conductances (less power) that the "
        "additive device noise perturbs relatively more. Power and accuracy are averages over Monte-Carlo draws "
        "of that noise; batch norm is recalibrated and folded into the crossbars. Crossbar power is in "
        "arbitrary units: only ratios between networks mean something."
    ),
    "fronts": (
        "**Pareto fronts (Fig 6.2).** Each point is one network with its own g_u per layer, found by a search "
        "(NSGA-II) on a fast estimator of accuracy and power, then simulated again in full. M1 searches the "
        "architecture with g_u = g_u^d, M2 searches architecture and g_u together, M3 rescales M1's g_u by 10 "
        "factors in [0.9, 1.1]; a line joins the points no other network beats on both power and accuracy. "
        "Grey dots are the k random architectures × k_g random g_u settings each that trained the estimator, as "
        "it measured them on only n_a minibatches for accuracy and n_p for power (Fig 6.1 below shows how "
        "small n_a and n_p can be). Click a point for its network, g_u, power per layer and robustness. "
        "The two menus choose the quantities on the axes among those the study holds: a study searched with ADC "
        "bits and a hardware profile (`workbench nas --adc-bits ... --objectives accuracy,energy,latency`) also "
        "holds the energy per inference in joules and the latency in seconds."
    ),
    "search": (
        "**Run a search.** NSGA-II (a genetic algorithm, through pymoo) searches the networks on the shipped "
        "estimator; its estimated front streams in generation by generation, and Cancel stops it within one "
        "generation. Estimated fronts are optimistic: the fronts on the *Pareto fronts* tab were simulated in full."
    ),
}

TABS = ("subnet", "fronts", "search")
GU_STEP = 0.05
#: the default axes of the fronts (Fig 6.2), left out of a link
DEFAULT_AXES = {"front_x": "power", "front_y": "accuracy"}


def _axis_label(name: str) -> str:
    return {"accuracy": "test accuracy", "power": "crossbar power (arbitrary units)",
            "energy_j": "energy per inference (J)", "latency_s": "latency per inference (s)"}.get(name, name)


def _fmt_gu(v: float) -> str:
    """g_u / g_u^d as the table shows it (2 decimals)."""
    return f"{float(v):.2f}".rstrip("0").rstrip(".")


def _number_list(kind: str, integer: bool):
    def parse(text: str):
        try:
            return [int(t) if integer else float(t) for t in text.split(",")]
        except ValueError:
            raise URLValueError(
                f"{kind} is a comma-separated list of {'whole numbers' if integer else 'numbers'}"
            ) from None

    return parse


def _parse_point(text: str):
    if text.strip() == "none":
        return None
    strategy, sep, point = text.partition(":")
    if not sep or not point.strip().isdigit():
        raise URLValueError("point is written strategy:number, e.g. M2:5, or none")
    return strategy.strip(), int(point)


class CrossbarPage(ExplorerPage):
    """Crossbar power and the joint architecture + g_u search."""

    explorer_class = CrossbarExplorer
    title = "Crossbar power & search"
    tab = param.Selector(default="subnet", objects=list(TABS), doc="the open sub-tab")

    def __init__(self, **params):
        super().__init__(**params)
        ex = self.explorer
        sp = ex.layout
        self._syncing = False
        self._arch_select: dict[tuple[str, int], pn.widgets.Select] = {}
        arch_rows = []
        stem = self._select("width", 0, "stem width", sp.width_choices)
        for s in range(sp.n_stages):
            arch_rows.append(pn.Row(self._select("depth", s, f"stage {s + 1}: blocks D", sp.depth_choices),
                                    self._select("width", s + 1, "width", sp.width_choices),
                                    self._select("expand", s, "expand", sp.expand_choices), margin=0))
        self._arch = pn.Column(stem, *arch_rows, margin=0)
        ex.param.watch(self._arch_followed, ["depth", "width", "expand"])
        self._sigma = pn.widgets.FloatSlider(label="device noise σ (µS, additive)", start=0.0, end=0.1, step=0.005,
                                             value=ex.sigma, format="0.000")
        self._sigma.param.watch(lambda e: e.new is not None and setattr(ex, "sigma", e.new), "value_throttled")
        ex.param.watch(self._sigma_followed, "sigma")
        self._draws = number_field(ex, "draws", "Monte-Carlo draws", width=150)
        # every layer's g_u at once, then per layer in a table (values refused beside it)
        self._all = pn.widgets.FloatSlider(label="set every layer's g_u / g_u^d to", start=sp.gu_low, end=sp.gu_high,
                                           step=GU_STEP, value=1.0)
        self._all.param.watch(self._set_all, "value_throttled")
        self._table = pn.widgets.Tabulator(self._gu_frame(), show_index=False, height=300, sizing_mode="stretch_width",
                                           editors={"layer": None, "g_u / g_u^d": {"type": "number", "step": GU_STEP}},
                                           formatters={"g_u / g_u^d": {"type": "money", "precision": 2}},
                                           selectable=False, layout="fit_columns")
        self._table.on_edit(self._edited)
        self._gu_error = pn.pane.Markdown("", visible=False, styles={"color": "#b3261e"}, css_classes=["field-error"],
                                          margin=(0, 10))
        ex.param.watch(self._gu_followed, "g_u")
        self._strategy = pn.widgets.RadioButtonGroup.from_param(ex.param.strategy, label="strategy")
        self._pop = number_field(ex, "pop_size", "population", width=130)
        self._gen = number_field(ex, "n_gen", "generations", width=130)
        self._run_controls("search", "Run NSGA-II")
        for button in (self._run, self._cancel):     # beside the fields, not stretched across the page
            # (no hover help: its pop-up would cover the button beside it)
            button.param.update(sizing_mode="fixed", width=130, margin=(27, 5, 5, 5), description=None)
        self._strategy.param.update(sizing_mode="fixed", width=200)
        self._use = pn.widgets.Button(label="Edit this network", color="primary")
        self._use.on_click(self._edit_point)
        self._export = pn.widgets.Button(label="Export", description="write this network as a standalone network "
                                         "(architecture, BN-folded weights, per-layer g_u, accuracy and power) "
                                         "and offer it as a .zip")
        self._export.on_click(lambda *_: ex.export_point())
        self.export_download = pn.widgets.FileDownload(label="Download .zip", color="success", visible=False,
                                                 auto=True, embed=False)
        ex.param.watch(self._export_ready, "export_zip")
        # the two quantities on the fronts' axes, among those the loaded study holds
        self._axis_select = {
            which: pn.widgets.Select(label=f"{which} axis", options=self._axis_options(),
                                     value=dict(zip(("x", "y"), ex.shown_axes()))[which], width=260, margin=(5, 10))
            for which in ("x", "y")}
        for which, w in self._axis_select.items():
            w.param.watch(lambda e, which=which: self._axis_chosen(which, e.new), "value")
        ex.param.watch(self._axes_followed, ["front_x", "front_y", "nas"])
        self.url = PageURL([
            URLKnob("tab", self, "tab", label="sub-tab"),
            URLKnob("depth", ex, "depth", label="depth", parse=_number_list("depth", True),
                    apply=lambda v: setattr(ex, "depth", ex.check_arch("depth", v))),
            URLKnob("width", ex, "width", label="width", parse=_number_list("width", False),
                    apply=lambda v: setattr(ex, "width", ex.check_arch("width", v))),
            URLKnob("expand", ex, "expand", label="expand", parse=_number_list("expand", False),
                    apply=lambda v: setattr(ex, "expand", ex.check_arch("expand", v))),
            URLKnob("gu", ex, "g_u", label="g_u", parse=_number_list("gu (g_u / g_u^d per layer)", False),
                    fmt=lambda g: ",".join(_fmt_gu(g[n]) for n in ex.present_layers() if n in g),
                    apply=ex.set_g_u_list),
            URLKnob("sigma", ex, "sigma", label="device noise σ (µS)"),
            URLKnob("draws", ex, "draws", label="Monte-Carlo draws"),
            URLKnob("strategy", ex, "strategy", label="search strategy"),
            URLKnob("pop", ex, "pop_size", label="population"),
            URLKnob("gen", ex, "n_gen", label="generations"),
            URLKnob("point", ex, "selected", label="point", parse=_parse_point,
                    fmt=lambda v: "none" if v is None else f"{v[0]}:{v[1]}",
                    apply=lambda v: setattr(ex, "selected", None) if v is None else ex.set_point(*v)),
            URLKnob("xaxis", ex, "front_x", label="x axis of the fronts",
                    fmt=lambda v: "" if v == DEFAULT_AXES["front_x"] else v),
            URLKnob("yaxis", ex, "front_y", label="y axis of the fronts",
                    fmt=lambda v: "" if v == DEFAULT_AXES["front_y"] else v),
        ])
        self._tabs = self._build_tabs()
        self._start()

    # ---------------------------------------------------------------- the editor follows the state
    def _select(self, name: str, i: int, label: str, choices) -> pn.widgets.Select:
        ex = self.explorer
        opts = {f"{c:g}": c for c in choices}
        w = pn.widgets.Select(label=label, options=opts, value=getattr(ex, name)[i], width=95, margin=(5, 4))

        def chosen(ev):
            if self._syncing or ev.new is None:
                return
            vals = list(getattr(ex, name))
            if vals[i] != ev.new:
                vals[i] = ev.new
                setattr(ex, name, vals)
        w.param.watch(chosen, "value")
        self._arch_select[(name, i)] = w
        return w

    def _sigma_followed(self, event):
        # both values: a slider released on the value a link set must still send it
        with param.edit_constant(self._sigma):
            self._sigma.param.update(value=event.new, value_throttled=event.new)

    def _arch_followed(self, *_):
        ex = self.explorer
        self._syncing = True
        try:
            for (name, i), w in self._arch_select.items():
                vals = getattr(ex, name)
                if i < len(vals) and w.value != vals[i]:
                    w.value = vals[i]
        finally:
            self._syncing = False

    def _gu_frame(self) -> pd.DataFrame:
        ex = self.explorer
        layers = [n for n in ex.present_layers() if n in ex.g_u]
        return pd.DataFrame({"layer": [short_layer_name(n) for n in layers],
                             "g_u / g_u^d": [round(float(ex.g_u[n]), 2) for n in layers]})

    def _gu_followed(self, *_):
        df = self._gu_frame()
        if not df.equals(self._table.value):
            self._table.value = df

    def _edited(self, event) -> None:
        ex = self.explorer
        layers = [n for n in ex.present_layers() if n in ex.g_u]
        layer = layers[event.row]
        try:
            value = float(event.value)
            if not np.isfinite(value) or not (ex.layout.gu_low <= value <= ex.layout.gu_high):
                raise ValueError
        except (TypeError, ValueError):
            allowed = range_words(ex.layout.gu_low, ex.layout.gu_high)
            self._gu_error.object = (f"g_u / g_u^d of {short_layer_name(layer)} must be {allowed} "
                                     f"(eq 6.2) — still using {_fmt_gu(ex.g_u[layer])}")
            self._gu_error.visible = True
            self._table.value = self._gu_frame()
            return
        self._gu_error.visible = False
        ex.set_g_u(layer, round(value, 2))

    def _set_all(self, event) -> None:
        if event.new is not None:
            self._gu_error.visible = False
            self.explorer.g_u = {n: float(event.new) for n in self.explorer.present_layers()}

    def _axis_options(self) -> dict[str, str]:
        return {_axis_label(v): v for v in self.explorer.front_axes()}

    def _axis_chosen(self, which: str, name) -> None:
        if self._syncing or name is None or name == getattr(self.explorer, f"front_{which}"):
            return
        self.explorer.set_front_axis(which, name)

    def _axes_followed(self, *_) -> None:
        ex = self.explorer
        self._syncing = True
        try:
            options = self._axis_options()
            for which, w in self._axis_select.items():
                value = getattr(ex, f"front_{which}")
                if w.options != options:
                    w.options = options
                if value in options.values() and w.value != value:
                    w.value = value
        finally:
            self._syncing = False

    def _export_ready(self, event) -> None:
        path = event.new
        if path:
            self.export_download.param.update(file=path, filename=Path(path).name, visible=True)
        else:
            self.export_download.visible = False

    @param.depends("explorer.export_status")
    def _export_status(self):
        text = self.explorer.export_status
        return pn.pane.Markdown(f"**Export:** {text}" if text else "", sizing_mode="stretch_width",
                                css_classes=["export-status"])

    def _edit_point(self, *_):
        self.explorer.use_point()
        self.tab = "subnet"

    @param.depends("tab", watch=True)
    def _tab_to_widget(self):
        i = TABS.index(self.tab)
        if self._tabs.active != i:
            self._tabs.active = i

    # ---------------------------------------------------------------- views
    @param.depends("explorer.current")
    def _current(self):
        ds = self.explorer.current
        if ds is None:
            return spinner("programming the subnet on crossbars…")
        power = pn.indicators.Number(label="crossbar power per inference (arbitrary units)", value=float(ds.power[0]),
                                     format="{value:,.0f}" if float(ds.power[0]) >= 100 else "{value:.4g}",
                                     font_size="24pt", title_size="11pt")
        acc = pn.indicators.Number(label="accuracy (mean over draws)", value=float(ds.accuracy.mean()),
                                   format="{value:.4f}", font_size="24pt", title_size="11pt")
        return pn.Column(pn.FlexBox(power, acc), hv_pane(accuracy_histogram(ds.accuracy.values.ravel())),
                         hv_pane(layer_power_bars(ds.layer_power)), sizing_mode="stretch_width")

    @param.depends("explorer.analytic")
    def _analytic(self):
        ds = self.explorer.analytic
        text = ("*instant analytic estimate: computing…*" if ds is None else
                f"**Instant analytic estimate** (first order in the noise, {ds.sizes['sample']} test inputs): "
                f"output MSE {float(ds.mse):.4g}, expected power {float(ds.power):,.0f} (arbitrary units); "
                f"the Monte-Carlo evaluation below refines it.")
        return pn.pane.Markdown(text, sizing_mode="stretch_width", css_classes=["analytic-readout"])

    @param.depends("explorer.nas", "explorer.selected", "explorer.live", "explorer.front_x", "explorer.front_y")
    def _fronts(self):
        ex = self.explorer
        ds = ex.nas
        if ds is None:
            return spinner("loading the search results…")
        x, y = ex.shown_axes()
        plot = pareto_plot(ds, ex.shown_point(), ex.live, x=x, y=y)
        _, fx, _, fy = pareto_axes(ds, x, y)
        tap = hv.streams.Tap(source=plot, x=None, y=None)
        tap.add_subscriber(lambda x, y: ex.pick(None if x is None else x / fx, None if y is None else y / fy))
        r2 = dict(zip(ds.target.values, ds.r2.values))
        hv_text = ", ".join(f"{s} {float(v):.3f}" for s, v in ex.hypervolumes().items())
        costs = [SHORT_NAMES[v] for v in (x, y) if v != "accuracy"]
        pair = "" if (x, y) == ("power", "accuracy") else f" on {AXIS_NAMES[y]} against {AXIS_NAMES[x]}"
        a = ds.attrs
        info = (f"Hypervolume{pair} (the area a front dominates, larger is better; all on one "
                f"{' and one '.join(costs)} scale): {hv_text}. "
                f"The estimator explains {r2['accuracy']:.0%} of the accuracy and {r2['power']:.0%} of the power "
                f"variation of networks it never saw (held-out R²). Supernet accuracy: largest subnet "
                f"{a['supernet_accuracy_largest']:.3f}, smallest {a['supernet_accuracy_smallest']:.3f}. "
                f"The estimator was trained on k = {a['k']} architectures × k_g = {a['k_g']} g_u settings, measured on "
                f"n_a = {a['n_a']} minibatches (accuracy, averaged over d_a = {a.get('d_a', 1)} noise draws) and "
                f"n_p = {a['n_p']} (power); NSGA-II ran a population of "
                f"{a['pop_size']} for {a['n_gen']} generations (thesis: 1024 × 500).")
        return pn.Column(hv_pane(plot), downloads(lambda: plot, lambda: ds, lambda: ["crossbar", "fig6.2"]),
                         pn.pane.Markdown(info), sizing_mode="stretch_width")

    @param.depends("explorer.details", "explorer.selected")
    def _details(self):
        ex = self.explorer
        if ex.shown_point() is None:
            return pn.pane.Markdown("*Click a point of the fronts to see its network.*")
        ds = ex.details
        strategy, point = ex.selected
        nas = ex.nas.sel(strategy=strategy).isel(point=point)
        extra = ""
        for v, unit in (("energy_j", "J"), ("latency_s", "s")):
            if v in nas:
                factor, text = si_unit(nas[v].values, unit)
                extra += f", {SHORT_NAMES[v]} {float(nas[v]) * factor:.4g} {text}"
        head = pn.pane.Markdown(f"**{strategy}, point {point}**: accuracy {float(nas.accuracy):.4f} ± "
                                f"{float(nas.accuracy_std):.4f}, power {float(nas.power):,.0f} (arbitrary units)"
                                f"{extra}")
        if ds is None:
            return pn.Column(head, spinner("simulating this network…"), sizing_mode="stretch_width")
        adc = ("" if "adc_bits" not in ds else
               f"; ADC bits per layer (network order) **{', '.join(str(int(b)) for b in ds.adc_bits.values)}** "
               "(*Edit this network* loads its architecture and g_u; the editor reads through ideal converters)")
        arch = pn.pane.Markdown(
            f"blocks per stage D **{ds.attrs['depth']}**, width (stem, stages) **{ds.attrs['width']}**, "
            f"expand per block {ds.attrs['expand']}{adc}"
        )
        return pn.Column(
            head,
            arch,
            pn.FlexBox(self._use, self._export, self.export_download, flex_wrap="wrap", sizing_mode="stretch_width"),
            self._export_status,
            hv_pane(g_u_bars(ds.g_u_rel)),
            hv_pane(layer_power_bars(ds.layer_power)),
            hv_pane(robustness_curve(ds)),
            sizing_mode="stretch_width",
        )

    @param.depends("explorer.selection")
    def _selection(self):
        ds = self.explorer.selection
        if ds is None:
            return spinner("loading the n_a / n_p selection…")
        return hv_pane(selection_plot(ds))

    @param.depends("explorer.live")
    def _live(self):
        ex = self.explorer
        live = ex.live
        if not live:
            return pn.pane.Markdown("*The estimated front appears here generation by generation.*")
        a, p = np.asarray(live["accuracy"]), np.asarray(live["power"])
        o = np.argsort(p)
        pd_ = hv.Dimension("power", label="estimated crossbar power (arbitrary units)")
        ad = hv.Dimension("accuracy", label="estimated accuracy")
        plot = (hv.Curve((p[o], a[o]), pd_, ad).opts(interpolation="steps-post", line_width=2) *
                hv.Scatter((p[o], a[o]), pd_, ad).opts(size=6)).opts(
            responsive=True, min_height=320, show_grid=True, xformatter=number_formatter(p),
            title=f"Estimated front, generation {live['generation']} ({len(a)} points)")
        return hv_pane(plot)

    @param.depends("explorer.search_status")
    def _search_status(self):
        text = self.explorer.search_status or "no search run in this session yet"
        return pn.pane.Markdown(f"**Search:** {text}", sizing_mode="stretch_width")

    @param.depends("explorer.late_refusal")
    def _late(self):
        msg = self.explorer.late_refusal
        return pn.pane.Alert(msg, alert_type="warning", visible=bool(msg), sizing_mode="stretch_width")

    def _build_tabs(self) -> pn.Tabs:
        editor = pn.Column(
            "#### Subnet", self._arch, self._sigma, self._draws,
            "#### g_u / g_u^d per layer",
            pn.pane.Markdown("<small>Each layer's largest conductance g_u as a multiple of its default g_u^d = ‖W‖∞ "
                             "(its largest absolute weight); between 0.5 and 1.5.</small>", margin=(0, 10)),
            self._all, self._gu_error, self._table, width=330, margin=(0, 10, 0, 0))
        right = pn.Column(self._analytic, self._current, sizing_mode="stretch_width", min_width=300,
                          styles={"flex": "1 1 380px"})
        subnet = pn.Column(pn.FlexBox(editor, right, flex_wrap="wrap", sizing_mode="stretch_width"),
                           pn.pane.Markdown(TEXT["subnet"]), sizing_mode="stretch_width")
        axes = pn.FlexBox(self._axis_select["x"], self._axis_select["y"], flex_wrap="wrap",
                          sizing_mode="stretch_width")
        fronts = pn.Column(pn.pane.Markdown(TEXT["fronts"]), axes, self._fronts, self._details, self._selection,
                           sizing_mode="stretch_width")
        search = pn.Column(pn.pane.Markdown(TEXT["search"]),
                           pn.FlexBox(pn.Column(pn.pane.Markdown("search strategy", margin=(0, 10)), self._strategy,
                                                width=220, margin=(5, 5)),
                                      self._pop, self._gen, self._run, self._cancel, flex_wrap="wrap",
                                      align_items="flex-start", sizing_mode="stretch_width"),
                           self._search_status, self._progress, self._live, sizing_mode="stretch_width")
        tabs = pn.Tabs(("Your subnet", subnet), ("Pareto fronts", fronts), ("Search", search), dynamic=True,
                       active=TABS.index(self.tab), sizing_mode="stretch_width")
        tabs.param.watch(lambda e: setattr(self, "tab", TABS[e.new]), "active")
        return tabs

    def __panel__(self):
        return pn.Column(self._status, self._late, self._tabs, about_fold(regenerate_footer(REGENERATE)),
                         sizing_mode="stretch_width")
