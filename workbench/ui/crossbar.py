"""The "Crossbar power & search" page: a subnet of the supernet with one g_u per layer and its live
power and accuracy, the power–accuracy Pareto fronts of NAS strategies M1/M2/M3 with click-through
details, the n_a/n_p selection, and NSGA-II searches streamed from the page (thesis ch. 6)."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import param

from ..plots.crossbar import (accuracy_histogram, g_u_bars, layer_power_bars, pareto_plot, robustness_curve,
                              selection_plot)
from .base import ExplorerPage, hv_pane, regenerate_footer, spinner
from .crossbar_explorer import REGENERATE, CrossbarExplorer

TEXT = {
    "subnet": ("**Your subnet on crossbars (eq 3.33–3.44).** Pick the depth, width and expand ratio of each stage of the "
               "supernet, then the conductance scale g_u of each layer as a multiple of its default g_u^d = ‖W‖∞ "
               "(eq 6.1–6.2): a smaller g_u programs smaller conductances (less power) that the additive device noise "
               "perturbs relatively more. Power and accuracy are Monte-Carlo draws of the noise; batch norm is "
               "recalibrated and folded into the crossbars."),
    "fronts": ("**Pareto fronts (Fig 6.2).** The re-simulated power and accuracy of the networks found by NSGA-II on the "
               "estimator: M1 searches the architecture with g_u = g_u^d, M2 searches architecture and g_u jointly, M3 "
               "rescales M1's g_u by 10 factors in [0.9, 1.1]; grey dots are the collected states as the estimator saw "
               "them (n_a / n_p minibatches). Click a point for its network, g_u, power per layer and robustness."),
    "search": ("**Run a search.** NSGA-II (pymoo) on the shipped estimator; the estimated front streams in generation by "
               "generation. Estimated fronts are optimistic: the shipped fronts above were re-simulated in full."),
}


class CrossbarPage(ExplorerPage):
    """Crossbar power and the joint architecture + g_u search."""

    explorer = param.ClassSelector(class_=CrossbarExplorer)
    explorer_class = CrossbarExplorer
    title = "Crossbar power & search"

    def __init__(self, **params):
        super().__init__(**params)
        ex = self.explorer
        self._arch = pn.Column(width=300)
        self._sliders = pn.Column(sizing_mode="stretch_width", scroll=True, max_height=520)
        self._slider_of: dict[str, pn.widgets.FloatSlider] = {}
        self._gu_error = pn.pane.Alert("", alert_type="warning", visible=False)
        self._sigma = pn.widgets.FloatSlider(label="device noise ε^v (µS)", start=0.0, end=0.1, step=0.005, value=ex.sigma,
                                             format="0.000")
        self._sigma.param.watch(lambda e: setattr(ex, "sigma", e.new), "value_throttled")
        self._strategy = pn.widgets.RadioButtonGroup.from_param(ex.param.strategy, label="strategy")
        self._pop = pn.widgets.IntInput.from_param(ex.param.pop_size, label="population", width=110)
        self._gen = pn.widgets.IntInput.from_param(ex.param.n_gen, label="generations", width=110)
        self._run_controls("search", "Run NSGA-II")
        self._use = pn.widgets.Button(label="Edit this network", color="primary")
        self._use.on_click(lambda _: ex.use_point())
        ex.param.watch(self._rebuild, ["g_u"])
        self._start()

    # ---------------------------------------------------------------- widgets that follow the supernet
    def _arch_widgets(self):
        ex = self.explorer
        sp = ex.space
        rows = []
        for s in range(len(ex.depth)):
            d = pn.widgets.Select(label=f"stage {s + 1}: blocks D", options=list(sp.depth_choices), value=ex.depth[s], width=90)
            w = pn.widgets.Select(label="width", options=list(sp.width_choices), value=ex.width[s + 1], width=90)
            e = pn.widgets.Select(label="expand", options=list(sp.expand_choices), value=ex.expand[s], width=90)
            d.param.watch(lambda ev, s=s: setattr(ex, "depth", [*ex.depth[:s], int(ev.new), *ex.depth[s + 1:]]), "value")
            w.param.watch(lambda ev, s=s: setattr(ex, "width", [*ex.width[:s + 1], float(ev.new), *ex.width[s + 2:]]), "value")
            e.param.watch(lambda ev, s=s: setattr(ex, "expand", [*ex.expand[:s], float(ev.new), *ex.expand[s + 1:]]), "value")
            rows.append(pn.Row(d, w, e))
        stem = pn.widgets.Select(label="stem width", options=list(sp.width_choices), value=ex.width[0], width=90)
        stem.param.watch(lambda ev: setattr(ex, "width", [float(ev.new), *ex.width[1:]]), "value")
        return [stem, *rows]

    def _rebuild(self, *_):
        """One g_u slider per layer of the current subnet (rebuilt when its layers change)."""
        ex = self.explorer
        if ex.space is not None and not self._arch.objects:
            self._arch.objects = self._arch_widgets()
        layers = list(ex.g_u)
        if list(self._slider_of) != layers:
            self._slider_of = {}
            for name in layers:
                sl = pn.widgets.FloatSlider(label=f"g_u {name}", start=0.5, end=1.5, step=0.05, value=ex.g_u[name])
                sl.param.watch(lambda ev, name=name: self._moved(name, ev.new), "value_throttled")
                self._slider_of[name] = sl
            self._sliders.objects = list(self._slider_of.values())
        else:
            for name, v in ex.g_u.items():
                if abs(self._slider_of[name].value - v) > 1e-12:
                    self._slider_of[name].value = v

    def _moved(self, layer: str, value: float) -> None:
        try:
            self.explorer.set_g_u(layer, value)
        except ValueError as exc:
            self._gu_error.object, self._gu_error.visible = str(exc), True
            return
        self._gu_error.visible = False

    # ---------------------------------------------------------------- views
    @param.depends("explorer.current")
    def _current(self):
        ds = self.explorer.current
        if ds is None:
            return spinner("programming the subnet on crossbars…")
        power = pn.indicators.Number(label="crossbar power (a.u. per inference)", value=float(ds.power[0]),
                                     format="{value:.5g}", font_size="26pt", title_size="11pt")
        acc = pn.indicators.Number(label="accuracy (mean over draws)", value=float(ds.accuracy.mean()),
                                   format="{value:.4f}", font_size="26pt", title_size="11pt")
        return pn.Column(pn.Row(power, acc), hv_pane(accuracy_histogram(ds.accuracy.values.ravel())),
                         hv_pane(layer_power_bars(ds.layer_power)), sizing_mode="stretch_width")

    @param.depends("explorer.nas", "explorer.selected", "explorer.live")
    def _fronts(self):
        ex = self.explorer
        ds = ex.nas
        if ds is None:
            return spinner("loading the NAS study…")
        plot = pareto_plot(ds, ex.selected, ex.live)
        tap = hv.streams.Tap(source=plot, x=None, y=None)
        tap.add_subscriber(lambda x, y: ex.pick(x, y))
        r2 = dict(zip(ds.target.values, ds.r2.values))
        hv_text = ", ".join(f"{s} {float(v):.3f}" for s, v in zip(ds.strategy.values, ds.hypervolume.values))
        info = (f"Hypervolume (re-simulated, shared power scale): {hv_text}. "
                f"Estimator held-out R²: accuracy {r2['accuracy']:.2f}, power {r2['power']:.2f}. Supernet: largest "
                f"subnet {ds.attrs['supernet_accuracy_largest']:.3f}, smallest {ds.attrs['supernet_accuracy_smallest']:.3f}. "
                f"k = {ds.attrs['k']} × k_g = {ds.attrs['k_g']} states on n_a = {ds.attrs['n_a']}, n_p = {ds.attrs['n_p']} "
                f"minibatches; NSGA-II {ds.attrs['pop_size']} × {ds.attrs['n_gen']} (thesis 1024 × 500).")
        return pn.Column(hv_pane(plot), pn.pane.Markdown(info), sizing_mode="stretch_width")

    @param.depends("explorer.details", "explorer.selected")
    def _details(self):
        ex = self.explorer
        if ex.selected is None:
            return pn.pane.Markdown("*Click a point of the fronts to see its network.*")
        ds = ex.details
        strategy, point = ex.selected
        nas = ex.nas.sel(strategy=strategy).isel(point=point)
        head = pn.pane.Markdown(f"**{strategy}, point {point}**: accuracy {float(nas.accuracy):.4f} ± "
                                f"{float(nas.accuracy_std):.4f}, power {float(nas.power):.5g} a.u.")
        if ds is None:
            return pn.Column(head, spinner("simulating this network…"), sizing_mode="stretch_width")
        arch = pn.pane.Markdown(f"depth per stage **{ds.attrs['depth']}**, width (stem, stages) **{ds.attrs['width']}**, "
                                f"expand per block {ds.attrs['expand']}")
        return pn.Column(head, arch, self._use, hv_pane(g_u_bars(ds.g_u_rel)), hv_pane(layer_power_bars(ds.layer_power)),
                         hv_pane(robustness_curve(ds)), sizing_mode="stretch_width")

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
        plot = (hv.Curve((p[o], a[o]), "power", "accuracy").opts(interpolation="steps-post", line_width=2) *
                hv.Scatter((p[o], a[o]), "power", "accuracy").opts(size=6)).opts(
            responsive=True, min_height=320, show_grid=True,
            title=f"Estimated front, generation {live['generation']} ({len(a)} points)")
        return hv_pane(plot)

    def __panel__(self):
        ex = self.explorer
        editor = pn.Column("#### Subnet", self._arch, self._sigma, "#### g_u / g_u^d per layer", self._gu_error,
                           self._sliders, width=340)
        tabs = pn.Tabs(
            ("Your subnet", pn.Column(pn.Row(editor, self._current, sizing_mode="stretch_width"),
                                      pn.pane.Markdown(TEXT["subnet"]), sizing_mode="stretch_width")),
            ("Pareto fronts", pn.Column(pn.Row(self._fronts, self._details, sizing_mode="stretch_width"),
                                        pn.pane.Markdown(TEXT["fronts"]), self._selection, sizing_mode="stretch_width")),
            ("Search", pn.Column(pn.Row(self._strategy, self._pop, self._gen, self._run, self._cancel), self._progress,
                                 self._live, pn.pane.Markdown(TEXT["search"]), sizing_mode="stretch_width")),
            dynamic=True, sizing_mode="stretch_width")
        foot = regenerate_footer(REGENERATE)
        if ex.space is not None:
            self._rebuild()
        return pn.Column(self._status, tabs, foot, sizing_mode="stretch_width")
