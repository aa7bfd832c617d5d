"""The "Sweeps" page: run a sweep spec's missing cells on a Dask cluster and watch them land in
the store the other pages read (``workbench sweep SPEC --workers N`` from the browser)."""

from __future__ import annotations

import pandas as pd
import panel as pn
import param

from ..plots.sweep import cell_timeline, state_bars
from .base import ExplorerPage, hv_pane
from .sweep_explorer import SweepExplorer

TEXT = {
    "intro": ("**Sweeps on a cluster.** A sweep spec (JSON) names experiments and their grids; it breaks into *cells* — "
              "one trained network, one Monte-Carlo point, one assembled experiment — each a store entry. *Run* sends the "
              "cells the store lacks to a Dask `distributed` cluster: a `LocalCluster` of worker processes on this "
              "machine, or the scheduler at an address (its workers need this store's folder at the same path). "
              "Training cells run before the points that need them; a cell that raises is retried; a worker that dies "
              "is replaced and its cells rescheduled; finished cells stay in the store whatever happens next. "
              "The same from a terminal: `workbench sweep SPEC --workers N` or `--scheduler ADDRESS`."),
    "timeline": ("**Where the time went.** One bar per computed cell, one row per worker. With N workers the ideal wall "
                 "time is the sum of the cell times ÷ N; the summary gives the measured ratio (dependencies, the "
                 "scheduler and process start-up make it larger than 1)."),
}


class SweepPage(ExplorerPage):
    """Edit or pick a sweep spec, see which of its cells are stored, compute the rest on Dask."""

    explorer = param.ClassSelector(class_=SweepExplorer)
    explorer_class = SweepExplorer
    title = "Sweeps"

    def __init__(self, **params):
        super().__init__(**params)
        ex = self.explorer
        self._spec = pn.widgets.Select.from_param(ex.param.spec_name, label="sweep spec")
        self._text = pn.widgets.TextAreaInput.from_param(ex.param.spec_text, label="spec (JSON, editable)", height=260,
                                                         sizing_mode="stretch_width")
        self._experiments = pn.widgets.MultiChoice.from_param(ex.param.experiments, label="experiments (none: all)")
        self._workers = pn.widgets.IntInput.from_param(ex.param.workers, label="LocalCluster workers")
        self._scheduler = pn.widgets.TextInput.from_param(ex.param.scheduler, label="or a scheduler address",
                                                          placeholder="tcp://127.0.0.1:8786")
        self._retries = pn.widgets.IntInput.from_param(ex.param.retries, label="retries per cell")
        self._check = pn.widgets.Button.from_param(ex.param.check, label="Look in the store again", color="light")
        self._run_controls("run", "Run the missing cells")
        self._start()

    @param.depends("explorer.cells")
    def _counts(self):
        counts = self.explorer.counts()
        if not counts:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "listing the spec's cells…")
        nums = [pn.indicators.Number(label=k, value=v, format="{value:d}", font_size="22pt", title_size="10pt")
                for k, v in counts.items()]
        return pn.Row(*nums, sizing_mode="stretch_width")

    @param.depends("explorer.cells")
    def _timeline(self):
        ds = self.explorer.cells
        if ds is None:
            return pn.pane.Markdown("")
        return pn.Row(hv_pane(cell_timeline(ds)), pn.Column(hv_pane(state_bars(ds)), width=320),
                      sizing_mode="stretch_width")

    @param.depends("explorer.cells")
    def _table(self):
        ds = self.explorer.cells
        if ds is None or not ds.sizes.get("cell"):
            return pn.pane.Markdown("")
        df = pd.DataFrame({"cell": ds.name.values, "experiment": ds.experiment.values, "state": ds.state.values,
                           "worker": ds.worker.values, "seconds": ds.seconds.values.round(2), "error": ds.error.values})
        order = {"failed": 0, "blocked": 1, "done": 2, "missing": 3, "stored": 4}
        df = df.sort_values("state", key=lambda s: s.map(order), kind="stable")
        return pn.Column("#### Cells", pn.pane.DataFrame(df, index=False, max_rows=200, sizing_mode="stretch_width"),
                         scroll=True, max_height=420, sizing_mode="stretch_width")

    @param.depends("explorer.summary", "explorer.events")
    def _summary(self):
        ex = self.explorer
        items = []
        if ex.summary:
            items.append(pn.pane.Markdown(f"**Last run.** {ex.summary}"))
        if ex.events:
            items.append(pn.pane.Alert("**Cluster events.**\n\n" + "\n".join(f"- {e}" for e in ex.events),
                                       alert_type="warning"))
        return pn.Column(*items, sizing_mode="stretch_width")

    def __panel__(self):
        side = pn.Column("### Spec", self._spec, self._experiments, "### Cluster", self._workers, self._scheduler,
                         self._retries, pn.Row(self._run, self._cancel), self._progress, self._check, width=320)
        main = pn.Column(pn.pane.Markdown(TEXT["intro"]), self._status, self._counts, self._summary, self._timeline,
                         pn.pane.Markdown(TEXT["timeline"]), self._table, self._text, sizing_mode="stretch_width")
        return pn.Row(side, main, sizing_mode="stretch_width")
