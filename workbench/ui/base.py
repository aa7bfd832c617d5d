"""What the chapter pages share: background state (status, error, progress, a task runner whose
results reach the page through ``dispatch``) and a page shell around one such state object."""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, Callable

import panel as pn
import param
import xarray as xr

from ..knobs import KnobError
from .settings import KNOB_CAPS, SessionQuota, session_quota
from .tasks import TaskRunner, session_dispatch


def result_param(doc: str | None = None) -> param.ClassSelector:
    """A result a background job writes (a Dataset; None until it arrives); no widget."""
    return param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True, precedence=-1, doc=doc)


class BackgroundState(param.Parameterized):
    """Status, error and progress of a page's background work (no Panel here).

    Every job starts through :meth:`launch`; results come back through :meth:`_set`, which hands
    the update to ``dispatch`` (the session's event loop in a served page, a direct call elsewhere).
    A failed job sets ``error`` and leaves every earlier result as it was.

    The operator's caps (:mod:`.settings`) hold here, for every page: a knob of :data:`KNOB_CAPS`
    (epochs, draws, population, ...) set above its cap is refused (the value stays, ``error`` names
    the setting, the setter gets a :class:`~workbench.knobs.KnobError`), and a job of a counted
    class (``job_class``) beyond the session's quota is refused before it starts."""

    running = param.Boolean(False, precedence=-1)
    progress = param.Integer(0, bounds=(0, 100), precedence=-1)
    status = param.String("", precedence=-1)
    error = param.String("", precedence=-1)
    cancel = param.Event(doc="cancel the running job")

    #: the runner's job kinds that :meth:`wait` waits for, and how many rounds (a job whose result
    #: starts another needs two)
    job_kinds: tuple[str, ...] = ()
    wait_rounds: int = 1
    #: the kind of the page's long run: the one ``running``/``progress`` follow and ``cancel`` stops
    cancel_kind: str = ""

    def __init__(self, **params):
        super().__init__(**params)
        self.runner = TaskRunner()
        self.quota: SessionQuota = session_quota()
        self.dispatch: Callable[[Callable[[], None]], None] = lambda fn: fn()
        self._cancelling: tuple[str, str] | None = None
        capped = [k for k in KNOB_CAPS if k in self.param and isinstance(self.param[k], param.Number)]
        for knob in capped:                  # a default above the operator's cap starts at the cap
            cap = self.quota.settings.cap(knob)
            if cap is not None and getattr(self, knob) > cap[0]:
                with param.parameterized.discard_events(self):
                    setattr(self, knob, max(cap[0], (self.param[knob].bounds or (None,))[0] or cap[0]))
        if capped:
            self.param.watch(self._over_cap, capped)

    def _over_cap(self, *events) -> None:
        for event in events:
            refusal = self.quota.settings.refuse_above(event.name, event.new)
            if refusal is not None:
                self.param.update({event.name: event.old})
                self.refuse(refusal)
                raise KnobError(refusal)

    def refuse(self, message: str) -> None:
        """Show that what was asked is not done and why (earlier results stay)."""
        self._set(error=f"Refused: {message}")

    def launch(self, kind: str, job: Callable[[threading.Event], Any], *, label: str | None = None,
               on_done: Callable[[Any], dict | None] | None = None, into: str | None = None,
               cancelled: str | Callable[[], str] = "", cancelling: str = "",
               on_error: Callable[[str], None] | None = None, status_param: str = "status",
               compute: bool = True, priority: int = 1, job_class: str | None = None, **start) -> bool:
        """Run ``job(cancel)`` as this page's job of ``kind`` (replacing a running one of that kind).

        ``label`` (with ``start``, other values to set now) goes to ``status_param`` at once and clears
        ``error``.  On success ``on_done(result)`` returns the values to set (or None when it sets
        them itself); ``into`` names the one param the result goes to instead.  A failure goes to
        ``on_error`` (default :meth:`_fail`).  A job of :attr:`cancel_kind` is the page's long run:
        ``running`` and ``progress`` follow it (``progress`` 100 when done, 0 when ``cancelled``, whose
        text then goes to ``status_param``), and ``cancel`` stops it, showing ``cancelling``.
        ``compute`` and ``priority`` as in :meth:`TaskRunner.submit`.  ``job_class`` (``"training"``,
        ``"curve"``, ``"sweep"``) counts the job against the session's quota: beyond it the job is
        refused (:meth:`refuse`), nothing starts and False is returned."""
        if job_class is not None:
            refusal = self.quota.admit(job_class, self, kind)
            if refusal is not None:
                self.refuse(refusal)
                return False
        tracked = kind == self.cancel_kind
        if label is not None:
            start = {"error": "", status_param: label, **start}
        if tracked:
            start = {"running": True, "progress": 0, **start}
            self._cancelling = (status_param, cancelling) if cancelling else None
        if start:
            self.param.update(**start)
        end = {"running": False} if tracked else {}

        def done(result):
            values = {into: result} if into is not None else (on_done(result) if on_done is not None else None)
            if values is not None or tracked:
                self._set(**end, **({"progress": 100} if tracked else {}), **(values or {}))

        def stopped():
            text = cancelled() if callable(cancelled) else cancelled
            self._set(**end, progress=0, **({status_param: text} if text else {}))

        task = self.runner.submit(kind, job, done, on_error or self._fail, stopped if tracked else None,
                                  compute=compute, priority=priority)
        if job_class is not None:
            self.quota.track(job_class, self, kind, task)
        return task is not None

    @param.depends("cancel", watch=True)
    def _cancel_run(self) -> None:
        if self.runner.cancel(self.cancel_kind) and self._cancelling is not None:
            name, text = self._cancelling
            self.param.update({name: text})

    def _set(self, **values) -> None:
        self.dispatch(partial(self.param.update, **values))

    def _fail(self, message: str, **also) -> None:
        self._set(error=message, running=False, status="failed — earlier results kept", **also)

    def wait(self, timeout: float = 600.0, kinds: tuple[str, ...] | None = None) -> None:
        """Block until the running jobs of ``kinds`` (default: every kind of this page) end."""
        self.runner.wait_all(self.job_kinds if kinds is None else kinds, timeout,
                             rounds=self.wait_rounds if kinds is None else 1)


