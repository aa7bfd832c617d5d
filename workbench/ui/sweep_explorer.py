"""State of the "Sweeps" page: a sweep spec, its cells and a run on a Dask cluster (no Panel here).

The page lists the cells of a spec (one trained network, one Monte-Carlo point, one assembled
experiment each) with whether the store already holds them, then computes the missing ones on a
Dask ``distributed`` cluster — a ``LocalCluster`` of worker processes on this machine, or the
scheduler at an address — through :func:`~workbench.experiments.cluster.run_spec_distributed`,
exactly as ``workbench sweep SPEC --workers N`` / ``--scheduler ADDRESS`` does.  Cells land in
the same store the other pages read.  Finished cells stream in with their worker and times; a
worker that dies is reported (Dask reschedules its cells); cells that fail after their retries
are named, and every other result stays in the store.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import param
import xarray as xr

from ..experiments import Store
from ..experiments.cells import spec_cells
from ..experiments.cluster import SweepError, SweepReport, run_spec_distributed
from ..experiments.sweep import SPEC_DIR, parse_spec
from ..knobs import KnobError
from ..plots.sweep import STATE_COLORS
from .base import BackgroundState, result_param
from .settings import capped_values, path_keys
from .urlstate import PageURL, URLKnob, URLValueError

CUSTOM = "(edited)"
#: cell states, in the order the page counts them (the plots colour them)
STATES = list(STATE_COLORS)


def spec_files() -> dict[str, Path]:
    """The sweep specs shipped in ``specs/``: name -> path."""
    return {p.stem: p for p in sorted(SPEC_DIR.glob("*.json"))}


def cells_dataset(rows: list[dict]) -> xr.Dataset:
    """The cells of a sweep as a Dataset along ``cell`` (state, worker, start/end seconds after the
    sweep started, compute seconds; NaN where a cell has not run)."""
    n = len(rows)

    def col(key, default):
        return [r.get(key, default) for r in rows]
    t0 = min((r["start"] for r in rows if r.get("start") is not None), default=None)
    start = [np.nan if r.get("start") is None else r["start"] - t0 for r in rows]
    end = [np.nan if r.get("end") is None else r["end"] - t0 for r in rows]
    return xr.Dataset(
        {"name": ("cell", np.array(col("name", ""), dtype=object), {"long_name": "cell", "units": ""}),
         "experiment": ("cell", np.array(col("experiment", ""), dtype=object),
                        {"long_name": "experiment", "units": ""}),
         "stage": ("cell", np.array(col("stage", ""), dtype=object), {"long_name": "stage", "units": ""}),
         "state": ("cell", np.array(col("state", "missing"), dtype=object), {"long_name": "state", "units": ""}),
         "worker": ("cell", np.array(col("worker", ""), dtype=object), {"long_name": "Dask worker", "units": ""}),
         "error": ("cell", np.array(col("error", ""), dtype=object), {"long_name": "error", "units": ""}),
         "start": ("cell", np.asarray(start, float), {"long_name": "start after the first cell", "units": "s"}),
         "end": ("cell", np.asarray(end, float), {"long_name": "end after the first cell", "units": "s"}),
         "seconds": ("cell", np.asarray(col("seconds", np.nan), float), {"long_name": "compute time", "units": "s"})},
        coords={"cell": ("cell", np.array(col("id", ""), dtype=object), {"long_name": "cell id", "units": ""})},
        attrs={"cells": n})


#: a failure's exception class -> what it means, for the classes whose own message is not written
#: for the reader (a KnobError's or ValueError's message is, and is shown as it is)
_REASONS = {
    "FileNotFoundError": "a file it needs is missing",
    "MemoryError": "it ran out of memory",
    "KilledWorker": "the worker process running it died each time it was tried",
    "OSError": "the Dask cluster could not be reached",
    "TimeoutError": "the Dask cluster did not answer in time",
    "CommClosedError": "the connection to the Dask cluster was lost",
}


def plain_reason(message: str) -> str:
    """A failure (``"ExceptionClass: text"``, as the task runner and Dask report it) in words: the
    text alone where it is written for the reader (our own checks raise KnobError/ValueError with a
    plain message), the file named where one is missing, a sentence for a lost cluster, and no
    internal detail otherwise (the server log has the traceback)."""
    message = (message or "").strip()
    if not message:
        return ""
    m = re.match(r"^([A-Za-z_][\w.]*(?:Error|Exception|Worker|Interrupt)): ?(.*)$", message, re.S)
    if m is None:
        return message
    kind, text = m.group(1).rsplit(".", 1)[-1], m.group(2).strip()
    text = re.sub(r"^\[Errno \d+\] ", "", text)
    if kind in ("KnobError", "ValueError", "SweepError", "URLValueError"):
        return text
    if kind == "FileNotFoundError":
        missing = re.search(r"No such file or directory: '([^']+)'", text)
        return f"{_REASONS[kind]}: {missing.group(1) if missing else text}"
    if kind in _REASONS:
        return _REASONS[kind]
    return "an internal error stopped it (the server log has the details)"


def _spec_choice(specs: dict[str, Path]):
    def parse(text: str) -> str:
        if text == CUSTOM:
            raise URLValueError("an edited spec cannot travel in a link: its text stays on the page where it was "
                                "edited; a link can name one of the shipped specs (" + ", ".join(specs) + ")")
        if text not in specs:
            raise URLValueError("sweep spec must be one of the shipped specs: " + ", ".join(specs))
        return text
    return parse


class SweepExplorer(BackgroundState):
    """A sweep spec, its cells in the store, and a distributed run of the missing ones."""

    job_kinds = ("cells", "sweep")
    cancel_kind = "sweep"

    spec_name = param.Selector(default="dask_demo", objects=[*spec_files(), CUSTOM],
                               doc="sweep spec from specs/ (or the edited text)")
    spec_text = param.String("", doc="the sweep spec as JSON: {\"name\": ..., \"experiments\": {name: params}}")
    experiments = param.ListSelector(default=[], objects=[], doc="experiments of the spec to run (none chosen: all)")
    workers = param.Integer(2, bounds=(1, 64), doc="worker processes of the LocalCluster (when no scheduler is given)")
    scheduler = param.String("", doc="address of a running Dask scheduler (tcp://host:8786); empty: a LocalCluster")
    retries = param.Integer(2, bounds=(0, 10), doc="retries of a cell that raises")

    check = param.Event(doc="look in the store again")
    run = param.Event(doc="compute the missing cells on the cluster")
    cancel = param.Event(doc="cancel the running sweep (finished cells stay in the store)")

    cells = result_param()
    report = param.ClassSelector(class_=SweepReport, default=None, allow_None=True, precedence=-1,
                                 doc="where and how fast the last sweep ran")
    events = param.List(default=[], precedence=-1, doc="workers lost and joined during the last run")
    summary = param.String("", precedence=-1)
    problem = param.String("", precedence=-1, doc="what went wrong, in words (``error`` keeps the full report)")

    def __init__(self, store: Store | None = None, device: str = "auto", autorun: bool = True, specs=None, **params):
        self._specs = dict(spec_files() if specs is None else specs)
        name = params.pop("spec_name", None)
        super().__init__(**params)
        self.param.spec_name.objects = [*self._specs, CUSTOM]
        with param.parameterized.discard_events(self):
            self.spec_name = name if name is not None else (
                "dask_demo" if "dask_demo" in self._specs else next(iter(self._specs), CUSTOM))
        self.store = store or Store()
        self.device = device
        self.spec: dict | None = None
        self._rows: dict[str, dict] = {}
        if not self.spec_text and self.spec_name in self._specs:
            self.spec_text = self._specs[self.spec_name].read_text()
        #: the settings a link carries; the spec's text never travels in a link (an edited spec reads
        #: ``spec=(edited)``), and a scheduler only when it is one of the operator's list
        self.url = PageURL([
            URLKnob("spec", self, "spec_name", label="sweep spec", parse=_spec_choice(self._specs)),
            URLKnob("experiments", self, "experiments", label="experiments to run"),
            URLKnob("workers", self, "workers", label="worker processes"),
            URLKnob("retries", self, "retries", label="retries per cell"),
            URLKnob("scheduler", self, "scheduler", label="Dask scheduler", parse=self._listed_scheduler,
                    read=lambda: self.scheduler if self.scheduler in self.quota.settings.schedulers else ""),
        ])
        if autorun:
            self.load()

    def _listed_scheduler(self, text: str) -> str:
        """A link names only a scheduler of the operator's list (or none): a link is someone else's
        input, and connecting to a scheduler runs what it sends."""
        listed = self.quota.settings.schedulers
        if text and text not in listed:
            raise URLValueError("a link can name only a Dask scheduler this server's operator lists "
                                f"({', '.join(listed) if listed else 'none is listed'}; WORKBENCH_SCHEDULERS)")
        return text

    @param.depends("scheduler", watch=True)
    def _scheduler_set(self) -> None:
        refusal = self.quota.settings.scheduler_refusal(self.scheduler)
        if refusal is not None:
            self.scheduler = ""
            self.refuse(refusal)
            raise KnobError(refusal)

    # ------------------------------------------------------------------ the spec and its cells
    @param.depends("spec_name", watch=True)
    def _pick(self) -> None:
        if self.spec_name in self._specs:
            self.spec_text = self._specs[self.spec_name].read_text()

    @param.depends("spec_text", watch=True)
    def _edited(self) -> None:
        if self.spec_name in self._specs and self.spec_text != self._specs[self.spec_name].read_text():
            self.spec_name = CUSTOM
        self.load()

    @param.depends("check", watch=True)
    def load(self) -> None:
        """Parse the spec, list its cells and look each one up in the store (in the background:
        the store verifies every file's checksum).  A spec that does not parse is refused with
        its error; the cells of the last good spec stay."""
        if self.runner.running("sweep"):
            self.refuse("a sweep is running: cancel it before changing the spec")
            return
        try:
            spec = parse_spec(self.spec_text, f"sweep spec {self.spec_name!r}")
            paths = path_keys(spec) if self.quota.settings.shared else []
            if paths:
                raise KnobError(f"{', '.join(paths)} names a file on the server: a shared workbench never uses a path "
                                "typed in the browser (WORKBENCH_SHARED=1); remove the key")
            cells = spec_cells(spec)
        except (KnobError, ValueError, TypeError, KeyError) as exc:
            self.param.update(error=str(exc), problem=plain_reason(f"{type(exc).__name__}: {exc}"),
                              status="spec refused — earlier cells kept")
            return
        names = list(spec["experiments"])
        self.param.experiments.objects = names
        self.spec = spec

        def job(cancel):
            return [{"id": c.id, "name": c.name, "experiment": c.experiment, "stage": c.name.split()[0],
                     "state": "stored" if c.present(self.store) else "missing"} for c in cells]

        def done(rows):
            self._rows = {r["id"]: r for r in rows}
            n_missing = sum(r["state"] == "missing" for r in rows)
            return dict(cells=cells_dataset(rows), status=f"{len(rows)} cells: {len(rows) - n_missing} in the store, "
                                                          f"{n_missing} to compute")

        self.launch("cells", job, label=f"looking up {len(cells)} cells in the store…", on_done=done, problem="",
                    experiments=[e for e in self.experiments if e in names])

    def refuse(self, message: str) -> None:
        self._set(error=f"Refused: {message}", problem=message)

    def _fail(self, message: str, **also) -> None:
        super()._fail(message, problem=plain_reason(message), **also)

    def counts(self) -> dict[str, int]:
        ds = self.cells
        if ds is None:
            return {}
        states = list(ds.state.values)
        return {s: states.count(s) for s in STATES if s in states}

    # ------------------------------------------------------------------ a run
    @param.depends("run", watch=True)
    def _run(self) -> None:
        if self.spec is None:
            self.refuse("no valid spec to run")
            return
        if self.runner.running("sweep"):
            return
        spec, only = self.spec, list(self.experiments) or None
        scheduler = self.scheduler.strip() or None
        refusal = self._run_refusal(spec, scheduler)
        if refusal is not None:
            self.refuse(refusal)
            return
        where = scheduler or f"a LocalCluster of {self.workers} worker process{'es' if self.workers > 1 else ''}"
        rows = self._rows
        t_start = time.time()
        retries = self.retries
        words: list[str] = []           # the SweepError of this run, in words (set by ``guarded``)

        def progress(info):
            row = rows.setdefault(info["id"], {"id": info["id"], "name": info["name"], "experiment": info["experiment"],
                                               "stage": info["stage"]})
            if "error" in info:
                row.update(state="failed", error=plain_reason(info["error"]))
            else:
                row.update(state="done", worker=info["worker"], start=info["start"], end=info["end"],
                           seconds=info["seconds"])
            self._set(cells=cells_dataset(list(rows.values())), progress=int(100 * info["cell"] / info["cells"]),
                      status=f"{info['cell']}/{info['cells']} cells · last: {info['name']}"
                             + (f" ({info['seconds']:.1f} s on {info['worker']})" if "seconds" in info
                                else " — failed"))

        def on_event(ev):
            what = "joined the cluster" if ev["event"] == "worker-joined" else (
                "lost — Dask reschedules " + ("the cells it was running: " + ", ".join(ev["cells"]) if ev["cells"]
                                              else "nothing (it was running no cell)"))
            line = f"{ev['time'] - t_start:.1f} s: worker {ev['worker']} {what}"
            self._set(events=[*self.events, line])

        def job(cancel):
            return run_spec_distributed(spec, self.store, scheduler=scheduler, workers=self.workers,
                                        retries=self.retries, only=only, device=self.device, progress=progress,
                                        cancel=cancel,
                                        on_event=on_event)

        def done(out):
            results, report = out
            return dict(report=report, summary=self._summary(results, report),
                        status=("every cell was already in the store: nothing to compute" if not report.submitted
                                else f"done: {report.submitted} cells computed on {report.workers} workers"))

        def failed(message):
            # SweepError: the failed and blocked cells by name; every other cell is in the store
            self._set(running=False, error=message, problem=words[0] if words else plain_reason(message),
                      status="failed — finished cells kept in the store")

        def guarded(cancel):
            try:
                return job(cancel)
            except SweepError as exc:
                for name in exc.blocked:
                    for r in rows.values():
                        if r["name"] == name and r.get("state") != "done":
                            r["state"] = "blocked"
                self._set(cells=cells_dataset(list(rows.values())))
                words.append(self._failure_words(exc, retries))
                raise

        self.launch("sweep", guarded, label=f"starting {where}…", on_done=done, on_error=failed,
                    job_class="sweep", cancelled="cancelled — finished cells kept in the store",
                    cancelling="cancelling: pending cells dropped, running ones stop at their next minibatch…",
                    compute=False, problem="", events=[])

    def _run_refusal(self, spec: dict, scheduler: str | None) -> str | None:
        """Why the operator's settings do not let this run start (None: they do).  Checked again
        here, whatever the setters checked: this is the one place a connection or cluster starts."""
        settings = self.quota.settings
        if scheduler is not None:
            refusal = settings.scheduler_refusal(scheduler)
            if refusal is not None:
                return refusal
        if not settings.sweeps:
            return "this server does not run sweeps from the browser (operator setting WORKBENCH_SWEEPS=0)"
        if scheduler is None:
            refusal = settings.refuse_above("workers", self.workers)
            if refusal is not None:
                return refusal
        paths = path_keys(spec) if settings.shared else []
        if paths:
            return f"{', '.join(paths)} names a file on the server (WORKBENCH_SHARED=1): remove the key"
        over = capped_values(spec, settings)
        if over:
            return "; ".join(over)
        missing = sum(r.get("state") == "missing" for r in self._rows.values())
        if settings.max_sweep_cells is not None and missing > settings.max_sweep_cells:
            return (f"this sweep has {missing} cells to compute: this server runs at most {settings.max_sweep_cells} "
                    f"cells per sweep from the browser (operator setting WORKBENCH_MAX_SWEEP_CELLS="
                    f"{settings.max_sweep_cells}); choose fewer experiments or run it with `workbench sweep`")
        return None

    @staticmethod
    def _failure_words(exc: SweepError, retries: int) -> str:
        tries = f"{retries + 1} tr{'ies' if retries else 'y'}"
        failed = "; ".join(f"{name} ({plain_reason(err)})" for name, err in exc.failed.items())
        text = (f"{len(exc.failed)} cell{'s' if len(exc.failed) != 1 else ''} failed after {tries} each: {failed}.")
        if exc.blocked:
            text += (f" {len(exc.blocked)} cell{'s' if len(exc.blocked) != 1 else ''} that need "
                     f"{'them' if len(exc.failed) != 1 else 'it'} were not run: {', '.join(exc.blocked)}.")
        return text + " Every other cell is in the store."

    @staticmethod
    def _summary(results: dict, r: SweepReport) -> str:
        if not r.submitted:
            return f"{r.cells} cells, all read from the store; experiments: {', '.join(sorted(results))}."
        over = f"{r.overhead:.2f}" if r.overhead else "n/a"
        return (f"{r.submitted} of {r.cells} cells computed ({r.cached} already stored) on {r.workers} "
                f"workers × {r.threads // max(r.workers, 1)} thread(s): wall {r.wall_seconds:.1f} s, "
                f"sum of cell times {r.cell_seconds:.1f} s, ideal (sum ÷ {r.threads}) {r.ideal_seconds:.1f} s, "
                f"overhead wall ÷ ideal **{over}**; cluster start {r.startup_seconds:.1f} s. "
                f"Experiments: {', '.join(sorted(results))}.")


__all__ = ["CUSTOM", "STATES", "SweepExplorer", "cells_dataset", "plain_reason", "spec_files"]
