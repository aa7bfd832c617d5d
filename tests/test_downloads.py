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
        scope.locator(f".download-{ext} button >> visible=true").first.click()
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
    page.locator(".download-csv button >> visible=true").first.wait_for(timeout=120_000)
    name, csv = download(page, page, "csv")
    assert name == "sweep-cells-dask_demo.csv"
    frame = pd.read_csv(io.StringIO(csv.decode()), comment="#")
    assert len(frame) == 37 and set(frame.state) <= {"stored", "missing", "done"}
    name, pdf = download(page, page, "pdf")
    assert pdf.startswith(b"%PDF")


def test_the_playground_downloads_its_readout_figure_and_data(served_app, page):
    page.goto(f"{served_app}/apps?page=playground&p=0.01")
    page.locator(".download-nc button >> visible=true").first.wait_for(timeout=120_000)
    shown = page.get_by_text("Mean accuracy").first.inner_text()
    name, data = download(page, page, "nc")
    assert name == "playground-accuracy-sram-p=0.01.nc"
    got = xr.open_dataset(io.BytesIO(data))
    assert f"{float(got.accuracy.mean()):.3f}" in shown
    name, pdf = download(page, page, "pdf")
    assert name.endswith(".pdf") and pdf.startswith(b"%PDF")


def test_the_sram_page_downloads_fig_4_2(served_app, page):
    from workbench.experiments.sweep import SRAM_SPEC
    page.goto(f"{served_app}/apps?page=sram")
    page.locator(".download-csv button >> visible=true").first.wait_for(timeout=120_000)
    name, csv = download(page, page, "csv")
    assert name.startswith("sram-fig4.2-p_t=")
    frame = pd.read_csv(io.StringIO(csv.decode()), comment="#")
    study = stored_experiment("uniform_ber", load_spec(SRAM_SPEC)["experiments"]["uniform_ber"], Store())
    got = frame.pivot_table(index="p_train", columns="p", values="accuracy_mean").values
    np.testing.assert_allclose(got, study.accuracy_mean.transpose("p_train", "p").values)
    name, png = download(page, page, "png")
    assert png.startswith(b"\x89PNG")


def test_the_crossbar_page_downloads_its_pareto_fronts(served_app, page):
    from workbench.experiments.sweep import CROSSBAR_SPEC
    page.goto(f"{served_app}/apps?page=crossbar&tab=fronts")
    page.locator(".download-nc button >> visible=true").first.wait_for(timeout=180_000)
    name, data = download(page, page, "nc")
    assert name == "crossbar-fig6.2.nc"
    got = xr.open_dataset(io.BytesIO(data))
    study = stored_experiment("nas", load_spec(CROSSBAR_SPEC)["experiments"]["nas"], Store())
    np.testing.assert_allclose(got.hypervolume.values, study.hypervolume.values)
    name, pdf = download(page, page, "pdf")
    assert pdf.startswith(b"%PDF")


def test_the_accelerator_page_downloads_its_energy_bars(served_app, page):
    page.goto(f"{served_app}/apps?page=accelerator")
    page.locator(".download-nc button >> visible=true").first.wait_for(timeout=180_000)
    name, data = download(page, page, "nc")
    assert name.startswith("accelerator-energy") and name.endswith(".nc")
    got = xr.open_dataset(io.BytesIO(data))
    # the page's default setting is a shipped cell: the file holds that result, whose breakdown is the bars
    stored = Store().load_dataset("evaluate", got.attrs["cache_key"])
    np.testing.assert_allclose(got.layer_energy_j.values, stored.layer_energy_j.values)
    np.testing.assert_allclose(got.layer_energy_j.sum(("layer", "component")).values, got.energy_j.values, rtol=1e-9)
    name, csv = download(page, page, "csv")
    frame = pd.read_csv(io.StringIO(csv.decode()), comment="#")
    assert "layer_energy_j" in frame.columns and len(frame) > 0
    name, pdf = download(page, page, "pdf")
    assert pdf.startswith(b"%PDF")
