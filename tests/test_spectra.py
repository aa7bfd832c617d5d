"""Spectral analysis (thesis §4.5, Fig 4.7–4.8): mode-k unfolding, singular values, relative
change, Welch's t-test and the (p_train, seed, layer, rank) dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from workbench.analysis.spectra import (
    penultimate_layer,
    relative_change,
    spectra_dataset,
    spectra_ttest,
    top_singular_values,
    unfold,
    welch_test,
)
from workbench.hardware import KnobError
from workbench.nn import SmallCNN, noisy_layers

pytestmark = pytest.mark.usefixtures("single_thread")


def kolda_bader_tensor() -> np.ndarray:
    """The 3×4×2 example of Kolda & Bader (2009), §2.4, by its frontal slices X1, X2."""
    x1 = np.array([[1, 4, 7, 10], [2, 5, 8, 11], [3, 6, 9, 12]])
    x2 = np.array([[13, 16, 19, 22], [14, 17, 20, 23], [15, 18, 21, 24]])
    return np.stack([x1, x2], axis=2)


def test_unfolding_matches_kolda_bader_worked_example():
    """ACCEPTANCE: the three unfoldings written out in Kolda & Bader (2009), §2.4."""
    x = kolda_bader_tensor()
    assert x.shape == (3, 4, 2)
    x_1 = np.array([[1, 4, 7, 10, 13, 16, 19, 22],
                    [2, 5, 8, 11, 14, 17, 20, 23],
                    [3, 6, 9, 12, 15, 18, 21, 24]])
    x_2 = np.array([[1, 2, 3, 13, 14, 15],
                    [4, 5, 6, 16, 17, 18],
                    [7, 8, 9, 19, 20, 21],
                    [10, 11, 12, 22, 23, 24]])
    x_3 = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                    [13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]])
    np.testing.assert_array_equal(unfold(x, 0), x_1)   # Kolda–Bader mode 1 = mode=0 here
    np.testing.assert_array_equal(unfold(x, 1), x_2)
    np.testing.assert_array_equal(unfold(x, 2), x_3)
    # torch input gives the same matrices
    for mode, expected in enumerate((x_1, x_2, x_3)):
        np.testing.assert_array_equal(unfold(torch.as_tensor(x), mode), expected)


def test_unfolding_follows_the_index_formula_on_a_4d_tensor():
    """Element (i_1..i_d) goes to row i_k, column Σ_{m≠k} i_m J_m, J_m = Π_{l<m, l≠k} n_l."""
    rng = np.random.default_rng(1)
    t = rng.normal(size=(3, 2, 4, 5))
    for k in range(4):
        u = unfold(t, k)
        assert u.shape == (t.shape[k], t.size // t.shape[k])
        for idx in np.ndindex(t.shape):
            j, stride = 0, 1
            for m in range(4):
                if m == k:
                    continue
                j += idx[m] * stride
                stride *= t.shape[m]
            assert u[idx[k], j] == t[idx]


def test_singular_values_match_numpy_svd_in_every_mode():
    """ACCEPTANCE: λ of a random conv weight's mode-k unfolding = numpy.linalg.svd, every mode."""
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    for mode in range(4):
        expected = np.linalg.svd(unfold(w, mode), compute_uv=False)
        got = top_singular_values(w, mode=mode, k=10)
        n = min(10, expected.size)
        assert got.shape == (n,)
        np.testing.assert_allclose(got, expected[:n], rtol=1e-10)
        assert np.all(np.diff(got) <= 0)   # descending
    # mode 2 of (16, 8, 3, 3) unfolds to 3 × 384: only 3 singular values exist
    assert top_singular_values(w, mode=2, k=10).shape == (3,)
    # Frobenius norm is preserved by the unfolding: Σλ² = ||W||²
    np.testing.assert_allclose((top_singular_values(w, 1, k=8) ** 2).sum(), float((w.double() ** 2).sum()), rtol=1e-10)


