"""The fair LaNMax study (issue 13 item 3): the energy ratio at equal accuracy and its bootstrap CI
on synthetic frontiers with a known ratio, the study's energy convention, the verdict sentence,
the sweep registration and one tiny real run."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from workbench.experiments.lanmax_study import energy_ratio, lanmax_study, study_energy, verdict
from workbench.experiments.store import Store
from workbench.experiments.sweep import SPEC_DIR, load_spec

pytestmark = pytest.mark.usefixtures("single_thread")

E_GRID = np.array([0.2, 0.4, 0.6, 0.8, 1.0])


def accuracy_of(energy):
    """A baseline frontier, linear in E so that linear interpolation is exact."""
    return 0.5 + 0.45 * np.asarray(energy)


def frontiers(ratio, seeds, sd=0.0, rng=None):
    """Baseline points at E_GRID and LaNMax points reaching the same accuracies at E_GRID / ratio."""
    noise = (lambda: rng.normal(0, sd, (seeds, E_GRID.size))) if sd else (lambda: np.zeros((seeds, E_GRID.size)))
    base = (np.tile(E_GRID, (seeds, 1)), accuracy_of(E_GRID) + noise())
    lan = (np.tile(E_GRID / ratio, (seeds, 1)), accuracy_of(E_GRID) + noise())
    return base, lan


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.4])
def test_known_ratio_is_recovered_exactly_without_noise(ratio):
    base, lan = frontiers(ratio, seeds=3)
    r = energy_ratio(base, lan, target=0.77, boot=200)
    assert r["ratio"] == pytest.approx(ratio, rel=1e-12)
    assert r["ci95_low"] == pytest.approx(ratio, rel=1e-12) and r["ci95_high"] == pytest.approx(ratio, rel=1e-12)
    assert r["baseline_energy"] == pytest.approx(0.6) and r["unreached"] == 0.0


def test_bootstrap_ci_covers_the_true_ratio_at_its_level():
    """Percentile bootstrap over 10 seeds, per-seed accuracy noise: over 200 synthetic studies the
    95 % CI covers the true ratio 2.4 at a rate binomially consistent with ≈ 0.9–0.95 (the
    percentile bootstrap under-covers a little at 10 seeds) and is not trivially wide."""
    rng = np.random.default_rng(13)
    trials, covered = 200, 0
    widths = []
    for i in range(trials):
        base, lan = frontiers(2.4, seeds=10, sd=0.01, rng=rng)
        r = energy_ratio(base, lan, target=0.77, boot=400, seed=i)
        covered += r["ci95_low"] <= 2.4 <= r["ci95_high"]
        widths.append(r["ci95_high"] - r["ci95_low"])
    lo = stats.binomtest(covered, trials).proportion_ci(0.99).low
    hi = stats.binomtest(covered, trials).proportion_ci(0.99).high
    assert hi >= 0.88 and lo <= 0.95, (covered, trials)
    assert covered < trials and 0 < np.median(widths) < 0.5


def test_unreached_target_is_a_loss_not_a_gap():
    base, lan = frontiers(2.0, seeds=3)
    r = energy_ratio(base, lan, target=0.99, boot=100)         # no curve reaches 0.99
    assert np.isnan(r["ratio"]) and r["unreached"] == 1.0
    lan_low = (lan[0], lan[1] - 0.3)                            # LaNMax tops out at 0.65
    r = energy_ratio(base, lan_low, target=0.77, boot=100)
    assert np.isnan(r["ratio"]) and r["ci95_high"] == 0.0 and r["unreached"] == 1.0


def test_mismatched_shapes_are_refused():
    base, lan = frontiers(2.0, seeds=3)
    with pytest.raises(ValueError, match="energy and accuracy"):
        energy_ratio(base, (lan[0], lan[1][:, :2]), target=0.77)


def test_study_energy_is_the_thesis_convention():
    counts = {"a": 100, "b": 300}
    assert study_energy({"a": 0.01, "b": 0.01}, counts, 400) == pytest.approx(0.3598, abs=1e-4)   # η(0.01), §4.4
    assert study_energy({"a": 1e-4, "b": 1e-4}, counts, 400) == pytest.approx(0.7196, abs=1e-4)
    assert study_energy({"a": 0.0, "b": 0.0}, counts, 800) == pytest.approx(0.5)   # half the weights, reliable


def test_verdict_says_win_loss_or_neither():
    assert verdict(2.0, 1.5, 2.6).startswith("LaNMax wins: a uniform BER needs 2.00×")
    assert verdict(0.5, 0.4, 0.7).startswith("LaNMax loses: it needs 2.00× the energy")
    assert verdict(1.1, 0.8, 1.4).startswith("No clear winner")
    assert "2.4×" in verdict(float("nan"), 0.0, 0.0) and "does not reach" in verdict(float("nan"), 0.0, 0.0)


def test_shipped_spec_is_registered():
    spec = load_spec(SPEC_DIR / "lanmax_study.json")
    params = spec["experiments"]["lanmax_study"]
    assert len(params["seeds"]) >= 3 and params["alphas"] == [0.1, 0.05, 0.03, 0.02, 0.01, 0.001, 0.0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return lanmax_study({"thesis": {"batch_size": 64, "lanmax": {}}}, [0.1], [0.1], [1.0], [0], epochs=1, draws=2,
                        boot=50, store=Store(tmp_path_factory.mktemp("store")), device="cpu")


def test_tiny_study(tiny):
    ds = tiny
    assert list(ds.method.values) == ["uniform", "width", "lanmax"]
    assert ds.energy_ratio.dims == ("variant_name", "baseline", "target") and int(ds.ols_samples[0]) == 23
    np.testing.assert_allclose(ds.energy.values[:2], [0.1799, 1.0], atol=1e-4)    # η(0.1); reliable full width
    acc = ds.accuracy.values
    np.testing.assert_allclose(ds.target_accuracy.values[0], [acc[1] - 0.01, min(acc) - 0.01])   # noiseless, common
    # at the common target every curve is reached: a ratio exists
    assert np.all(np.isfinite(ds.energy_ratio.sel(target="common").values))
    for name in list(ds.data_vars) + list(ds.coords):
        assert ds[name].attrs.get("long_name"), name


def test_study_on_the_page(tiny):
    """The SRAM page's text names the verdict and every (variant, baseline) ratio; the plot renders."""
    import holoviews as hv

    from workbench.plots.sram import lanmax_study_plot
    from workbench.ui.sram import study_text
    cases = (("uniform", "common", 0.7), ("width", "noiseless", np.nan))
    rows = [{"variant": "thesis", "baseline": b, "target": t, "ratio": r, "low": r * 0.8, "high": r * 1.2,
             "accuracy": 0.9, "ols_samples": 23} for b, t, r in cases]
    text = study_text(tiny, rows)
    assert "LaNMax loses: it needs 1.43× the energy of a uniform BER" in text and "LaNMax does not reach it" in text
    assert "seeds 0;" in text and text.count("| thesis | 23 |") == 2
    ds = tiny.copy()
    ds["energy_ratio"][:] = [[[0.7, 0.8], [1.3, 1.2]]]
    ds["ratio_ci95_low"][:], ds["ratio_ci95_high"][:] = ds.energy_ratio * 0.8, ds.energy_ratio * 1.2
    hv.extension("bokeh")
    hv.render(lanmax_study_plot(ds, "common"))


def test_page_says_when_the_store_lacks_the_study(tmp_path):
    from workbench.ui.sram_explorer import SRAMExplorer
    ex = SRAMExplorer(store=Store(tmp_path, read_only=[]), autorun=False)   # not the shipped store
    ex.load_study()
    ex.wait(60, kinds=("lanmax_study",))
    assert ex.study is None and ex.study_missing and ex.study_rows() == []
