"""Background work for one page session: a single worker thread, progress, cancel, errors.

The runner knows nothing about Panel: results come back through callbacks (which, in a served page,
update ``param`` state); :func:`session_dispatch` is the one Panel-aware helper here.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Task:
    name: str
    future: cf.Future
    cancel: threading.Event = field(default_factory=threading.Event)


class TaskRunner:
    """Runs one job at a time per kind (``"eval"``, ``"train"``) off the event loop.

    Submitting a new job of the same kind cancels the previous one (its result is discarded), so a
    dragged slider never queues stale work.  ``on_error`` receives a one-line message; earlier
    results are never touched by a failed job.
    """

    def __init__(self, max_workers: int = 2):
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="workbench-task")
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, fn: Callable[[threading.Event], Any], on_done: Callable[[Any], None],
               on_error: Callable[[str], None], on_cancel: Callable[[], None] | None = None) -> Task:
        with self._lock:
            old = self._tasks.get(kind)
            if old is not None:
                old.cancel.set()
            cancel = threading.Event()
            task = Task(kind, cf.Future(), cancel)
            self._tasks[kind] = task

        def run():
            try:
                result = fn(cancel)
            except BaseException as exc:  # report everything; never kill the worker
                if cancel.is_set():
                    if on_cancel is not None and self._tasks.get(kind) is task:
                        on_cancel()
                else:
                    msg = f"{type(exc).__name__}: {exc}"
                    traceback.print_exc()
                    on_error(msg)
                return
            if not cancel.is_set() and self._tasks.get(kind) is task:
                on_done(result)
            elif on_cancel is not None and self._tasks.get(kind) is task:
                on_cancel()

        task.future = self._pool.submit(run)
        return task

    def cancel(self, kind: str) -> bool:
        task = self._tasks.get(kind)
        if task is None or task.future.done():
            return False
        task.cancel.set()
        return True

    def running(self, kind: str) -> bool:
        task = self._tasks.get(kind)
        return task is not None and not task.future.done()

    def wait(self, kind: str, timeout: float | None = None) -> None:
        task = self._tasks.get(kind)
        if task is not None:
            cf.wait([task.future], timeout=timeout)

    def shutdown(self) -> None:
        for t in self._tasks.values():
            t.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


def session_dispatch():
    """In a served Panel session: a function handing a callable to that session's event loop (so
    results computed on worker threads update the page in order, on one thread); else ``None``."""
    import panel as pn
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        return lambda fn: doc.add_next_tick_callback(fn)
    return None
