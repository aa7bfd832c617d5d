"""What the operator of a served workbench decides, and what one visitor's session may ask of it.

Every visitor of ``panel serve apps/`` is an untrusted user of the machine that serves it.  The
operator sets, through environment variables or ``panel serve apps/ --args ...`` (the arguments
win), what visitors may do; :data:`FIELDS` lists each setting once with its variable, its flag, its
default on a personal server and its default in *shared mode* (``WORKBENCH_SHARED=1``), which is
safe without any other setting:

- Dask schedulers come only from the operator's list (a visitor picks, never types, an address:
  Dask unpickles what a scheduler sends, so a scheduler someone else runs could run code here);
- a LocalCluster has at most as many workers as the machine has cores;
- epochs, Monte-Carlo draws, NSGA-II population and generations asked from the browser are capped;
- one session has at most a few trainings, curves and sweeps in flight at once
  (:class:`SessionQuota`), and the compute slots of :mod:`.tasks` keep every session's slider
  readouts first in line;
- nothing a visitor types is used as a path on the server (:func:`path_keys` refuses spec keys
  that name files); the store is where the operator put it (``WORKBENCH_CACHE``).

A refusal is a :class:`~workbench.knobs.KnobError` whose message names the setting and its value.
"""

from __future__ import annotations

import argparse
import os
import shlex
import threading
import weakref
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from ..knobs import KnobError

#: spec and config keys whose value is a file or folder on the server, or code to import and run
#: (``user_model``, ``data``: a factory or a user's file, see ``TrainConfig``)
PATH_KEYS = frozenset({"init_weights", "root", "data_root", "path", "file", "files", "store", "cache", "checkpoint",
                       "weights_file", "output", "out", "dir", "directory", "user_model", "data", "weights"})

#: the job classes a session's quota counts, with the setting that caps each and its words
JOB_CLASSES = {"training": ("max_trainings", "training", "trainings"),
               "curve": ("max_curves", "curve or search", "curves and searches"),
               "sweep": ("max_sweeps", "sweep", "sweeps")}


@dataclass(frozen=True)
class Field:
    name: str
    env: str
    flag: str
    kind: type
    personal: Any
    shared: Any
    doc: str


def _cores() -> int:
    return os.cpu_count() or 1


#: every operator setting once: (name, variable, flag, type, personal default, shared default, meaning);
#: a default of ``None`` means "no cap beyond the knob's own range"
FIELDS: tuple[Field, ...] = tuple(Field(*f) for f in (
    ("shared", "WORKBENCH_SHARED", "--shared", bool, False, True,
     "shared mode: every visitor is untrusted; the defaults in the last column apply"),
    ("schedulers", "WORKBENCH_SCHEDULERS", "--schedulers", tuple, (), (),
     "Dask scheduler addresses a visitor may pick (comma-separated); in shared mode no other address is used, "
     "and a link can name only these in any mode"),
    ("sweeps", "WORKBENCH_SWEEPS", "--sweeps", bool, True, False,
     "whether the Sweeps page may run sweeps (off: it only shows which cells are stored); off in shared mode "
     "because a sweep's Dask worker processes compute outside the compute slots that keep sessions answering"),
    ("max_workers", "WORKBENCH_MAX_WORKERS", "--max-workers", int, 64, _cores(),
     "worker processes of a LocalCluster started from the browser"),
    ("max_sweep_cells", "WORKBENCH_MAX_SWEEP_CELLS", "--max-sweep-cells", int, None, 200,
     "cells one sweep from the browser may have"),
    ("max_epochs", "WORKBENCH_MAX_EPOCHS", "--max-epochs", int, None, 50,
     "epochs of a training asked from the browser (pages and sweep specs)"),
    ("max_draws", "WORKBENCH_MAX_DRAWS", "--max-draws", int, None, 100,
     "Monte-Carlo draws per point asked from the browser"),
    ("max_population", "WORKBENCH_MAX_POPULATION", "--max-population", int, None, 256,
     "NSGA-II population of a search asked from the browser"),
    ("max_generations", "WORKBENCH_MAX_GENERATIONS", "--max-generations", int, None, 100,
     "NSGA-II generations of a search asked from the browser"),
    ("max_trainings", "WORKBENCH_MAX_TRAININGS", "--max-trainings", int, None, 1,
     "trainings one session may have running or waiting at once"),
    ("max_curves", "WORKBENCH_MAX_CURVES", "--max-curves", int, None, 2,
     "curves and searches one session may have running or waiting at once (slider readouts are not counted)"),
    ("max_sweeps", "WORKBENCH_MAX_SWEEPS", "--max-sweeps", int, None, 1,
     "sweeps one session may have running at once"),
))
_BY_NAME = {f.name: f for f in FIELDS}

#: a knob asked from the browser -> the setting that caps it
KNOB_CAPS = {"epochs": "max_epochs", "draws": "max_draws", "pop_size": "max_population", "n_gen": "max_generations",
             "workers": "max_workers"}


