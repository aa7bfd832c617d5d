"""The "Sweeps" page: run a sweep spec's missing cells on a Dask cluster and watch them land in
the store the other pages read (``workbench sweep SPEC --workers N`` from the browser)."""

from __future__ import annotations

import pandas as pd
import panel as pn
import param

from ..plots.sweep import STATE_LABELS, cell_timeline, state_bars
from .base import ExplorerPage, about_fold, downloads, hv_pane, number_field
from .sweep_explorer import SweepExplorer

TEXT = {
    "intro": ("**Sweeps on a cluster.** A sweep spec (a JSON file in `specs/`) names experiments and the settings "
              "they run over. It breaks into *cells*: a cell is one piece of work whose result the store keeps — one "
              "trained network, one Monte-Carlo point (the accuracy at one noise level over several random draws) or "
              "one assembled experiment. *Run* sends the cells the store lacks to a Dask cluster: worker processes "
              "started on this machine, or a running Dask scheduler at an address (its workers need this store's "
              "folder at the same path). Training cells run before the points that need them; a cell that fails is "
              "tried again; a worker that dies is replaced and its cells run elsewhere; finished cells stay in the "
              "store whatever happens next."),
    "counts": "**Cells of this spec by state** — *in the store*: read from the results store; *to compute*: not "
              "there yet; *computed*: just computed by a run here; *failed*: raised on every try; *not run*: "
              "needs a cell that failed.",
    "timeline": ("**Where the time went.** One bar per cell computed here, one row per worker process, from its start "
                 "to its end in seconds. With N workers the ideal wall time is the sum of the cell times ÷ N; the "
                 "summary gives the measured ratio (dependencies, the scheduler and process start-up make it "
                 "larger than 1)."),
    "about": ("The same from a terminal: `workbench sweep specs/NAME.json --workers N`, or `--scheduler ADDRESS` "
              "for a running Dask scheduler. A link to this page carries the spec's name, the chosen experiments, "
              "the number of workers and the retries; an edited spec and a scheduler address stay on the page "
              "where they were typed."),
}

