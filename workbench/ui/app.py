"""The multi-page workbench served by ``panel serve apps/``."""

from __future__ import annotations

import holoviews as hv
import panel as pn
import param

from .playground import NoisePlayground

#: page id -> (title, factory); later chapters add their pages here
PAGES = {"playground": ("Noise playground", NoisePlayground)}


class Workbench(pn.viewable.Viewer):
    """One tab per page; the open page is part of the URL (``?page=...``)."""

    page = param.Selector(default="playground", objects=list(PAGES))

    def __init__(self, **params):
        super().__init__(**params)
        self._pages = {key: factory() for key, (title, factory) in PAGES.items()}
        self._tabs = pn.Tabs(*[(PAGES[k][0], v) for k, v in self._pages.items()], dynamic=True, sizing_mode="stretch_width")
        keys = list(PAGES)
        self._tabs.active = keys.index(self.page)
        self._tabs.param.watch(lambda e: setattr(self, "page", keys[e.new]), "active")
        self.param.watch(lambda e: setattr(self._tabs, "active", keys.index(e.new)), "page")
        if pn.state.location is not None:
            pn.state.location.sync(self, {"page": "page"})

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
