"""Figures and data out of the workbench: every catalogued thesis figure renders to PDF from the
shipped store without a browser, and a plot's data round-trips through netCDF and CSV."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from workbench.experiments import Store
from workbench.knobs import KnobError
from workbench.plots.export import data_bytes, file_name, render
from workbench.plots.figures import figure_data, figure_list, figures, save_figure


def test_the_catalogue_lists_at_least_twelve_thesis_figures_with_their_commands():
    lines = figure_list()
    assert len(lines) == len(figures()) >= 12
    thesis = {f.thesis.split(" (")[0] for f in figures().values()}
    assert len(thesis) >= 12
    for line, fig in zip(lines, figures().values()):
        name, number, command = line.split("\t")
        assert (name, number) == (fig.name, fig.thesis)
        assert command.startswith("workbench sweep specs/") or fig.spec is None


@pytest.mark.parametrize("name", list(figures()))
def test_every_figure_renders_to_pdf_from_the_shipped_store(name, tmp_path):
    out = save_figure(name, tmp_path / f"{name}.pdf")
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 5000


def test_a_figure_whose_data_is_not_stored_names_the_command(tmp_path):
    with pytest.raises(KnobError, match="workbench sweep specs/sram_digits.json --only uniform_ber"):
        figure_data("fig4.2", Store(tmp_path / "empty", read_only=[]))
    with pytest.raises(KnobError, match="figure='fig9.9' is not valid"):
        figure_data("fig9.9")
    with pytest.raises(KnobError, match=r"must end in one of \.png, \.pdf, \.svg"):
        save_figure("fig5.1", tmp_path / "x.jpg")


def test_png_and_svg_too():
    from workbench.plots.figures import figure_plot
    plot = figure_plot("fig5.1")
    assert render(plot, "png").startswith(b"\x89PNG")
    assert b"<svg" in render(plot, "svg")[:400]


def test_the_data_behind_a_plot_round_trips_through_netcdf_and_csv():
    ds = figure_data("fig4.2")
    spec = {"experiment": "uniform_ber", "draws": 3}
    back = xr.open_dataset(io.BytesIO(data_bytes(ds, "nc", spec)))
    np.testing.assert_array_equal(back.accuracy_mean.values, ds.accuracy_mean.values)
    assert json.loads(back.attrs["spec_json"]) == spec
    text = data_bytes(ds, "csv", spec).decode()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(line.startswith("# spec_json:") for line in header)
    frame = pd.read_csv(io.StringIO(text), comment="#")
    pivot = frame.pivot_table(index="p_train", columns="p", values="accuracy_mean")
    np.testing.assert_allclose(pivot.values, ds.accuracy_mean.transpose("p_train", "p").values)


def test_file_names_are_made_of_the_page_the_plot_and_the_knobs():
    assert file_name("sram", "fig4.2", "p_t=0.01", ext="png") == "sram-fig4.2-p_t=0.01.png"
    assert file_name("crossbar", "pareto front", "g_u/µS", ext="csv") == "crossbar-pareto_front-g_u_S.csv"


def test_the_figure_command_lists_and_renders(tmp_path, capsys):
    from workbench.cli import main
    assert main(["figure", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 12 and lines[0].split("\t")[:2] == ["fig4.1", "Fig 4.1"]
    assert main(["figure", "fig6.2", "--out", str(tmp_path / "f.svg"), "--json"]) == 0
    assert (tmp_path / "f.svg").read_bytes().lstrip().startswith(b"<?xml")
    assert main(["figure", "fig6.2", "--out", str(tmp_path / "f.jpg")]) == 2
    assert "must end in one of" in capsys.readouterr().err


def test_stacked_bars_keep_their_stacking_and_category_colours_on_paper():
    import holoviews as hv
    from PIL import Image
    hv.extension("bokeh")
    red, green = (255, 0, 0), (0, 200, 0)
    bars = hv.Bars([("a", "x", 1.0), ("a", "y", 2.0), ("b", "x", 1.5), ("b", "y", 0.5)], ["layer", "component"],
                   "energy").opts(stacked=True, cmap=["#ff0000", "#00c800"])
    img = np.asarray(Image.open(io.BytesIO(render(bars, "png", size=(4, 3), dpi=50))).convert("RGB")).astype(int)

    def columns_with(rgb):
        return set(np.nonzero((np.abs(img - np.array(rgb)).max(axis=-1) < 30).any(axis=0))[0])
    r, g = columns_with(red), columns_with(green)
    assert r and g
    assert len(r & g) > 0.8 * min(len(r), len(g))      # stacked: both colours in the same columns, not side by side