class ExplorerPage(pn.viewable.Viewer):
    """A page drawn from one :class:`BackgroundState` (``explorer``, an ``explorer_class``, built
    here unless given); subclasses build their widgets after ``super().__init__``."""

    explorer = param.ClassSelector(class_=BackgroundState)
    explorer_class: type[BackgroundState] = BackgroundState

    def __init__(self, **params):
        self._fresh = "explorer" not in params
        if self._fresh:
            params["explorer"] = self.explorer_class(autorun=False)
        elif not isinstance(params["explorer"], self.explorer_class):
            raise TypeError(f"explorer must be a {self.explorer_class.__name__}, "
                            f"not {type(params['explorer']).__name__}")
        super().__init__(**params)
        dispatch = session_dispatch(self.explorer.runner)
        if dispatch is not None:
            self.explorer.dispatch = dispatch

    def _run_controls(self, event: str, label: str) -> None:
        """A start button for the explorer's ``event``, Cancel and a progress bar that follow
        ``explorer.running`` / ``explorer.progress`` (``self._run``, ``self._cancel``, ``self._progress``)."""
        ex = self.explorer
        self._run = pn.widgets.Button.from_param(ex.param[event], label=label, color="success")
        self._cancel = pn.widgets.Button.from_param(ex.param.cancel, label="Cancel", color="danger")
        self._progress = pn.indicators.Progress(value=0, max=100, bar_color="success", sizing_mode="stretch_width",
                                                visible=False)
        ex.param.watch(self._running, ["running", "progress"])
        self._running()

    def _running(self, *_) -> None:
        ex = self.explorer
        self._run.disabled = ex.running
        self._cancel.disabled = not ex.running
        self._progress.visible = ex.running
        self._progress.value = ex.progress

    def _start(self) -> None:
        """Start the explorer's own work once the page's widgets are watching it."""
        if self._fresh:
            self.explorer.load()

    @param.depends("explorer.status", "explorer.error")
    def _status(self):
        ex = self.explorer
        items = [pn.pane.Markdown(f"**Status:** {ex.status or 'ready'}")]
        if ex.error:
            items.append(pn.pane.Alert(plain_error(ex.error), alert_type="danger"))
        return pn.Column(*items, sizing_mode="stretch_width")


#: errors whose message is written for the user (a refused knob, a missing file): shown as they are
_USER_ERRORS = ("KnobError", "ValueError", "FileNotFoundError", "SweepError", "URLValueError")


def plain_error(message: str) -> str:
    """A failed job's one-line report (``"TypeName: message"``, see :class:`TaskRunner`) as the page
    shows it: a refusal of the workbench's own in its words alone; anything else said to be an
    internal error, with its type kept for a bug report."""
    kind, sep, text = message.partition(": ")
    if sep and kind == "Refused":
        return f"**Refused:** {text} — earlier results are kept."
    if sep and kind in _USER_ERRORS:
        return f"**Could not finish:** {text} — earlier results are kept."
    if sep and kind.isidentifier():
        return (f"**Internal error** while computing ({kind}: {text}); earlier results are kept. "
                "Please report it with the page's link.")
    return f"**Could not finish:** {message} — earlier results are kept."


def regenerate_footer(command: str) -> pn.pane.Markdown:
    """The line saying where a page's results come from and which command regenerates them."""
    return pn.pane.Markdown(f"<small>Opens on results shipped in <code>data/store</code>; regenerate them with "
                            f"<code>{command}</code>.</small>")


