"""The multi-page workbench served by ``panel serve apps/``."""

from __future__ import annotations

import holoviews as hv
import panel as pn
import param

from .crossbar import CrossbarPage
from .playground import NoisePlayground
from .sharpness import SharpnessPage
from .sram import SRAMPage
from .sweep import SweepPage

#: page id -> (title, factory); later chapters add their pages here
PAGES = {"playground": ("Noise playground", NoisePlayground), "sram": ("Under-volted SRAM", SRAMPage),
         "sharpness": ("Sharpness & robustness", SharpnessPage), "crossbar": ("Crossbar power & search", CrossbarPage),
         "sweep": ("Sweeps", SweepPage)}


class Workbench(pn.viewable.Viewer):
    """One tab per page; the open page is part of the URL (``?page=...``)."""

    page = param.Selector(default="playground", objects=list(PAGES))

    def __init__(self, **params):
        loc = pn.state.location
        if "page" not in params and loc is not None and loc.query_params.get("page") in PAGES:
            params["page"] = loc.query_params["page"]      # build only the page the URL opens
        super().__init__(**params)
        # pages are built when first opened: each starts its own background work
        self._pages: dict[str, pn.viewable.Viewer] = {}
        self._slots = {key: pn.Column(sizing_mode="stretch_width") for key in PAGES}
        self._tabs = pn.Tabs(*[(PAGES[k][0], slot) for k, slot in self._slots.items()], sizing_mode="stretch_width")
        keys = list(PAGES)
        self._tabs.active = keys.index(self.page)
        self._open(self.page)
        self._tabs.param.watch(lambda e: setattr(self, "page", keys[e.new]), "active")
        self.param.watch(lambda e: self._open(e.new), "page")
        self.param.watch(lambda e: setattr(self._tabs, "active", keys.index(e.new)), "page")
        if pn.state.location is not None:
            pn.state.location.sync(self, {"page": "page"})

    def _open(self, key: str) -> None:
        if key not in self._pages:
            self._pages[key] = page = PAGES[key][1]()
            self._slots[key].objects = [page]

    def __panel__(self):
        header = pn.pane.Markdown(
            "## Deep learning on unreliable low-energy memory\n"
            "Trade memory energy against accuracy: drag the noise of an under-volted SRAM or a memristor "
            "crossbar and watch a trained network respond.", sizing_mode="stretch_width")
        return pn.Column(header, self._tabs, sizing_mode="stretch_width")


def extension() -> None:
    """Load the Panel/HoloViews extensions (served from the app itself, no CDN)."""
    pn.extension(sizing_mode="stretch_width", notifications=False)
    hv.extension("bokeh", logo=False)
