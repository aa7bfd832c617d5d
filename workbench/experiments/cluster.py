"""Run sweep cells on a Dask ``distributed`` cluster (``workbench sweep SPEC --scheduler ADDRESS``).

The result store is the merge point: every :class:`~.cells.Cell` is a store entry written
atomically under a per-key file lock, so a distributed sweep is

1. list the spec's cells (:func:`~.cells.spec_cells`) and keep the missing ones;
2. submit them (``client.submit`` with ``retries=``, a cell's dependencies passed as futures so a
   training runs before the evaluations that need it) and follow them with
   ``distributed.as_completed`` (a progress callback per finished cell; a cell that still fails
   after its retries is reported by name, the other cells' results are kept); a
   ``threading.Event`` cancels the pending futures and sets a ``distributed.Event`` that running
   cells poll, so a long training stops at its next minibatch;
3. call the ordinary in-process :func:`~.sweep.run_experiment`, which then only reads the cache:
   the Datasets are those an in-process run writes, by construction.

Workers open a :class:`Store` on the same directory as the client: a ``LocalCluster`` on this
machine shares the filesystem; the workers of a remote cluster need the store root mounted at
the same path (a shared filesystem with working ``flock``, e.g. NFSv4 or Lustre) and
``workbench`` installed.  Workers run torch on one intra-op thread (:class:`WorkerSetup`) so
that N single-threaded workers do not oversubscribe N cores.  Nothing is scattered: a cell's
arguments are a few small dicts, and the data it needs (weights, datasets) is read by the worker
from the store and the dataset root.  A worker that dies is replaced by Dask and its cells
rescheduled; a cell that raises is retried ``retries`` times.

Python API::

    results, report = run_spec_distributed(load_spec("specs/sharpness_digits.json"), Store(root),
                                           scheduler="tcp://10.0.0.5:8786")   # or workers=4 locally
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import xarray as xr

from ..knobs import KnobError, check_int
from ..training import Cancelled
from .cells import Cell, missing_cells, spec_cells
from .store import Store

try:                                     # a worker plugin needs distributed; the module imports without it
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:                      # pragma: no cover - distributed is a dependency
    _WorkerPlugin = object


class WorkerSetup(_WorkerPlugin):
    """Worker plugin (registered by :func:`run_cells`): torch on ``torch_threads`` intra-op threads
    in every worker (default 1: a worker runs ``threads_per_worker`` cells at once, each on one
    core, so N single-threaded workers do not oversubscribe N cores)."""

    name = "workbench-worker-setup"

    def __init__(self, torch_threads: int = 1):
        self.torch_threads = torch_threads

    def setup(self, worker):
        import torch
        torch.set_num_threads(self.torch_threads)


_TASK_SETUP = threading.Lock()


def _task_setup(cancel_event) -> None:
    """Before a cell runs in a worker: connect the worker's client (used by ``cancel_event``) and
    make dask's default scheduler "synchronous" in this process.  Inside a task xarray otherwise
    sees the worker's client (which makes itself the default when created) and guards the store's
    in-memory netCDF write (``to_netcdf()`` to bytes) with a ``distributed.Lock`` named after a
    ``BytesIO``, which fails ("Semaphore or Lock ... not known").  Cells compute no dask
    collections, and the store's file lock already serialises the writers of one key."""
    import dask
    from distributed import get_worker
    try:
        get_worker()
    except ValueError:                       # not in a worker (a cell run in this process): leave dask alone
        return
    with _TASK_SETUP:                        # the client is created once, then never flips the setting back
        if cancel_event is not None:
            _ = cancel_event.client          # connects the worker's client
        dask.config.set(scheduler="synchronous")


class _ClusterCancel:
    """``threading.Event``-like view of a ``distributed.Event`` for code that polls ``is_set()``
    every minibatch: asks the scheduler at most every ``interval`` seconds."""

    def __init__(self, event, interval: float = 0.5):
        self.event, self.interval = event, interval
        self._last, self._set = 0.0, False

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self._set and now - self._last >= self.interval:
            self._last = now
            with contextlib.suppress(Exception):       # scheduler gone: the task is being torn down anyway
                self._set = bool(self.event.is_set())
        return self._set


def _warm() -> int:
    """Warm-up task: import what the cells need (torch, xarray, the experiments) and make one torch
    optimizer (its first construction imports ``torch._dynamo``): seconds per process."""
    import os

    import torch
    for mod in ("workbench.experiments.core", "workbench.experiments.sweep", "workbench.experiments.sharpness",
                "workbench.experiments.sram"):
        importlib.import_module(mod)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return os.getpid()