def test_invalid_mode_and_k_are_refused_naming_the_argument():
    w = np.zeros((4, 3, 3, 3))
    for bad in (4, -1, 1.5, True):
        with pytest.raises(KnobError, match="mode"):
            unfold(w, bad)
    with pytest.raises(KnobError, match="mode"):
        top_singular_values(np.zeros((5, 6)), mode=2)
    for bad in (0, -3, 2.0):
        with pytest.raises(KnobError, match="k="):
            top_singular_values(w, 0, k=bad)


def test_relative_change_elementwise():
    v = np.array([2.0, 3.0, 1.0])
    ref = np.array([1.0, 4.0, 1.0])
    np.testing.assert_allclose(relative_change(v, ref), [1.0, -0.25, 0.0])
    with pytest.raises(KnobError, match="broadcast"):
        relative_change(np.ones(3), np.ones(4))


def test_welch_test_equals_scipy():
    a = [1.2, 2.3, 1.9, 2.8, 2.2, 1.7]
    b = [2.9, 3.8, 3.1, 4.4, 3.3]
    res = welch_test(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert res["t"] == pytest.approx(float(ref.statistic), rel=1e-12)
    assert res["p_value"] == pytest.approx(float(ref.pvalue), rel=1e-12)
    assert res["mean_a"] == pytest.approx(np.mean(a)) and res["mean_b"] == pytest.approx(np.mean(b))
    # Welch, not Student: differs from the pooled-variance test on unequal variances and sizes
    pooled = stats.ttest_ind(a, b, equal_var=True)
    assert res["p_value"] != pytest.approx(float(pooled.pvalue), rel=1e-6)
    with pytest.raises(KnobError, match="at least 2"):
        welch_test([1.0], b)


P_TRAIN = (0.0, 0.01, 0.1)
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def models():
    """Binary SmallCNNs keyed by (p_train, seed): latent weights scaled by (1 + 3 p) so that the
    spectra move with p_train in a known way (λ scales linearly with the weights)."""
    out = {}
    for p in P_TRAIN:
        for s in SEEDS:
            torch.manual_seed(s)
            m = SmallCNN(width=0.25, binary=True)
            with torch.no_grad():
                for layer in noisy_layers(m).values():
                    layer.weight.mul_(1 + 3 * p)
            out[(p, s)] = m
    return out


def _check_attrs(ds):
    for name, var in ds.variables.items():
        assert "long_name" in var.attrs and "units" in var.attrs, name


def test_spectra_dataset_dims_coords_attrs(models):
    ds = spectra_dataset(models, layer=None, mode=0, k=5)
    names = list(noisy_layers(next(iter(models.values()))))
    assert ds["singular_value"].dims == ("p_train", "seed", "layer", "rank")
    assert ds["relative_change"].dims == ("p_train", "layer", "rank")
    assert list(ds["p_train"].values) == list(P_TRAIN)
    assert list(ds["seed"].values) == list(SEEDS)
    assert list(ds["layer"].values) == names
    assert list(ds["rank"].values) == [1, 2, 3, 4, 5]
    assert ds.attrs["mode"] == 0 and ds.attrs["k"] == 5 and ds.attrs["weights"] == "latent"
    assert ds.attrs["reference_p_train"] == 0.0
    _check_attrs(ds)
    # the latent real-valued weights are analysed, not sign(W) (thesis §4.5)
    layer = noisy_layers(models[(0.01, 1)])["features.3"]
    np.testing.assert_allclose(ds["singular_value"].sel(p_train=0.01, seed=1, layer="features.3").values,
                               top_singular_values(layer.weight, 0, 5))
    sign_sv = top_singular_values(torch.sign(layer.weight), 0, 5)
    assert not np.allclose(ds["singular_value"].sel(p_train=0.01, seed=1, layer="features.3").values, sign_sv)
    # unfolding shape of the first conv (8, 1, 3, 3) in mode 0: 8 × 9
    assert int(ds["unfolding_rows"].sel(layer="features.0")) == 8
    assert int(ds["unfolding_cols"].sel(layer="features.0")) == 9


def test_relative_change_zero_at_reference_and_known_elsewhere(models):
    ds = spectra_dataset(models, layer="features.3", mode=1, k=4)
    assert list(ds["layer"].values) == ["features.3"]
    rc = ds["relative_change"]
    np.testing.assert_array_equal(rc.sel(p_train=0.0).values, 0.0)
    # every weight is scaled by (1 + 3 p) from the same init: Δ = 3 p for every rank (up to the
    # float32 rounding of the scaled weights)
    np.testing.assert_allclose(rc.sel(p_train=0.1).values, 0.3, rtol=1e-6)
    np.testing.assert_allclose(rc.sel(p_train=0.01).values, 0.03, rtol=1e-5)
    # and it is the relative change of the seed means
    mean = ds["singular_value"].mean("seed")
    np.testing.assert_allclose(rc.values, relative_change(mean.values, mean.sel(p_train=0.0).values[None]))


def test_spectra_ttest_is_welch_over_seeds(models):
    ds = spectra_dataset(models, layer="classifier", mode=0, k=3)
    res = spectra_ttest(ds, "classifier", 2, 0.0, 0.1)
    a = ds["singular_value"].sel(p_train=0.0, layer="classifier", rank=2).values
    b = ds["singular_value"].sel(p_train=0.1, layer="classifier", rank=2).values
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert res["t"] == pytest.approx(float(ref.statistic)) and res["p_value"] == pytest.approx(float(ref.pvalue))
    assert res["t"] < 0   # larger weights at p_train = 0.1
    with pytest.raises(KnobError, match="p_b"):
        spectra_ttest(ds, "classifier", 1, 0.0, 0.2)
    with pytest.raises(KnobError, match="rank"):
        spectra_ttest(ds, "classifier", 4, 0.0, 0.1)
    with pytest.raises(KnobError, match="layer"):
        spectra_ttest(ds, "features.0", 1, 0.0, 0.1)
    one_seed = spectra_dataset({k: v for k, v in models.items() if k[1] == 0}, layer="classifier", k=2)
    with pytest.raises(KnobError, match="at least 2"):
        spectra_ttest(one_seed, "classifier", 1, 0.0, 0.1)


def test_spectra_dataset_validation(models):
    with pytest.raises(KnobError, match="layer='nope'"):
        spectra_dataset(models, layer="nope")
    with pytest.raises(KnobError, match="mode"):
        spectra_dataset(models, layer=None, mode=2)   # the classifier weight is 2-D
    with pytest.raises(KnobError, match="mode"):
        spectra_dataset(models, layer="features.0", mode=4)
    m = next(iter(models.values()))
    with pytest.raises(KnobError, match="p_train"):
        spectra_dataset({(0.7, 0): m})
    with pytest.raises(KnobError, match="p_train"):
        spectra_dataset({(float("nan"), 0): m})
    with pytest.raises(KnobError, match="tuple"):
        spectra_dataset({0.1: m})
    with pytest.raises(KnobError, match="non-empty"):
        spectra_dataset({})
    # missing (p, seed) cells are NaN, and the seed mean skips them
    partial = {k: v for k, v in models.items() if k != (0.1, 2)}
    ds = spectra_dataset(partial, layer="features.0", k=3)
    assert np.isnan(ds["singular_value"].sel(p_train=0.1, seed=2)).all()
    assert np.isfinite(ds["relative_change"]).all()
    # rank beyond the unfolding's rank is NaN: features.0 mode 1 unfolds to 1 × 72 (one λ)
    ds1 = spectra_dataset(models, layer="features.0", mode=1, k=3)
    assert np.isfinite(ds1["singular_value"].sel(rank=1)).all()
    assert np.isnan(ds1["singular_value"].sel(rank=[2, 3])).all()


def test_penultimate_layer():
    assert penultimate_layer(SmallCNN()) == "features.7"
