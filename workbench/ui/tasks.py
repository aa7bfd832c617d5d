"""Background work for one page session: worker threads, progress, cancel, errors.

The runner knows nothing about Panel: results come back through callbacks (which, in a served page,
update ``param`` state); :func:`session_dispatch` is the one Panel-aware helper here.

Every runner of the process shares :data:`SLOTS`, a small pool of compute slots (one per CPU core
by default, ``$WORKBENCH_JOB_SLOTS`` to change it): a job waits for a slot before it computes.
At most SLOTS jobs compute at once, however many sessions submit them, so each runs at full speed
and the server's event loop always keeps a core to accept sessions and update pages.
"""

from __future__ import annotations

import concurrent.futures as cf
import heapq
import os
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from ..knobs import KnobError, check_int


@dataclass
class Task:
    name: str
    future: cf.Future
    cancel: threading.Event = field(default_factory=threading.Event)


def _slot_count() -> int:
    env = os.environ.get("WORKBENCH_JOB_SLOTS", "")
    if not env:
        return os.cpu_count() or 1
    try:
        n = int(env)
    except ValueError:
        raise KnobError(f"WORKBENCH_JOB_SLOTS={env!r} is not an integer: it is the number of jobs computing at "
                        "once, at least 1") from None
    return check_int("WORKBENCH_JOB_SLOTS", n, 1)


class ComputeSlots:
    """``n`` compute slots handed out by priority (lower first, then first come first served);
    a waiter gives up when its job is cancelled.  Counts the jobs computing and waiting now, and
    the most that ever computed at once (the load test reads them)."""

    def __init__(self, n: int):
        self.n = n
        self._cond = threading.Condition()
        self._queue: list[tuple[int, int]] = []      # heap of (priority, ticket)
        self._ticket = 0
        self.active = 0
        self.peak = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def acquire(self, cancel: threading.Event, priority: int = 1, ticket: int | None = None) -> bool:
        """Wait for a slot (True) or until ``cancel`` is set (False).  ``ticket``: the place in the
        queue among jobs of the same priority (a job that lent its slot keeps its own)."""
        with self._cond:
            if ticket is None:
                self._ticket += 1
                ticket = self._ticket
            me = (int(priority), ticket)
            heapq.heappush(self._queue, me)
            try:
                while not (self.active < self.n and self._queue[0] == me):
                    if cancel.is_set():
                        return False
                    self._cond.wait(0.1)
            finally:
                self._queue.remove(me)
                heapq.heapify(self._queue)
                self._cond.notify_all()
            self.active += 1
            self.peak = max(self.peak, self.active)
            return True

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def next_ticket(self) -> int:
        with self._cond:
            self._ticket += 1
            return self._ticket

    def urgent_waiting(self, priority: int) -> bool:
        """Whether a job more urgent than ``priority`` waits and no slot is free for it."""
        with self._cond:
            return bool(self._queue) and self._queue[0][0] < priority and self.active >= self.n


class SlotCheckpoint:
    """The ``cancel`` flag a computing job receives (``threading.Event``-like).

    Long jobs already ask ``cancel.is_set()`` between minibatches, draws or curve points; that is
    also where this one *lends its slot*: when a more urgent job waits (a slider's readout while
    trainings and curves hold every slot), the job releases its slot, waits to get it back (keeping
    its place among jobs of its own priority), then goes on.  A job cancelled while it waits
    returns ``True`` without the slot.  Only the job's own thread lends; calls from any other
    thread just read the flag."""

    def __init__(self, event: threading.Event, slots: ComputeSlots, priority: int, ticket: int):
        self._event, self._slots, self._priority, self._ticket = event, slots, priority, ticket
        self._owner = threading.get_ident()
        self.held = True
        self.lent = 0            # how many times the slot was lent (tests, diagnostics)

    def is_set(self) -> bool:
        if self._event.is_set():
            return True
        if self.held and threading.get_ident() == self._owner and self._slots.urgent_waiting(self._priority):
            self._slots.release()
            self.held = False
            self.lent += 1
            if not self._slots.acquire(self._event, self._priority, ticket=self._ticket):
                return True
            self.held = True
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


#: the process-wide compute slots every :class:`TaskRunner` waits for
SLOTS = ComputeSlots(_slot_count())


