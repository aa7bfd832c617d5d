"""Distributed sweeps on a Dask ``distributed`` cluster (``workbench sweep SPEC --scheduler ADDRESS``).

The result store is the merge point.  Every cell of a sweep — one trained network
(:func:`~.core.train_model`), one Monte-Carlo point (:func:`~.core.evaluate`), one assembled
experiment (:func:`~.sweep.run_experiment`) — is a store entry written atomically under a
per-key file lock, so a distributed sweep is:

1. enumerate each experiment's independent cells as picklable :class:`Cell` tasks
   (``(function path, kwargs)`` that compute one store entry; :data:`CELLS` holds the cell
   function of each experiment kind, and every experiment ends with one cell that assembles it,
   so a kind without a cell function runs whole as one task);
2. submit the *missing* ones to the cluster (``client.submit`` with ``retries=``, a cell's
   dependencies passed as futures so training runs before the evaluations that need it), follow
   them with ``distributed.as_completed`` (a progress callback per finished cell; a cell that
   still fails after its retries is reported by name, the other cells' results are kept);
   a ``threading.Event`` cancels the pending futures and sets a ``distributed.Event`` that
   running cells poll, so a long training stops at its next minibatch;
3. call the ordinary in-process :func:`~.sweep.run_experiment`, which now only reads the cache:
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

    results, timings = run_spec_distributed(load_spec("specs/sharpness_digits.json"), Store(root),
                                            scheduler="tcp://10.0.0.5:8786")   # or workers=4 locally
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import xarray as xr

from ..hardware import KnobError
from ..training import Cancelled, TrainConfig
from .store import Store, spec_key

try:                                     # a worker plugin needs distributed; the module imports without it
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:                      # pragma: no cover - distributed is a dependency
    _WorkerPlugin = object


# --------------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One independent unit of a sweep: ``function(**kwargs, store=, device=, cancel=)`` computes
    the store entry ``kind/key.ext``.  ``depends``: ids of the cells whose entries it reads."""

    name: str
    function: str | Callable                # "package.module:function" (or a picklable callable)
    kwargs: dict[str, Any] = field(hash=False)
    kind: str
    key: str
    ext: str = "nc"
    depends: tuple[str, ...] = ()
    experiment: str = ""

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.key}"

    def present(self, store: Store) -> bool:
        """Whether the entry is already in ``store`` (a valid file; its checksum is verified)."""
        return store._find(self.kind, self.key, self.ext) is not None


def train_cell(config: dict, *, store: Store, device: str = "auto", cancel=None) -> None:
    """Cell: train one network into the store (:func:`~.core.train_model`)."""
    from .core import train_model
    cfg = TrainConfig.from_dict(config)
    if store._find("weights", spec_key("weights", cfg.to_dict()), "pt") is None:
        train_model(cfg, store, device=device, cancel=cancel)


def evaluate_cell(config: dict, memory: dict, *, draws: int, seed: int, adabs: bool = False,
                  target_ci_width: float | None = None, store: Store, device: str = "auto", cancel=None) -> None:
    """Cell: one Monte-Carlo point into the store (:func:`~.core.evaluate`)."""
    from .core import evaluate
    evaluate(TrainConfig.from_dict(config), memory, draws=draws, seed=seed, adabs=adabs,
             target_ci_width=target_ci_width, store=store, device=device, cancel=cancel)


def experiment_cell(experiment: str, params: dict, *, store: Store, device: str = "auto", cancel=None) -> None:
    """Cell: assemble one experiment of a spec into the store (:func:`~.sweep.run_experiment`);
    its other cells are cache hits by then."""
    from .sweep import run_experiment
    run_experiment(experiment, params, store, device=device, cancel=cancel)


_HERE = __name__


def _train(cfg: TrainConfig, label: str) -> Cell:
    spec = cfg.to_dict()
    return Cell(f"train {label}", f"{_HERE}:train_cell", {"config": spec}, "weights", spec_key("weights", spec), "pt")