def warm_up(client) -> None:
    """Run :func:`_warm` once on every worker of ``client`` (so cell times exclude imports)."""
    addresses = list(client.scheduler_info()["workers"])
    client.gather([client.submit(_warm, workers=[a], allow_other_workers=False, pure=False,
                                 key=f"workbench-warm-up-{uuid.uuid4().hex[:12]}")
                   for a in addresses])


def _resolve(path: str) -> Callable:
    module, _, qual = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def run_cell(function: str | Callable, kwargs: dict, root: str, read_only: list[str], device: str, cancel_event,
             depends: Sequence = ()) -> dict[str, Any]:
    """The Dask task of one cell (``depends``: the results of the cells it needs, so that it runs
    after them)."""
    fn = _resolve(function) if isinstance(function, str) else function
    _task_setup(cancel_event)
    store = Store(root, read_only=read_only)
    cancel = _ClusterCancel(cancel_event) if cancel_event is not None else None
    start, t0 = time.time(), time.perf_counter()
    fn(**kwargs, store=store, device=device, cancel=cancel)
    seconds = time.perf_counter() - t0
    try:
        from distributed import get_worker
        worker = get_worker().address
    except (ImportError, ValueError):
        worker = "local"
    return {"seconds": seconds, "worker": worker, "start": start, "end": start + seconds}


@dataclass(frozen=True)
class CellsRun:
    """What :func:`run_cells` did: ``done`` (names of the finished cells), ``failed`` (name -> error
    after the retries), ``blocked`` (name -> the failed cell it needed), ``cached`` (cells already
    stored), ``submitted``, ``cell_seconds`` (sum of the cells' own compute times),
    ``wall_seconds`` (submission to the last result), ``cancelled``."""

    done: list[str]
    failed: dict[str, str]
    blocked: dict[str, str]
    cached: int
    submitted: int
    cell_seconds: float = 0.0
    wall_seconds: float = 0.0
    cancelled: bool = False


