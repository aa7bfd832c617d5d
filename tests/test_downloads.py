"""Out of every page: beside a plot, its figure (drawn on the server) and the data behind it, named
after the page, the plot and its knobs; the data file loads back and holds what the plot shows."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from workbench.experiments import Store
from workbench.experiments.sweep import SHARPNESS_SPEC, load_spec, stored_experiment

pytestmark = pytest.mark.browser


def download(page, scope, ext: str):
    """Click the ``ext`` download of the first download bar inside ``scope``; its (name, bytes)."""
    with page.expect_download(timeout=120_000) as info:
        scope.locator(f".download-{ext} button").first.click()
    d = info.value
    return d.suggested_filename, open(d.path(), "rb").read()


def test_the_sharpness_page_downloads_its_robustness_figure_and_data(served_app, page):
    page.goto(f"{served_app}/apps?page=sharpness")
    plot = page.locator(".robustness-plot")
    plot.first.wait_for(timeout=120_000)
    name, png = download(page, page, "png")
    assert name.startswith("sharpness-robustness-multiplicative") and name.endswith(".png")
    assert png.startswith(b"\x89PNG")
    name, data = download(page, page, "nc")
    got = xr.open_dataset(io.BytesIO(data))
    study = stored_experiment("robustness", load_spec(SHARPNESS_SPEC)["experiments"]["robustness"], Store())
    np.testing.assert_allclose(got.accuracy_mean.values, study.accuracy_mean.values)
    assert "spec_json" in got.attrs
    name, csv = download(page, page, "csv")
    frame = pd.read_csv(io.StringIO(csv.decode()), comment="#")
    assert len(frame) == study.accuracy.size and set(study.accuracy.dims) <= set(frame.columns)


def test_the_sweep_page_downloads_its_cells(served_app, page):
    page.goto(f"{served_app}/apps?page=sweep")
    page.locator(".download-csv").first.wait_for(timeout=120_000)
    name, csv = download(page, page, "csv")
    assert name == "sweep-cells-dask_demo.csv"
    frame = pd.read_csv(io.StringIO(csv.decode()), comment="#")
    assert len(frame) == 37 and set(frame.state) <= {"stored", "missing", "done"}
    name, pdf = download(page, page, "pdf")
    assert pdf.startswith(b"%PDF")