def _evaluate(cfg: TrainConfig, memory: dict, label: str, *, draws: int, seed: int, adabs: bool = False,
              depends: Sequence[Cell] = ()) -> Cell:
    from ..hardware import memory_map_from_dict
    # the spec of core.evaluate's cache entry (kept in step with it; tests/test_distributed.py
    # checks that the cells of every kind are exactly the entries an in-process run writes)
    spec = {"train": cfg.to_dict(), "memory": memory_map_from_dict(memory).to_dict(), "draws": draws, "seed": seed,
            "target_ci_width": None, "adabs": bool(adabs)}
    return Cell(f"evaluate {label}", f"{_HERE}:evaluate_cell",
                {"config": cfg.to_dict(), "memory": memory, "draws": draws, "seed": seed, "adabs": bool(adabs)},
                "evaluate", spec_key("evaluate", spec), "nc", tuple(c.id for c in depends))


def _bind(fn: Callable, params: dict) -> dict[str, Any]:
    """``params`` with ``fn``'s defaults filled in (an unknown parameter raises like the call would)."""
    sig = inspect.signature(fn)
    try:
        bound = sig.bind_partial(**params)
    except TypeError as exc:
        raise KnobError(f"{fn.__name__}: {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _robustness(methods, seeds, *, noise="multiplicative", levels=None, g_u=25.0, adabs=(False, True), draws=10,
                rho=None, base=None, train=None, **_ignored) -> list[Cell]:
    """The cells of :func:`~.sharpness.robustness_study` (validated as it validates them)."""
    from .sharpness import BASE_PRESET, METHODS, method_config, robustness_grid
    methods, seeds, levels, adabs, mems = robustness_grid(methods, seeds, noise, levels, g_u, adabs, draws)
    base = base or BASE_PRESET
    out = []
    for m in methods:
        for s in seeds:
            cfg = method_config(m, s, base=base, rho=rho if "sam" in METHODS[m] else None, **(train or {}))
            tag = f"{m} seed={s}" + (f" rho={rho}" if rho is not None and "sam" in METHODS[m] else "")
            t = _train(cfg, tag)
            out.append(t)
            for ada in adabs:
                for v, mem in zip(levels, mems):
                    out.append(_evaluate(cfg, mem, f"{tag} {noise} {v:g}{' adabs' if ada else ''}", draws=draws, seed=0,
                                         adabs=ada, depends=[t]))
    return out


def _robustness_cells(noise: str | None = None):
    def cells(params: dict) -> list[Cell]:
        from .sharpness import robustness_study
        kw = _bind(robustness_study, {**({"noise": noise} if noise else {}), **params})
        return _robustness(**kw)
    return cells


def _per_network_cells(fn_name: str):
    """Chapter-5 studies computed per trained network (quantisation, OOD, PCM drift): the
    training cells; the per-network analysis runs in the experiment's own cell."""
    def cells(params: dict) -> list[Cell]:
        from . import sharpness
        kw = _bind(getattr(sharpness, fn_name), params)
        methods = sharpness._check("methods", kw["methods"], list(sharpness.METHODS))
        seeds = [int(s) for s in sharpness._check("seeds", kw["seeds"])]
        return [_train(sharpness.method_config(m, s, base=kw["base"], **(kw["train"] or {})), f"{m} seed={s}")
                for m in methods for s in seeds]
    return cells


def _sharpness_cells(params: dict) -> list[Cell]:
    """The robustness curves m-sharpness is correlated with, and the networks (as the ``sharpness``
    entry of :data:`~.sweep.EXPERIMENTS` computes them)."""
    from . import sharpness
    kw = dict(params)
    rob = {k: kw.pop(k) for k in ("robustness_levels", "robustness_draws") if k in kw}
    a = _bind(sharpness.sharpness_study, kw)
    if rob:
        cells = _robustness(a["methods"], a["seeds"], levels=rob.get("robustness_levels"), adabs=[a["adabs"]],
                            draws=rob.get("robustness_draws", 10), train=a["train"])
    else:
        cells = _robustness(a["methods"], a["seeds"], levels=[0.0, a["high"]], adabs=[a["adabs"]], draws=10,
                            base=a["base"], train=a["train"])
    return cells + _per_network_cells("sharpness_study")(kw)