class TaskRunner:
    """Runs one job at a time per kind (``"eval"``, ``"train"``) off the event loop.

    Submitting a new job of the same kind cancels the previous one (its result is discarded), so a
    dragged slider never queues stale work.  ``on_error`` receives a one-line message; earlier
    results are never touched by a failed job.
    """

    def __init__(self, max_workers: int = 3, slots: ComputeSlots | None = None):
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="workbench-task")
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._slots = SLOTS if slots is None else slots
        self.closed = False

    def submit(self, kind: str, fn: Callable[[threading.Event], Any], on_done: Callable[[Any], None],
               on_error: Callable[[str], None], on_cancel: Callable[[], None] | None = None,
               compute: bool = True, priority: int = 1) -> Task | None:
        """Run ``fn(cancel)`` on a worker thread, then ``on_done(result)`` / ``on_error(message)`` /
        ``on_cancel()``.  ``compute``: the job computes here and waits for one of the shared
        :data:`SLOTS` first (False for a job that only waits on other processes, e.g. a Dask
        sweep); ``priority``: lower goes first among waiting jobs (0 for what a moved slider shows
        at once, 1 for curves and training).  After :meth:`shutdown` (its session is gone) nothing
        is submitted: None."""
        with self._lock:
            if self.closed:
                return None
            old = self._tasks.get(kind)
            if old is not None:
                old.cancel.set()
            cancel = threading.Event()
            task = Task(kind, cf.Future(), cancel)
            self._tasks[kind] = task

        def run():
            flag = None
            try:
                if compute:
                    ticket = self._slots.next_ticket()
                    if not self._slots.acquire(cancel, priority, ticket=ticket):   # cancelled while waiting
                        if on_cancel is not None and self._tasks.get(kind) is task:
                            on_cancel()
                        return
                    flag = SlotCheckpoint(cancel, self._slots, priority, ticket)
                result = fn(cancel if flag is None else flag)
            except BaseException as exc:  # report everything; never kill the worker
                if cancel.is_set():
                    if on_cancel is not None and self._tasks.get(kind) is task:
                        on_cancel()
                else:
                    msg = f"{type(exc).__name__}: {exc}"
                    traceback.print_exc()
                    on_error(msg)
                return
            finally:
                if flag is not None and flag.held:
                    self._slots.release()
            if not cancel.is_set() and self._tasks.get(kind) is task:
                on_done(result)
            elif on_cancel is not None and self._tasks.get(kind) is task:
                on_cancel()

        try:
            task.future = self._pool.submit(run)
        except RuntimeError:                    # shut down meanwhile
            return None
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

    def wait_all(self, kinds, timeout: float | None = None, rounds: int = 1) -> None:
        """Block until the running jobs of ``kinds`` end, in order; ``rounds > 1`` waits again for
        jobs that a finished one started (tests, notebooks)."""
        for _ in range(rounds):
            for kind in kinds:
                self.wait(kind, timeout)

    def shutdown(self) -> None:
        """Cancel every job and accept no more (the session is gone)."""
        with self._lock:
            self.closed = True
            tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


def session_dispatch(runner: TaskRunner | None = None):
    """In a served Panel session: a function handing a callable to that session's event loop (so
    results computed on worker threads update the page in order, on one thread); else ``None``.

    The hand-over goes through the server's IOLoop (``add_callback`` is thread-safe), which then
    adds the callable to the document on the loop's own thread: only that thread touches a
    document, because ``doc.add_next_tick_callback`` pushes the document on Bokeh's process-wide
    "current document" stack, where another session rendering at that moment would take this
    session's models.

    Hand-overs made before the browser has rendered the page (``pn.state.onload``) are held and
    applied, in order, once it has, so every state change reaches the browser after its first
    render and none falls between its first pull of the document and the end of that render.

    When the session is destroyed (tab closed, connection lost), ``runner`` is shut down — its
    jobs are cancelled instead of computing for nobody — and later hand-overs are dropped."""
    import panel as pn
    from tornado.ioloop import IOLoop
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return None
    loop = IOLoop.current()
    closed, loaded = threading.Event(), threading.Event()
    held: list = []
    hold = threading.Lock()

    def destroyed(_ctx):
        closed.set()
        if runner is not None:
            runner.shutdown()
    doc.on_session_destroyed(destroyed)

    def on_loop(fn):
        if not closed.is_set():
            try:
                doc.add_next_tick_callback(fn)
            except AttributeError:          # the document was destroyed meanwhile
                closed.set()

    def on_load():
        with hold:
            loaded.set()
            waiting = held[:]
            held.clear()
        for fn in waiting:
            on_loop(fn)
    pn.state.onload(on_load)

    def dispatch(fn):
        if closed.is_set():
            return
        if not loaded.is_set():
            with hold:
                if not loaded.is_set():
                    held.append(fn)
                    return
        loop.add_callback(on_loop, fn)
    return dispatch