def _parse(f: Field, text: str) -> Any:
    text = text.strip()
    if f.kind is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise KnobError(f"{f.env}={text!r} is not valid: {f.env} must be 1 or 0 (on or off)")
    if f.kind is tuple:
        return tuple(a.strip() for a in text.split(",") if a.strip())
    if text.lower() in ("", "none", "off"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise KnobError(f"{f.env}={text!r} is not a whole number: {f.env} must be a whole number ≥ 1 "
                        "(or 'none' for no cap)") from None
    if value < 1:
        raise KnobError(f"{f.env}={value} is out of range: {f.env} must be at least 1 (or 'none' for no cap)")
    return value


@dataclass(frozen=True)
class ServerSettings:
    """The operator's settings (see :data:`FIELDS`); build with :meth:`load`."""

    shared: bool = False
    schedulers: tuple[str, ...] = ()
    sweeps: bool = True
    max_workers: int | None = 64
    max_sweep_cells: int | None = None
    max_epochs: int | None = None
    max_draws: int | None = None
    max_population: int | None = None
    max_generations: int | None = None
    max_trainings: int | None = None
    max_curves: int | None = None
    max_sweeps: int | None = None

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, argv: Iterable[str] = ()) -> "ServerSettings":
        """Settings from ``environ`` (default ``os.environ``), then the flags of ``argv`` (the
        ``--args`` of ``panel serve``); each unset one takes its personal or shared default."""
        environ = os.environ if environ is None else environ
        given: dict[str, Any] = {}
        for f in FIELDS:
            if environ.get(f.env, "").strip() != "" or (f.kind is tuple and f.env in environ):
                given[f.name] = _parse(f, environ[f.env])
        given.update(_parse_args(list(argv)))
        shared = given.get("shared", False)
        values = {f.name: given.get(f.name, f.shared if shared else f.personal) for f in FIELDS}
        return cls(**values)

    def cap(self, knob: str) -> tuple[int, str] | None:
        """``(cap, setting)`` for a knob asked from the browser (:data:`KNOB_CAPS`), None when uncapped."""
        name = KNOB_CAPS.get(knob)
        value = getattr(self, name) if name else None
        return None if value is None else (value, name)

    def refuse_above(self, knob: str, value: Any) -> str | None:
        """The refusal of ``knob=value`` when it is above this server's cap, else None."""
        cap = self.cap(knob)
        if cap is None or not isinstance(value, (int, float)) or value <= cap[0]:
            return None
        limit, name = cap
        return f"{knob}={value} is above this server's cap of {limit} (operator setting {_BY_NAME[name].env}={limit})"

    def scheduler_refusal(self, address: str) -> str | None:
        """Why this server will not connect to the Dask scheduler at ``address`` (None: it may)."""
        address = address.strip()
        if not address or address in self.schedulers:
            return None
        listed = f"({', '.join(self.schedulers)})" if self.schedulers else "(none: the list is empty)"
        if self.shared:
            return (f"scheduler={address!r} is not one of this server's Dask schedulers {listed}: a shared workbench "
                    "connects only to the schedulers its operator lists (WORKBENCH_SCHEDULERS); leave it empty for "
                    "a LocalCluster on this machine")
        if not address.startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")):
            return f"scheduler={address!r} must be a Dask address such as tcp://127.0.0.1:8786 (or empty)"
        return None

    def describe(self) -> list[str]:
        """The settings in force, one ``VARIABLE=value`` each (the page's *About this server*)."""
        out = []
        for f in FIELDS:
            v = getattr(self, f.name)
            text = ("1" if v else "0") if f.kind is bool else ",".join(v) if f.kind is tuple else (
                "none" if v is None else str(v))
            out.append(f"{f.env}={text}")
        return out


def _parse_args(argv: list[str]) -> dict[str, Any]:
    if not argv:
        return {}
    parser = argparse.ArgumentParser(prog="panel serve apps/ --args", add_help=False, exit_on_error=False,
                                     allow_abbrev=False)
    for f in FIELDS:
        if f.kind is bool:
            parser.add_argument(f.flag, dest=f.name, nargs="?", const="1", default=None)
        else:
            parser.add_argument(f.flag, dest=f.name, default=None)
    try:
        ns, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        raise KnobError(f"panel serve apps/ --args {shlex.join(argv)}: {exc}") from None
    if unknown:
        named = [u for u in unknown if u.startswith("-")] or unknown
        raise KnobError(f"panel serve apps/ --args: {' '.join(named)} is not a workbench setting "
                        f"(settings: {', '.join(f.flag for f in FIELDS)})")
    return {name: _parse(_BY_NAME[name], str(v)) for name, v in vars(ns).items() if v is not None}


_current: ServerSettings | None = None
_lock = threading.Lock()


def current() -> ServerSettings:
    """The settings in force: those :func:`configure` set, else read from the environment once."""
    global _current
    with _lock:
        if _current is None:
            _current = ServerSettings.load()
        return _current