def _rho_cells(params: dict) -> list[Cell]:
    from . import sharpness
    from ..training.sam import RHO_GRIDS
    a = _bind(sharpness.rho_study, params)
    methods = sharpness._check("methods", a["methods"], [m for m in sharpness.METHODS if "sam" in sharpness.METHODS[m]])
    rhos = {m: list((a["rhos"] or {}).get(m, RHO_GRIDS[sharpness.METHODS[m]["sam"]])) for m in methods}
    return [c for m in methods for r in rhos[m]
            for c in _robustness([m], a["seeds"], levels=a["levels"], adabs=[a["adabs"]], draws=a["draws"], rho=r,
                                 base=a["base"], train=a["train"])]


def _uniform_ber_cells(params: dict) -> list[Cell]:
    """Fig 4.2 (as :func:`~.sweep.EXPERIMENTS` ``["uniform_ber"]`` calls it): a network per
    (p_t, seed), an evaluation per (network, p)."""
    from .sram import _check_grid, bc_config, sram_map
    p_train, p_test = _check_grid("p_train", params["p_train"]), _check_grid("p_test", params["p_test"])
    out = []
    for pt in p_train:
        for seed in params["seeds"]:
            cfg = bc_config(pt, seed)
            t = _train(cfg, f"bc p_train={pt:g} seed={seed}")
            out.append(t)
            out += [_evaluate(cfg, sram_map(p), f"bc p_train={pt:g} seed={seed} p={p:g}", draws=params["draws"],
                              seed=seed, depends=[t]) for p in p_test]
    return out


def _bc_train_cells(grid_key: str):
    """The BinaryConnect networks of the sensitivity and spectra experiments (their analyses run
    in the experiment's own cell)."""
    def cells(params: dict) -> list[Cell]:
        from .sram import bc_config
        p_train = params[grid_key]
        p_train = p_train if isinstance(p_train, (list, tuple)) else [p_train]
        return [_train(bc_config(pt, seed), f"bc p_train={pt:g} seed={seed}")
                for pt in p_train for seed in params["seeds"]]
    return cells


#: experiment kind -> its cells (before the cell that assembles the experiment); kinds not listed
#: (energy_accuracy, nas, nas_select) run whole as one task
CELLS: dict[str, Callable[[dict], list[Cell]]] = {
    "robustness": _robustness_cells(),
    "robustness_additive": _robustness_cells("additive"),
    "rho": _rho_cells,
    "sharpness": _sharpness_cells,
    "quantization": _per_network_cells("quantization_study"),
    "ood": _per_network_cells("ood_study"),
    "pcm_drift": _per_network_cells("drift_study"),
    "uniform_ber": _uniform_ber_cells,
    "sensitivity": _bc_train_cells("p_train"),
    "spectra": _bc_train_cells("p_train"),
}


def experiment_cells(name: str, params: dict) -> list[Cell]:
    """The cells of one experiment of a spec, in dependency order, ending with the cell that
    assembles it (``sweep-<name>``; it depends on all the others)."""
    from .sweep import EXPERIMENTS
    if name not in EXPERIMENTS:
        raise KnobError(f"experiment={name!r} must be one of {sorted(EXPERIMENTS)}")
    cells = [replace_experiment(c, name) for c in CELLS.get(name, lambda p: [])(params)]
    kind = f"sweep-{name}"
    final = Cell(f"assemble {name}", f"{_HERE}:experiment_cell", {"experiment": name, "params": params}, kind,
                 spec_key(kind, params), "nc", tuple(dict.fromkeys(c.id for c in cells)), name)
    return cells + [final]


