"""The multi-page workbench served by ``panel serve apps/``."""

from __future__ import annotations

import panel as pn
import param

from .accelerator import AcceleratorPage
from .crossbar import CrossbarPage
from .lessons import LessonsPage
from .playground import NoisePlayground
from .resources import PRESENT_CSS, extension
from .sharpness import SharpnessPage
from .sram import SRAMPage
from .sweep import SweepPage
from .urlstate import URLBar, make_search, parse_search

#: page id -> (title, factory); later chapters add their pages here
PAGES = {"playground": ("Noise playground", NoisePlayground), "sram": ("Under-volted SRAM", SRAMPage),
         "sharpness": ("Sharpness & robustness", SharpnessPage), "crossbar": ("Crossbar power & search", CrossbarPage),
         "sweep": ("Sweeps", SweepPage), "accelerator": ("Accelerator", AcceleratorPage)}
#: guided walks over the pages above (``?page=lessons&lesson=NAME&step=K``)
PAGES["lessons"] = ("Lessons", LessonsPage)
#: a query key of the whole app, not of a page: ``?present=1`` is the presenter view
PRESENT_KEY = "present"


def checking_page(key: str):
    """The link keys (a :class:`PageURL`) of a fresh page ``key`` that computes nothing: its explorer
    starts no work (no load, every job refused), so a lesson's states can be applied and read back
    as a link's would be (``workbench lesson check``)."""
    import holoviews.plotting.bokeh  # noqa: F401  (pages draw their first plots when built)

    page_class = PAGES[key][1]
    explorer_class = getattr(page_class, "explorer_class", None)
    if explorer_class is None:
        return page_class().url
    explorer = explorer_class(autorun=False)
    # a checked state is only applied and read back: any job it would start is dropped
    explorer.launch = lambda *args, **kwargs: False
    return page_class(explorer=explorer).url