class SweepPage(ExplorerPage):
    """Edit or pick a sweep spec, see which of its cells are stored, compute the rest on Dask."""

    explorer_class = SweepExplorer
    title = "Sweeps"

    def __init__(self, **params):
        super().__init__(**params)
        ex = self.explorer
        self._spec = pn.widgets.Select.from_param(ex.param.spec_name, label="sweep spec", sizing_mode="stretch_width")
        self._text = pn.widgets.TextAreaInput.from_param(ex.param.spec_text, label="spec (JSON, editable)", height=260,
                                                         sizing_mode="stretch_width")
        self._experiments = pn.widgets.MultiChoice.from_param(ex.param.experiments, label="experiments (none: all)",
                                                              sizing_mode="stretch_width")
        self._workers = number_field(ex, "workers", "worker processes on this machine")
        self._scheduler = self._scheduler_widget()
        self._retries = number_field(ex, "retries", "retries per cell")
        self._check = pn.widgets.Button.from_param(ex.param.check, label="Look in the store again", color="light")
        self._run_controls("run", "Run the missing cells")
        if not ex.quota.settings.sweeps:
            self._run.name = "Sweeps are off on this server"
            self._running()
        #: the page's settings as URL keys (the workbench writes and applies them)
        self.url = ex.url
        self._start()

    def _running(self, *_) -> None:
        super()._running()
        if not self.explorer.quota.settings.sweeps:
            self._run.disabled = True

    def _scheduler_widget(self) -> pn.widgets.Widget:
        """A typed address on a personal server; on a shared one (or where the operator lists
        schedulers) a choice among the operator's schedulers, never a typed address."""
        ex, settings = self.explorer, self.explorer.quota.settings
        if not (settings.shared or settings.schedulers):
            return pn.widgets.TextInput.from_param(ex.param.scheduler, label="or a Dask scheduler's address",
                                                   placeholder="tcp://127.0.0.1:8786", sizing_mode="stretch_width")
        options = {"none: worker processes on this machine": "", **{a: a for a in settings.schedulers}}
        select = pn.widgets.Select(name="or one of this server's Dask schedulers", options=options,
                                   value=ex.scheduler if ex.scheduler in options.values() else "",
                                   disabled=len(options) == 1, sizing_mode="stretch_width")
        select.param.watch(lambda e: setattr(ex, "scheduler", e.new), "value")
        ex.param.watch(lambda e: setattr(select, "value", e.new) if e.new in options.values() else None, "scheduler")
        return select

    @param.depends("explorer.status", "explorer.problem")
    def _status(self):
        # the explorer's ``error`` keeps the full report (exception classes, for the log and the
        # tests); the page shows ``problem``, the same failure in words
        ex = self.explorer
        items = [pn.pane.Markdown(f"**Status:** {ex.status or 'ready'}")]
        if ex.problem:
            items.append(pn.pane.Alert(f"**Error:** {ex.problem}", alert_type="danger"))
        return pn.Column(*items, sizing_mode="stretch_width")

    @param.depends("explorer.cells")
    def _counts(self):
        counts = self.explorer.counts()
        if not counts:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "listing the spec's cells…")
        nums = [pn.indicators.Number(name=STATE_LABELS[k], value=v, format="{value:d}", font_size="22pt",
                                     title_size="10pt", margin=(0, 12)) for k, v in counts.items()]
        return pn.Column(pn.pane.Markdown(TEXT["counts"]), pn.FlexBox(*nums), sizing_mode="stretch_width")

    @param.depends("explorer.cells")
    def _timeline(self):
        ds = self.explorer.cells
        if ds is None:
            return pn.pane.Markdown("")
        # the two plots side by side where there is room, one above the other where there is not
        timeline = cell_timeline(ds)
        return pn.FlexBox(pn.Column(hv_pane(timeline),
                                    downloads(lambda: timeline, lambda: ds,
                                              lambda: ["sweep", "cells", self.explorer.spec_name]),
                                    min_width=300, styles={"flex": "3 1 420px"}),
                          pn.Column(hv_pane(state_bars(ds)), min_width=260, styles={"flex": "1 1 260px"}),
                          sizing_mode="stretch_width")

    @param.depends("explorer.cells")
    def _table(self):
        ds = self.explorer.cells
        if ds is None or not ds.sizes.get("cell"):
            return pn.pane.Markdown("")
        df = pd.DataFrame({"cell": ds.name.values, "experiment": ds.experiment.values,
                           "state": [STATE_LABELS.get(s, s) for s in ds.state.values], "worker": ds.worker.values,
                           "compute time (s)": ds.seconds.values.round(2), "what went wrong": ds.error.values})
        order = {"failed": 0, "blocked": 1, "done": 2, "missing": 3, "stored": 4}
        df = df.iloc[pd.Series(ds.state.values).map(order).argsort(kind="stable").values]
        return pn.Column("#### Cells", pn.pane.DataFrame(df, index=False, max_rows=200, na_rep="",
                                                            sizing_mode="stretch_width"),
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
                         self._retries, pn.Row(self._run, self._cancel), self._progress, self._check,
                         min_width=260, styles={"flex": "1 1 280px"}, sizing_mode="stretch_width")
        main = pn.Column(pn.pane.Markdown(TEXT["intro"]), self._status, self._counts, self._summary, self._timeline,
                         pn.pane.Markdown(TEXT["timeline"]), self._table, self._text,
                         about_fold(pn.pane.Markdown(TEXT["about"])),
                         min_width=300, styles={"flex": "3 1 460px"}, sizing_mode="stretch_width")
        # the settings beside the results where there is room, above them at 800 px and below
        return pn.FlexBox(side, main, flex_wrap="wrap", align_items="flex-start", sizing_mode="stretch_width")
