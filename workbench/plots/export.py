"""Figures and data out of the workbench, rendered on the server without a browser.

A page's plot is a HoloViews object styled for Bokeh (the browser).  :func:`render` draws the same
object with HoloViews' matplotlib backend — the options that mean the same in both (log axes,
limits, titles, colours, line widths, markers, legends) carried across — to PNG, PDF or SVG bytes.
:func:`data_bytes` writes the Dataset behind a plot as netCDF or CSV, its spec in the attributes
(netCDF) or in ``#`` header lines (CSV).  The download buttons of the pages and ``workbench figure``
both use these two functions.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from typing import Any

import holoviews as hv
import pandas as pd
import xarray as xr

from ..knobs import check_choice

FIGURE_FORMATS = ("png", "pdf", "svg")
DATA_FORMATS = ("nc", "csv")

#: Bokeh style names -> matplotlib's, where they differ
_STYLE_NAMES = {"line_width": "linewidth", "line_dash": "linestyle", "fill_color": "facecolor",
                "line_color": "edgecolor", "fill_alpha": "alpha", "size": "s"}
_DASHES = {"dashed": "--", "dotted": ":", "dotdash": "-.", "dashdot": "-.", "solid": "-"}
_MARKERS = {"circle": "o", "triangle": "^", "square": "s", "diamond": "D", "cross": "x", "x": "x",
            "inverted_triangle": "v", "star": "*", "plus": "+"}
#: plot options that mean the same in both backends
_PLOT_KEYS = ("logx", "logy", "xlim", "ylim", "title", "xrotation", "yrotation", "invert_axes", "show_legend",
              "legend_position", "xticks", "yticks", "xlabel", "ylabel", "invert_yaxis", "invert_xaxis", "stacked")
_mpl_loaded = False


def backends() -> None:
    """Load Bokeh (the plots are written for it) and matplotlib (the figures are drawn with it),
    without a notebook or a display; Bokeh stays the current backend."""
    global _mpl_loaded
    if not _mpl_loaded:
        import matplotlib
        matplotlib.use("Agg")
        import holoviews.plotting.bokeh  # noqa: F401
        import holoviews.plotting.mpl  # noqa: F401
        hv.Store.set_current_backend("bokeh")
        _mpl_loaded = True


def _allowed(el, group: str) -> set[str]:
    try:
        return set(hv.Store.options(backend="matplotlib")[type(el).__name__].groups[group].allowed_keywords)
    except (KeyError, AttributeError):
        return set()


def _convert(el):
    plot = hv.Store.lookup_options("bokeh", el, "plot").kwargs
    style = hv.Store.lookup_options("bokeh", el, "style").kwargs
    out: dict[str, Any] = {k: plot[k] for k in _PLOT_KEYS if k in plot}
    if "legend_position" in out:
        out["legend_position"] = "right"            # outside the axes: a page's inner legend may hide data
    if isinstance(out.get("title"), str):
        out["title"] = re.sub(r",\s*click[^()]*", "", out["title"])   # page hints mean nothing on paper
    allowed_style = _allowed(el, "style")
    for k, v in style.items():
        name = _STYLE_NAMES.get(k, k)
        if name == "linestyle":
            v = _DASHES.get(v, v)
        if name == "marker":
            v = _MARKERS.get(v, v)
        if name == "s" and isinstance(v, (int, float)):
            v = v ** 2                               # Bokeh sizes a marker by diameter, matplotlib by area
        if name in allowed_style and not callable(v) and not isinstance(v, hv.Cycle):
            out[name] = v
    allowed = _allowed(el, "plot") | allowed_style
    out = {k: v for k, v in out.items() if k in allowed}
    cmap = style.get("cmap", plot.get("cmap"))
    if isinstance(el, hv.Bars) and isinstance(cmap, (list, tuple)) and "color" in allowed_style:
        out["color"] = hv.Cycle(list(cmap))          # a category's colour: Bokeh's cmap list, matplotlib's cycle
    return el.opts(backend="matplotlib", clone=True, **out) if out else el


def to_matplotlib(obj):
    """``obj`` with its Bokeh options carried over to the matplotlib backend (a copy)."""
    backends()
    if isinstance(obj, (hv.Overlay, hv.Layout, hv.NdOverlay)):
        return _convert(obj.map(_convert, [hv.Element]))
    return _convert(obj)


def render(obj, fmt: str = "png", size: tuple[float, float] | None = None, dpi: int = 150) -> bytes:
    """The figure of ``obj`` as ``fmt`` (png, pdf, svg) bytes, drawn by matplotlib; ``size`` in
    inches (default 8 × 4.5, and 4.5 more in height for each further panel of a layout)."""
    check_choice("format", fmt, FIGURE_FORMATS)
    fig_obj = to_matplotlib(obj)
    if size is None:
        panels = len(obj) if isinstance(obj, hv.Layout) else 1
        size = (8.0, 4.5 * panels)
    renderer = hv.renderer("matplotlib").instance(dpi=dpi, fig=fmt)
    fig = renderer.get_plot(fig_obj).state
    fig.set_size_inches(*size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)     # axes with outside legends: a best effort
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def _plain_attrs(attrs: dict) -> dict:
    """Attributes netCDF can hold: numbers and strings as they are, anything else as JSON."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            out[k] = v
        else:
            out[k] = json.dumps(v, default=str)
    return out


def data_bytes(ds: xr.Dataset | xr.DataArray, fmt: str = "nc", spec: dict | None = None) -> bytes:
    """The data behind a plot as netCDF or CSV bytes; ``spec`` (what produced it) is stored in the
    attributes (``spec_json``) or as ``# key: value`` header lines of the CSV."""
    check_choice("format", fmt, DATA_FORMATS)
    if isinstance(ds, xr.DataArray):
        ds = ds.to_dataset(name=ds.name or "value")
    attrs = dict(ds.attrs)
    if spec is not None:
        attrs["spec_json"] = json.dumps(spec, sort_keys=True, default=str)
    if fmt == "nc":
        out = ds.copy()
        out.attrs = _plain_attrs(attrs)
        for v in out.variables.values():
            v.attrs = _plain_attrs(v.attrs)
            if v.dtype == object:
                v.values = v.values.astype(str)
        return out.to_netcdf(engine="h5netcdf") if _has_h5() else bytes(out.to_netcdf())
    numeric = [n for n, v in ds.data_vars.items() if v.dims]
    frame = ds[numeric].to_dataframe().reset_index() if numeric else pd.DataFrame()
    head = "".join(f"# {k}: {json.dumps(v, default=str) if not isinstance(v, str) else v}\n"
                   for k, v in attrs.items())
    return (head + frame.to_csv(index=False)).encode()


def _has_h5() -> bool:
    try:
        import h5netcdf  # noqa: F401
    except ImportError:
        return False
    return True


def file_name(*parts: Any, ext: str) -> str:
    """A download's name from the page, the plot and the key knobs: ``sram-fig4.2-p_t=0.01.png``."""
    words = [re.sub(r"[^A-Za-z0-9_.=+-]+", "_", str(p)).strip("_") for p in parts if p not in (None, "")]
    return "-".join(w for w in words if w) + f".{ext}"


__all__ = ["DATA_FORMATS", "FIGURE_FORMATS", "backends", "data_bytes", "file_name", "render", "to_matplotlib"]