class Workbench(pn.viewable.Viewer):
    """One tab per page.  The open page and its whole state live in the URL (``?page=sram&p_t=0.01``):
    a link opens that state, every change of a setting is a browser history entry, Back and Forward
    step through them, and a link's unknown or out-of-range values are refused by name while the
    rest of it applies."""

    page = param.Selector(default="playground", objects=list(PAGES))
    present = param.Boolean(False, doc="presenter view: larger fonts, no header, laid out for a projector")
    notice = param.List(
        default=[], precedence=-1, doc="the settings of the last link that were not used, one sentence each"
    )

    def __init__(self, **params):
        loc = pn.state.location
        query = parse_search(loc.search) if loc is not None and "page" not in params else {}
        refused = []
        if PRESENT_KEY in query and "present" not in params:
            params["present"] = query.pop(PRESENT_KEY).strip().lower() in ("1", "true", "yes", "on")
        key = query.pop("page", None)
        if key is not None:
            if key in PAGES:
                params["page"] = key            # build only the page the URL opens
            else:
                refused.append(f"`page={key}` was not used: there is no such page (pages: {', '.join(PAGES)})")
        super().__init__(**params)
        # pages are built when first opened: each starts its own background work
        self._pages: dict[str, pn.viewable.Viewer] = {}
        self._slots = {key: pn.Column(sizing_mode="stretch_width") for key in PAGES}
        self._tabs = pn.Tabs(*[(PAGES[k][0], slot) for k, slot in self._slots.items()], sizing_mode="stretch_width")
        self._bar = URLBar(width=0, height=0, margin=0)
        self._bar.on_pop = self._popped
        self._write_pending = False
        self._applying = False
        #: the page the open lesson step drives (shown in the Lessons tab while it is open)
        self._lesson_page: str | None = None
        #: the page shown beside the lesson step now (None: every page is in its own tab)
        self._beside: str | None = None
        keys = list(PAGES)
        self._tabs.active = keys.index(self.page)
        self._tabs.param.watch(lambda e: setattr(self, "page", keys[e.new]), "active")
        self.param.watch(self._page_changed, "page")
        self._first_open(refused, query)

    def _first_open(self, refused: list[str], query: dict[str, str]) -> None:
        self._open(self.page)
        self.notice = refused + self._apply(self.page, query)
        self._write(replace=True)

    # ------------------------------------------------------------------ pages
    def _open(self, key: str) -> None:
        if key not in self._pages:
            self._pages[key] = page = PAGES[key][1]()
            self._slots[key].objects = [page]
            url = getattr(page, "url", None)
            if url is not None:
                url.watch(lambda key=key: self._changed(key))
            if isinstance(page, LessonsPage):
                page.show_step = self.show_step

    def page_object(self, key: str) -> pn.viewable.Viewer:
        """The page ``key`` of this session (built when first asked for)."""
        self._open(key)
        return self._pages[key]

    def show_step(self, key: str, state: dict[str, str]) -> list[str]:
        """Apply a lesson step's ``state`` to the real page ``key`` of this session (as a link's
        values are applied) and show that page beside the step; the refusals, one sentence each."""
        self._open(key)
        self._lesson_page = key
        self._place()
        refused = self._apply(key, state)
        self._lesson_state()
        return refused

    def _place(self) -> None:
        """Put the open lesson's page beside the step while the Lessons tab is shown, and back in its
        own tab otherwise (one Panel object is shown in one place at a time)."""
        lessons = self._pages.get("lessons")
        if lessons is None:
            return
        beside = self._lesson_page if self.page == "lessons" and lessons.lesson else None
        if beside == self._beside:
            return
        if self._beside is not None:                 # back to its own tab
            self._slots[self._beside].objects = [self._pages[self._beside]]
        if beside is not None:
            self._slots[beside].objects = []
            lessons.live.objects = [self._pages[beside]]
        else:
            lessons.live.objects = []
        self._beside = beside

    def _lesson_state(self) -> None:
        lessons = self._pages.get("lessons")
        key = self._lesson_page
        if lessons is not None and key is not None:
            url = getattr(self._pages[key], "url", None)
            lessons.page_state = make_search({"page": key, **(url.query() if url is not None else {})})

    def _page_changed(self, event) -> None:
        self._open(event.new)
        self._place()
        keys = list(PAGES)
        self._tabs.active = keys.index(event.new)
        if not self._applying:
            self.notice = []
            self._write()

    def _apply(self, key: str, query: dict[str, str]) -> list[str]:
        url = getattr(self._pages[key], "url", None)
        if url is None:
            return [f"`{k}` is not a setting of this page" for k in query]
        # a lesson step applies its page's state while the lesson's own link is applied: restore, not clear
        outer, self._applying = self._applying, True
        try:
            return url.apply(query)
        finally:
            self._applying = outer

    # ------------------------------------------------------------------ the address bar
    def query(self) -> dict[str, str]:
        """The query string of the open page's state (what a link to it holds)."""
        url = getattr(self._pages.get(self.page), "url", None)
        return {"page": self.page, **(url.query() if url is not None else {}),
                **({PRESENT_KEY: "1"} if self.present else {})}

    def _changed(self, key: str) -> None:
        if key == "lessons":
            self._place()
        elif key == self._lesson_page:
            self._lesson_state()
        if key != self.page or self._applying:
            return
        doc = pn.state.curdoc
        # a lesson's step moves lesson and step in one batch: one entry, written at once
        if key != "lessons" and doc is not None and doc.session_context is not None:
            # one history entry for one action, however many settings it moved
            if not self._write_pending:
                self._write_pending = True
                doc.add_next_tick_callback(self._write)
        else:
            self._write()

    def _write(self, replace: bool = False) -> None:
        self._write_pending = False
        search = make_search(self.query())
        self._bar.search = ("replace:" if replace else "") + search

    def _popped(self, search: str) -> None:
        """Back / Forward: open the page and state of that history entry."""
        query = parse_search(search)
        query.pop(PRESENT_KEY, None)
        key = query.pop("page", "playground")
        refused = []
        if key not in PAGES:
            refused.append(f"`page={key}` was not used: there is no such page (pages: {', '.join(PAGES)})")
            key = self.page
        self._applying = True
        try:
            self.page = key
        finally:
            self._applying = False
        self.notice = refused + self._apply(key, query)
        self._bar.param.update(search="replace:" + make_search(self.query()))

    @param.depends("notice")
    def _notice(self):
        if not self.notice:
            return pn.pane.Markdown("", visible=False, margin=0)
        return pn.pane.Alert(
            "**Some settings in this link were not used** — the page shows everything else it asked for:\n\n"
            + "\n".join(f"- {line}" for line in self.notice),
            alert_type="warning",
            sizing_mode="stretch_width",
        )

    def __panel__(self):
        header = pn.pane.Markdown(
            "## Deep learning on unreliable low-energy memory\n"
            "Trade memory energy against accuracy: drag the noise of an under-volted SRAM or a memristor "
            "crossbar and watch a trained network respond.", sizing_mode="stretch_width")
        if self.present:
            return pn.Column(self._notice, self._tabs, self._bar, sizing_mode="stretch_width",
                             css_classes=["wb-present"], stylesheets=[PRESENT_CSS])
        return pn.Column(header, *self._server_line(), self._notice, self._tabs, self._bar,
                         sizing_mode="stretch_width")

    @staticmethod
    def _server_line() -> list:
        """Who is signed in (when the operator asked for a login) and whether this is a shared server."""
        from .settings import current
        parts = []
        user = pn.state.user
        if user:
            parts.append(f"Signed in as **{user}** · [sign out](./logout)")
        if current().shared:
            parts.append("Shared server: its operator caps what one session may run (refusals name the setting)")
        return [pn.pane.Markdown(" — ".join(parts), css_classes=["server-line"], margin=(0, 10))] if parts else []


__all__ = ["PAGES", "Workbench", "extension"]