def configure(argv: Iterable[str] = (), environ: Mapping[str, str] | None = None, **overrides) -> ServerSettings:
    """Set the settings in force from the environment, ``argv`` and ``overrides`` (tests, notebooks)."""
    global _current
    settings = replace(ServerSettings.load(environ, argv), **overrides)
    with _lock:
        _current = settings
    return settings


def path_keys(obj: Any, where: str = "") -> list[str]:
    """Where ``obj`` (a parsed sweep spec, a config) has a key naming a file on the server
    (:data:`PATH_KEYS`), as dotted paths (``experiments.robustness.train.init_weights``).  A
    network or data set named by what an installed package registers (``workbench.models`` /
    ``workbench.datasets``) is not a path: the server's administrator installed that code."""
    from ..plugins import DATA_GROUP, MODEL_GROUP, registered
    allowed = {"user_model": set(registered(MODEL_GROUP)), "model": set(registered(MODEL_GROUP)),
               "data": set(registered(DATA_GROUP))}
    found = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            here = f"{where}.{k}" if where else str(k)
            if isinstance(v, str) and v in allowed.get(str(k).lower(), ()):
                continue
            if str(k).lower() in PATH_KEYS:
                found.append(here)
            found += path_keys(v, here)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found += path_keys(v, f"{where}[{i}]")
    return found


def capped_values(obj: Any, settings: ServerSettings, where: str = "") -> list[str]:
    """The refusals of every capped knob (:data:`KNOB_CAPS`) in ``obj`` that is above its cap."""
    found = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            here = f"{where}.{k}" if where else str(k)
            refusal = settings.refuse_above(str(k), v) if isinstance(v, (int, float)) else None
            if refusal:
                found.append(f"{here}: {refusal}")
            found += capped_values(v, settings, here)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found += capped_values(v, settings, f"{where}[{i}]")
    return found


class SessionQuota:
    """The jobs one session has in flight, by class (:data:`JOB_CLASSES`), against the caps.

    Pages of a session share it (:func:`session_quota`); a job counts from its launch until its
    worker returns (a job waiting for a compute slot counts: it is queued).  A new job of a kind
    that replaces a running one of the same page does not add to the count (the old one is
    cancelled), except for trainings and sweeps, which a second click never restarts in shared
    mode: it is refused while the first runs."""

    def __init__(self, settings: ServerSettings | None = None):
        self._settings = settings
        self._lock = threading.Lock()
        self._jobs: dict[str, list[tuple[int, str, Any]]] = {c: [] for c in JOB_CLASSES}

    @property
    def settings(self) -> ServerSettings:
        return self._settings or current()

    def in_flight(self, job_class: str) -> int:
        with self._lock:
            return len(self._live(job_class))

    def _live(self, job_class: str) -> list:
        jobs = self._jobs[job_class] = [j for j in self._jobs[job_class] if not j[2].future.done()]
        return jobs

    def admit(self, job_class: str, owner: Any, kind: str) -> str | None:
        """None when ``owner`` may start a job of ``kind`` in ``job_class`` now, else the refusal."""
        if job_class not in JOB_CLASSES:
            raise KnobError(f"job class {job_class!r} must be one of {', '.join(JOB_CLASSES)}")
        name, one, many = JOB_CLASSES[job_class]
        settings = self.settings
        cap = getattr(settings, name)
        with self._lock:
            live = self._live(job_class)
            same = [j for j in live if j[0] == id(owner) and j[1] == kind]
            if same and settings.shared and job_class in ("training", "sweep"):
                return (f"a {one} of this page is already running: wait for it or cancel it (a shared workbench "
                        "does not restart a running " + one + " on a second click)")
            others = len(live) - len(same)
            if cap is not None and others + 1 > cap:
                return (f"this session already has {others} {one if others == 1 else many} running or waiting: "
                        f"this server allows at most {cap} at once per session "
                        f"(operator setting {_BY_NAME[name].env}={cap}); wait for one to finish or cancel it")
        return None

    def track(self, job_class: str, owner: Any, kind: str, task: Any) -> None:
        """Count ``task`` (a :class:`~.tasks.Task`) until its future is done."""
        if task is None:
            return
        with self._lock:
            self._jobs[job_class].append((id(owner), kind, task))


_quotas: "weakref.WeakKeyDictionary[Any, SessionQuota]" = weakref.WeakKeyDictionary()


def session_quota() -> SessionQuota:
    """This served session's quota (one per browser session, shared by its pages); outside a
    served session (a notebook, a script) a quota of its own."""
    import panel as pn
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return SessionQuota()
    with _lock:
        quota = _quotas.get(doc)
        if quota is None:
            quota = _quotas[doc] = SessionQuota()
        return quota


__all__ = ["FIELDS", "JOB_CLASSES", "KNOB_CAPS", "PATH_KEYS", "ServerSettings", "SessionQuota", "capped_values",
           "configure", "current", "path_keys", "session_quota"]