def spinner(text: str) -> pn.Row:
    return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), text)


def hv_pane(obj) -> pn.pane.HoloViews:
    return pn.pane.HoloViews(obj, linked_axes=False, sizing_mode="stretch_width")


def throttled_link(widget: pn.widgets.Widget, obj: param.Parameterized, name: str,
                   to_widget: Callable[[Any], Any] | None = None) -> pn.widgets.Widget:
    """Link ``widget`` → ``obj.name`` on release (``value_throttled``: one change, one history
    entry, however far the slider is dragged) and ``obj.name`` → widget (a link, Back, a notebook;
    ``to_widget`` maps the value onto the widget's choices).

    A change of ``obj.name`` from elsewhere moves both the widget's ``value`` and its
    ``value_throttled``, so ``value_throttled`` always holds the setting in use and releasing the
    slider on any other value sends that value."""
    syncing = []

    def push(event):
        if not syncing and event.new is not None and getattr(obj, name) != event.new:
            setattr(obj, name, event.new)
    widget.param.watch(push, "value_throttled")

    def pull(event):
        value = to_widget(event.new) if to_widget else event.new
        syncing.append(True)
        try:
            with param.edit_constant(widget):
                widget.param.update(value=value, value_throttled=value)
        finally:
            syncing.pop()
    obj.param.watch(pull, name)
    return widget


def number_field(obj: param.Parameterized, name: str, label: str, width: int | None = None, **kw) -> pn.Column:
    """A number field for ``obj.<name>`` that refuses what the setting does not allow *next to the
    field* (naming the range and the value still in use) instead of clamping it silently; the
    field follows ``obj.<name>`` when it changes elsewhere.  The widget is ``.widget`` of the
    returned column, the message ``.message``."""
    from .urlstate import URLKnob, URLValueError, fmt_number
    p = obj.param[name]
    cls = pn.widgets.IntInput if isinstance(p, param.Integer) else pn.widgets.FloatInput
    widget = cls(label=label, value=getattr(obj, name), width=width, **kw)
    message = pn.pane.Markdown("", visible=False, margin=(0, 10), width=width, styles={"color": "#b3261e"},
                               css_classes=["field-error"])
    knob = URLKnob(name, obj, name, label=label)

    def typed(event):
        if event.new is None:
            message.object = f"{label}: enter a value — still using {fmt_number(getattr(obj, name))}"
            message.visible = True
            return
        try:
            value = knob.from_text(str(event.new))
            setattr(obj, name, value)
        except (URLValueError, ValueError) as exc:
            message.object = f"{exc} — still using {fmt_number(getattr(obj, name))}"
            message.visible = True
            return
        message.visible = False

    def follow(event):
        if widget.value != event.new:
            widget.value = event.new
        message.visible = False
    widget.param.watch(typed, "value")
    obj.param.watch(follow, name)
    box = pn.Column(widget, message, margin=0, width=width, sizing_mode=None if width else "stretch_width")
    box.widget, box.message = widget, message
    return box


def downloads(plot: Callable[[], Any], data: Callable[[], Any], name: Callable[[], list]) -> pn.Row:
    """Downloads beside a plot: its figure (PNG, PDF, drawn on the server by matplotlib) and the
    data behind it (netCDF, CSV, with the spec that produced it), each named from ``name()`` —
    the page, the plot and its key knobs (:func:`~workbench.plots.export.file_name`).  ``plot()``
    returns the HoloViews object shown, ``data()`` its Dataset; both are called on click."""
    import io
    import json

    from ..plots.export import data_bytes, file_name, render

    def spec_of(ds) -> dict | None:
        text = getattr(ds, "attrs", {}).get("spec_json")
        try:
            return json.loads(text) if text else None
        except (TypeError, ValueError):
            return None

    buttons = []
    for label, ext in (("PNG", "png"), ("PDF", "pdf"), ("netCDF", "nc"), ("CSV", "csv")):
        button = pn.widgets.FileDownload(label=label, filename=f"figure.{ext}", color="light", width=78,
                                         height=30, margin=(2, 3), embed=False, css_classes=[f"download-{ext}"])

        def make(ext=ext, button=button):
            button.filename = file_name(*name(), ext=ext)
            if ext in ("png", "pdf"):
                return io.BytesIO(render(plot(), ext))
            ds = data()
            return io.BytesIO(data_bytes(ds, ext, spec_of(ds)))
        button.callback = make
        buttons.append(button)
    return pn.Row(pn.pane.Markdown("<small>download:</small>", margin=(8, 4)), *buttons, margin=0,
                  css_classes=["downloads"])


def about_fold(*items) -> pn.Card:
    """The *About this page* fold: where the results come from and how to regenerate them."""
    return pn.Card(*items, title="About this page", collapsed=True, sizing_mode="stretch_width")