def replace_experiment(cell: Cell, experiment: str) -> Cell:
    from dataclasses import replace
    return replace(cell, experiment=experiment)


def spec_cells(spec: dict[str, Any], only: Sequence[str] | None = None) -> list[Cell]:
    """Every cell of a spec, each once (experiments share networks and points), in dependency order."""
    out: dict[str, Cell] = {}
    for name, params in spec["experiments"].items():
        if only and name not in only:
            continue
        for c in experiment_cells(name, params):
            out.setdefault(c.id, c)
    return list(out.values())


# --------------------------------------------------------------------------------------------
# running cells on a cluster
# --------------------------------------------------------------------------------------------

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
            cancel_event.client
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


def _run_cell(function: str | Callable, kwargs: dict, root: str, read_only: list[str], device: str, cancel_event,
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


class SweepError(RuntimeError):
    """Cells failed after their retries.  ``failed``: cell name -> error; ``blocked``: cells not run
    because a cell they need failed; ``results``: the experiments that completed (their cells
    are in the store, as are those of every cell that succeeded); ``timings``."""

    def __init__(self, failed: dict[str, str], blocked: dict[str, str], results: dict[str, xr.Dataset],
                 timings: dict[str, Any]):
        self.failed, self.blocked, self.results, self.timings = failed, blocked, results, timings
        lines = [f"{len(failed)} cell(s) failed after their retries: "
                 + "; ".join(f"{name}: {err}" for name, err in failed.items())]
        if blocked:
            lines.append(f"{len(blocked)} cell(s) not run because a cell they need failed: {', '.join(blocked)}")
        super().__init__("\n".join(lines))


def _missing(cells: Sequence[Cell], store: Store) -> list[Cell]:
    """The cells to compute: those not in the store that a missing cell with no dependents (an
    experiment's assembly) needs — a cell that only serves a result already stored is not."""
    by_id = {c.id: c for c in cells}
    present: dict[str, bool] = {}

    def absent(cid: str) -> bool:              # each entry checked (its checksum read) once
        if cid not in present:
            present[cid] = by_id[cid].present(store)
        return not present[cid]

    used = {d for c in cells for d in c.depends}
    need: set[str] = set()
    stack = [c.id for c in cells if c.id not in used and absent(c.id)]
    while stack:
        cid = stack.pop()
        if cid in need:
            continue
        need.add(cid)
        stack += [d for d in by_id[cid].depends if d in by_id and absent(d)]
    return [c for c in cells if c.id in need]


def run_cells(cells: Sequence[Cell], store: Store, client, *, device: str = "auto", retries: int = 2,
              progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
              on_event: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Compute the missing ``cells`` on ``client``'s cluster.

    Returns ``{"done", "failed", "blocked", "cached", "cell_seconds", "wall_seconds", "cancelled"}``:
    names of the finished cells, ``{name: error}`` of those that failed after ``retries`` retries,
    ``{name: failed dependency}`` of those not run, the number of cells already in the store, the
    sum of the cells' own compute times and the wall time from submission to the last result.
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
    missing = _missing(cells, store)
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
        futures[c.id] = client.submit(_run_cell, c.function, c.kwargs, root, ro, device, cancel_event, deps,
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
    return {"done": [by_id[c].name for c in done], "failed": failed, "blocked": blocked, "cached": cached,
            "submitted": len(missing), "cell_seconds": seconds, "wall_seconds": wall,
            "cancelled": bool(cancel is not None and cancel.is_set())}


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
        if not 1 <= int(workers) <= 1024:
            raise KnobError(f"workers={workers} is out of range: workers must be in [1, 1024]")
        if not 1 <= int(threads_per_worker) <= 256:
            raise KnobError(f"threads_per_worker={threads_per_worker} is out of range: must be in [1, 256]")
        with LocalCluster(n_workers=int(workers), threads_per_worker=int(threads_per_worker), processes=True,
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
                         ) -> tuple[dict[str, xr.Dataset], dict[str, Any]]:
    """:func:`~.sweep.run_spec` on a Dask cluster: ``(results, timings)``.

    ``results`` are the Datasets :func:`~.sweep.run_spec` returns (read back from the store after
    the cluster computed every missing cell).  ``timings``: ``workers``, ``threads`` (cells that
    can run at once), ``cells`` (all), ``cached`` (already in the store), ``submitted``,
    ``cell_seconds`` (sum of the cells' compute times), ``wall_seconds`` (submission to last
    result), ``startup_seconds`` (cluster start or connection, and workers importing torch and
    the experiments), ``ideal_seconds`` =
    ``cell_seconds ÷ threads`` and ``overhead`` = ``wall_seconds ÷ ideal_seconds`` (1 is perfect
    scaling; dependencies — training before its evaluations — and the scheduler's per-task cost
    make it larger), ``total_seconds`` (all of it, assembly included).

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
    if not 0 <= int(retries) <= 100:
        raise KnobError(f"retries={retries} is out of range: retries must be in [0, 100]")
    store = store or Store()
    cells = spec_cells(spec, only)             # validates the grids before anything starts
    if not _missing(cells, store):             # nothing to compute: no cluster
        report = {"done": [], "failed": {}, "blocked": {}, "cached": len(cells), "submitted": 0, "cell_seconds": 0.0,
                  "wall_seconds": 0.0, "cancelled": False}
        return _assemble(spec, store, only, device, report, {"scheduler": None, "workers": 0, "threads": 0,
                                                             "startup_seconds": 0.0}, t_all)
    with connect(scheduler, workers=workers, threads_per_worker=threads_per_worker) as (client, startup):
        t0 = time.perf_counter()
        warm_up(client)
        startup += time.perf_counter() - t0
        info = client.scheduler_info()["workers"]
        n_workers = len(info)
        threads = sum(w.get("nthreads", 1) for w in info.values()) or 1
        report = run_cells(cells, store, client, device=device, retries=retries, progress=progress, cancel=cancel,
                           on_event=on_event)
        address = client.scheduler.address
    return _assemble(spec, store, only, device, report,
                     {"scheduler": address if scheduler is not None else "LocalCluster", "workers": n_workers,
                      "threads": threads, "startup_seconds": startup}, t_all)


def _assemble(spec, store, only, device, report, cluster, t_all):
    """Read the experiments back from the store (every cell is there: only cache hits)."""
    import dask
    from .sweep import run_experiment
    timings = {**cluster, "cells": report["cached"] + report["submitted"], "cached": report["cached"],
               "submitted": report["submitted"], "cell_seconds": report["cell_seconds"],
               "wall_seconds": report["wall_seconds"],
               "ideal_seconds": report["cell_seconds"] / max(cluster["threads"], 1)}
    timings["overhead"] = (timings["wall_seconds"] / timings["ideal_seconds"] if timings["ideal_seconds"] > 0
                           else None)
    if report["cancelled"]:
        raise Cancelled(f"sweep cancelled: {len(report['done'])} of {report['submitted']} cells finished "
                        "(kept in the store)")
    skip = set(report["failed"]) | set(report["blocked"])
    results = {}
    with dask.config.set(scheduler="synchronous"):    # a caller's Client may be the default: see _task_setup
        for name, params in spec["experiments"].items():
            if (only and name not in only) or f"assemble {name}" in skip:
                continue
            results[name] = run_experiment(name, params, store, device=device)
            if f"assemble {name}" in report["done"]:       # computed by this sweep, as run_spec reports it
                results[name].attrs["cache"] = "computed"
    timings["total_seconds"] = time.perf_counter() - t_all
    if report["failed"]:
        raise SweepError(report["failed"], report["blocked"], results, timings)
    return results, timings


__all__ = ["CELLS", "Cell", "SweepError", "WorkerSetup", "connect", "evaluate_cell", "experiment_cell",
           "experiment_cells", "run_cells", "run_spec_distributed", "spec_cells", "train_cell", "warm_up"]
