"""Panel and HoloViews loaded with nothing fetched from outside the machine (app and notebooks)."""

from __future__ import annotations

import holoviews as hv
import panel as pn
from bokeh.models import UIElement
from panel.io.notebook import patch_inline_stylesheets
from panel.viewable import Viewable


def extension() -> None:
    """Load the Panel/HoloViews extensions for the workbench, offline.

    The one call for the app (``apps/main.py``) and for notebooks (``from workbench.ui import
    extension; extension()``).  A served page gets BokehJS and Panel's scripts, styles and fonts
    from ``panel serve`` itself; a notebook has no such server, so there every script and style
    sheet is written inline into the output (``inline=True``): plots and embedded pages then
    render behind a firewall, where the default CDN links leave them blank."""
    served = pn.state.curdoc is not None and pn.state.curdoc.session_context is not None
    pn.extension("tabulator", sizing_mode="stretch_width", notifications=False, inline=not served,
                 global_loading_spinner=served)
    hv.extension("bokeh", logo=False, inline=not served)
    # Panel has no public hook that runs on every model it sends to a notebook; its preprocessing
    # hooks are the documented extension point of Viewable subclasses
    hooks = Viewable._preprocessing_hooks  # noqa: SLF001
    if not served and _inline_stylesheets not in hooks:
        hooks.append(_inline_stylesheets)


def _inline_stylesheets(viewable, root, changed=None, old_models=None) -> None:
    """Panel inlines the style sheets of a notebook output's first render, but models made later
    (a page that redraws a plot when a result arrives, a loading spinner) link theirs to Panel's
    CDN: inline every such sheet before the update is sent, so embedded pages keep their styles
    offline."""
    for model in root.select({"type": UIElement}):
        patch_inline_stylesheets(model)


#: the presenter view (``?present=1``): larger type for a projector.  Fixed sizes, not ``em``: the
#: variables are read again inside every nested component, so a relative size would compound.
#: Font sizes and these variables are inherited through the pages' shadow roots.
PRESENT_CSS = """
:host(.wb-present) {
  font-size: 19px;
  --font-size: 19px;
  --bokeh-font-size: 19px;
  --bokeh-base-font-size: 19px;
  --panel-font-size: 19px;
  --line-height: 1.4;
}
"""