@dataclass(frozen=True)
class SweepReport:
    """Where and how fast a distributed sweep ran.

    ``scheduler``: the address connected to, ``"LocalCluster"``, or None when every cell was
    stored and no cluster was started; ``workers`` and ``threads`` (cells that can run at once);
    ``cells`` (all), ``cached`` (already in the store), ``submitted``; ``cell_seconds`` (sum of
    the cells' compute times); ``wall_seconds`` (submission to last result); ``startup_seconds``
    (cluster start or connection, and workers importing torch and the experiments);
    ``total_seconds`` (all of it, assembly included).
    """

    scheduler: str | None
    workers: int
    threads: int
    startup_seconds: float
    cells: int
    cached: int
    submitted: int
    cell_seconds: float
    wall_seconds: float
    total_seconds: float

    @property
    def ideal_seconds(self) -> float:
        """``cell_seconds ÷ threads``: the wall time of perfect scaling."""
        return self.cell_seconds / max(self.threads, 1)

    @property
    def overhead(self) -> float | None:
        """``wall_seconds ÷ ideal_seconds`` (1 is perfect scaling; dependencies — training before its
        evaluations — and the scheduler's per-task cost make it larger); None when nothing ran."""
        return self.wall_seconds / self.ideal_seconds if self.ideal_seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The fields and the two derived times, for JSON."""
        return {**asdict(self), "ideal_seconds": self.ideal_seconds, "overhead": self.overhead}


class SweepError(RuntimeError):
    """Cells failed after their retries.  ``failed``: cell name -> error; ``blocked``: cells not run
    because a cell they need failed; ``results``: the experiments that completed (their cells
    are in the store, as are those of every cell that succeeded); ``report``: the run's
    :class:`SweepReport`."""

    def __init__(self, failed: dict[str, str], blocked: dict[str, str], results: dict[str, xr.Dataset],
                 report: SweepReport):
        self.failed, self.blocked, self.results, self.report = failed, blocked, results, report
        lines = [f"{len(failed)} cell(s) failed after their retries: "
                 + "; ".join(f"{name}: {err}" for name, err in failed.items())]
        if blocked:
            lines.append(f"{len(blocked)} cell(s) not run because a cell they need failed: {', '.join(blocked)}")
        super().__init__("\n".join(lines))


def run_cells(cells: Sequence[Cell], store: Store, client, *, device: str = "auto", retries: int = 2,
              progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
              on_event: Callable[[dict], None] | None = None) -> CellsRun:
    """Compute the missing ``cells`` (:func:`~.cells.missing_cells`) on ``client``'s cluster, retrying
    a cell that raises ``retries`` times.

    ``progress`` receives ``{"cell", "cells", "id", "stage", "name", "experiment", "seconds",
    "worker", "start", "end"}`` per finished cell (``"error"`` instead of the times for a failed
    one).  ``on_event`` receives ``{"event": "worker-lost" | "worker-joined", "worker", "time",
    "cells"}`` when the cluster loses a worker (killed, crashed, out of memory: Dask reschedules the
    cells it was running, named in ``"cells"``, up to ``distributed.scheduler.allowed-failures``
    times, then fails them with ``KilledWorker``) or gains one (a nanny's restart, a scaled
    cluster).  These are the scheduler's own ``add-worker`` / ``remove-worker`` events, pushed to
    the client (``Client.subscribe_topic("all")``, so a handler of the caller's own on that topic
    of the same client is replaced for the run), called on the client's event-loop thread.
    Setting ``cancel`` cancels every pending cell and asks the running ones to stop (training
    checks between minibatches); finished cells stay in the store.
    """
    from distributed import Event, as_completed

    client.register_plugin(WorkerSetup(1))
    by_id = {c.id: c for c in cells}
    missing = missing_cells(cells, store)
    cached = len(cells) - len(missing)
    token = uuid.uuid4().hex[:8]
    cancel_event = Event(f"workbench-cancel-{token}", client=client)
    root, ro = str(store.root), [str(p) for p in store.read_only]
    futures: dict[str, Any] = {}
    id_of = {f"{c.kind}-{c.key}-{token}": c.id for c in missing}
    finished = threading.Event()

    def scheduler_event(event):     # the scheduler's "all" topic: keep worker arrivals and departures
        when, msg = event
        action = msg.get("action") if isinstance(msg, dict) else None
        if finished.is_set() or action not in ("add-worker", "remove-worker"):
            return
        running = [by_id[id_of[k]].name for k in msg.get("processing-tasks", ()) if k in id_of]
        try:
            on_event({"event": "worker-joined" if action == "add-worker" else "worker-lost", "worker": msg["worker"],
                      "time": float(when), "cells": sorted(running)})
        except Exception:           # a failing report must not stop the client's event loop
            logging.getLogger(__name__).exception("on_event failed")

    if on_event is not None:
        client.subscribe_topic("all", scheduler_event)
    t0 = time.perf_counter()
    for c in missing:           # dependency order: a cell's dependencies are submitted before it
        deps = [futures[d] for d in c.depends if d in futures]
        futures[c.id] = client.submit(run_cell, c.function, c.kwargs, root, ro, device, cancel_event, deps,
                                      key=f"{c.kind}-{c.key}-{token}", retries=retries, pure=False)
    done, errors, seconds = [], {}, 0.0

    def watch():                # cancellation: stop what is pending, tell the running cells
        while not finished.wait(0.1):
            if cancel is not None and cancel.is_set():
                with contextlib.suppress(Exception):
                    cancel_event.set()
                client.cancel([f for f in futures.values() if not f.done()])
                return

    watcher = threading.Thread(target=watch, name="workbench-sweep-cancel", daemon=True)
    watcher.start()
    try:
        for n, fut in enumerate(as_completed(list(futures.values()), loop=client.loop), start=1):
            cid = id_of[fut.key]
            cell = by_id[cid]
            info = {"cell": n, "cells": len(futures), "id": cid, "stage": cell.name.split()[0], "name": cell.name,
                    "experiment": cell.experiment}
            if fut.status == "finished":
                res = fut.result()
                seconds += res["seconds"]
                done.append(cid)
                info.update(res)
            elif fut.status == "error":
                exc = fut.exception()
                errors[cid] = f"{type(exc).__name__}: {exc}"
                info["error"] = errors[cid]
            if progress is not None and fut.status != "cancelled":
                progress(info)
    finally:
        finished.set()
        watcher.join()
        if on_event is not None:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic("all")
        wall = time.perf_counter() - t0
        client.cancel([f for f in futures.values() if not f.done()])
        futures.clear()         # (a cancelled sweep's event stays set on the scheduler for its running cells)

    def failed_dep(cid: str) -> str | None:      # the failed cell, among a cell's dependencies, that blocked it
        for d in by_id[cid].depends:
            if d in errors:
                return failed_dep(d) or d
        return None

    failed, blocked = {}, {}
    for cid, err in errors.items():
        dep = failed_dep(cid)
        if dep is None:
            failed[by_id[cid].name] = err
        else:
            blocked[by_id[cid].name] = by_id[dep].name
    return CellsRun([by_id[c].name for c in done], failed, blocked, cached, len(missing), seconds, wall,
                    bool(cancel is not None and cancel.is_set()))


@contextlib.contextmanager
def connect(scheduler=None, *, workers: int = 2, threads_per_worker: int = 1) -> Iterator[tuple[Any, float]]:
    """A Dask client and the seconds it took to start: ``scheduler`` is a ``distributed.Client``
    (used as is), an address (``tcp://host:8786``, connected to), or None (a ``LocalCluster`` of
    ``workers`` processes on loopback, no dashboard, closed on exit).  A client made here is not
    made dask's default (this process's in-process store writes stay off the cluster)."""
    from distributed import Client, LocalCluster
    t0 = time.perf_counter()
    if isinstance(scheduler, Client):
        yield scheduler, 0.0
        return
    if scheduler is None:
        workers = check_int("workers", workers, 1, 1024)
        threads_per_worker = check_int("threads_per_worker", threads_per_worker, 1, 256)
        with LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster, set_as_default=False) as client:
            yield client, time.perf_counter() - t0
        return
    try:
        client = Client(str(scheduler), timeout="30s", set_as_default=False)
    except OSError as exc:
        raise KnobError(f"scheduler={scheduler!r}: cannot reach the Dask scheduler ({exc})") from None
    with client:
        yield client, time.perf_counter() - t0


def run_spec_distributed(spec: dict[str, Any], store: Store | None = None, *, scheduler=None, workers: int = 2,
                         threads_per_worker: int = 1, retries: int = 2, only: list[str] | None = None,
                         device: str = "auto", progress: Callable[[dict], None] | None = None,
                         cancel: threading.Event | None = None, on_event: Callable[[dict], None] | None = None
                         ) -> tuple[dict[str, xr.Dataset], SweepReport]:
    """:func:`~.sweep.run_spec` on a Dask cluster: ``(results, report)``.

    ``results`` are the Datasets :func:`~.sweep.run_spec` returns (read back from the store after
    the cluster computed every missing cell); ``report`` is a :class:`SweepReport`.

    ``progress`` and ``on_event`` are :func:`run_cells`' (finished cells; workers lost and joined).
    Raises :class:`SweepError` naming the cells that failed after ``retries`` retries (every other
    cell is in the store; ``.results`` has the experiments that completed), and
    :class:`~workbench.training.Cancelled` when ``cancel`` was set.  When every needed cell is
    already stored no cluster is started.  ``scheduler=None`` starts a ``LocalCluster`` of worker
    processes: a script calling this needs the usual ``if __name__ == "__main__":`` guard.
    """
    from .sweep import EXPERIMENTS
    t_all = time.perf_counter()
    unknown = sorted(set(spec.get("experiments", {})) - set(EXPERIMENTS))
    if unknown:
        raise KnobError(f"experiments must be among {sorted(EXPERIMENTS)}; got {unknown}")
    retries = check_int("retries", retries, 0, 100)
    store = store or Store()
    cells = spec_cells(spec, only)             # validates the grids before anything starts
    if not missing_cells(cells, store):        # nothing to compute: no cluster
        return _assemble(spec, store, only, device, CellsRun([], {}, {}, len(cells), 0), None, 0, 0, 0.0, t_all)
    with connect(scheduler, workers=workers, threads_per_worker=threads_per_worker) as (client, startup):
        t0 = time.perf_counter()
        warm_up(client)
        startup += time.perf_counter() - t0
        info = client.scheduler_info()["workers"]
        n_workers = len(info)
        threads = sum(w.get("nthreads", 1) for w in info.values()) or 1
        run = run_cells(cells, store, client, device=device, retries=retries, progress=progress, cancel=cancel,
                        on_event=on_event)
        address = client.scheduler.address if scheduler is not None else "LocalCluster"
    return _assemble(spec, store, only, device, run, address, n_workers, threads, startup, t_all)


def _assemble(spec, store, only, device, run: CellsRun, scheduler, workers, threads, startup, t_all):
    """Read the experiments back from the store (every cell is there: only cache hits)."""
    import dask

    from .sweep import run_experiment
    if run.cancelled:
        raise Cancelled(f"sweep cancelled: {len(run.done)} of {run.submitted} cells finished (kept in the store)")
    skip = set(run.failed) | set(run.blocked)
    results = {}
    with dask.config.set(scheduler="synchronous"):    # a caller's Client may be the default: see _task_setup
        for name, params in spec["experiments"].items():
            if (only and name not in only) or f"assemble {name}" in skip:
                continue
            results[name] = run_experiment(name, params, store, device=device)
            if f"assemble {name}" in run.done:            # computed by this sweep, as run_spec reports it
                results[name].attrs["cache"] = "computed"
    report = SweepReport(scheduler, workers, threads, startup, run.cached + run.submitted, run.cached, run.submitted,
                         run.cell_seconds, run.wall_seconds, time.perf_counter() - t_all)
    if run.failed:
        raise SweepError(run.failed, run.blocked, results, report)
    return results, report


__all__ = ["CellsRun", "SweepError", "SweepReport", "WorkerSetup", "connect", "run_cell", "run_cells",
           "run_spec_distributed", "warm_up"]
