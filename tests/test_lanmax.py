"""Tests of LaNMax (thesis ch. 4, Algorithm 1, eq 4.1–4.7): the OLS gradient estimator, the
normalised Nesterov update of ``p``, the surrogate loss, config validation, and short real runs
on the embedded digits (BinaryConnect SmallCNN, 4 epochs, half width)."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from scipy import stats

from workbench.datasets import load_dataset
from workbench.hardware import IdealMemory, KnobError
from workbench.hardware.sram import normalised_energy
from workbench.nn import noisy_layers
from workbench.training import Cancelled, LaNMaxConfig, LaNMaxResult, TrainConfig, ols_slopes, train_lanmax
from workbench.training.lanmax import _update_p, normalise_gradient, perturb_p, surrogate_energy, surrogate_loss

pytestmark = pytest.mark.usefixtures("single_thread")

EPOCHS = 4


# ------------------------------------------------------------------------------------------
# OLS gradient estimator (Algorithm 1 line 14)
# ------------------------------------------------------------------------------------------

P0 = np.array([0.01, 0.05, 0.2, 0.3])          # away from the bounds: no clipping with h = 0.01
G = np.array([3.0, -2.0, 0.5, 0.0])             # linear part
Q = np.array([[40.0, 5.0, 0.0, 0.0],            # symmetric quadratic part
              [5.0, -30.0, 2.0, 0.0],
              [0.0, 2.0, 10.0, -4.0],
              [0.0, 0.0, -4.0, 60.0]])
C = np.array([0.02, 0.04, 0.1, 0.25])           # centre of the quadratic


def synthetic_loss(p_tilde: np.ndarray, rng: np.random.Generator, sigma: float = 0.05) -> np.ndarray:
    d = p_tilde - C
    return 1.0 + p_tilde @ G + np.einsum("ni,ij,nj->n", d, Q, d) + sigma * rng.standard_normal(len(p_tilde))


TRUE_GRAD = G + 2 * Q @ (P0 - C)                 # ∇ of the quadratic at P0


def draws(n: int, seed: int, p=P0, lcfg: LaNMaxConfig | None = None):
    lcfg = lcfg or LaNMaxConfig()
    rng = np.random.default_rng(seed)
    pt = perturb_p(np.broadcast_to(p, (n, len(p))), lcfg, rng)     # n independent draws of eq 4.4
    return pt, synthetic_loss(pt, rng)


def test_perturbation_is_uniform_on_three_points_and_clipped():
    lcfg = LaNMaxConfig(h=0.01, p_min=1e-4, p_max=0.5)
    rng = np.random.default_rng(0)
    p = np.array([0.2, 1e-4, 0.5, 0.0051])
    pt = np.stack([perturb_p(p, lcfg, rng) for _ in range(3000)])
    eps = pt[:, 0] - 0.2
    values, freq = np.unique(np.round(eps / 0.01).astype(int), return_counts=True)
    assert list(values) == [-1, 0, 1]
    # each of the three values: its count inside the 99.9 % binomial interval of 3000 draws at 1/3,
    # and the three together pass a χ² goodness-of-fit test against the uniform law
    lo, hi = stats.binom.interval(0.999, 3000, 1 / 3)
    assert np.all((freq >= lo) & (freq <= hi)), (freq, lo, hi)
    assert stats.chisquare(freq).pvalue > 1e-3
    assert set(np.round(pt[:, 1], 12)) == {1e-4, round(1e-4 + 0.01, 12)}       # clipped at p_min
    assert set(np.round(pt[:, 2], 12)) == {0.49, 0.5}                           # clipped at p_max
    assert pt[:, 3].min() == pytest.approx(1e-4)                                # 0.0051 - 0.01 → p_min
    assert np.all((pt >= lcfg.p_min) & (pt <= lcfg.p_max))


def test_ols_recovers_quadratic_gradient_within_its_stderr():
    """ACCEPTANCE: with ε symmetric, the OLS slope of a quadratic is unbiased for its gradient."""
    pt, y = draws(500, seed=1)
    slopes, se = ols_slopes(pt, y)
    assert slopes.shape == se.shape == (4,)
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    assert np.all(np.abs(slopes - TRUE_GRAD) <= 3 * se), (slopes, TRUE_GRAD, se)
    # the estimate is informative: stderr much smaller than the gradients it resolves
    assert np.all(se < 0.5 * np.abs(TRUE_GRAD))


def test_ols_confidence_intervals_have_nominal_coverage():
    """ACCEPTANCE: over many seeds, |slope − ∇| ≤ 1.96·stderr for ~95 % of the estimates."""
    hits = []
    for seed in range(300):
        pt, y = draws(500, seed=1000 + seed)
        slopes, se = ols_slopes(pt, y)
        hits.append(np.abs(slopes - TRUE_GRAD) <= 1.96 * se)
    # each coordinate's hit count inside the 99.9 % binomial interval of 300 trials at 0.95
    lo, hi = stats.binom.interval(0.999, 300, 0.95)
    counts = np.sum(hits, axis=0)
    assert np.all((counts >= lo) & (counts <= hi)), (counts, lo, hi)


def test_ols_matches_the_closed_form_with_intercept():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3 + rng.normal(size=40)
    A = np.column_stack([np.ones(40), X])
    beta = np.linalg.solve(A.T @ A, A.T @ y)
    resid = y - A @ beta
    se = np.sqrt(resid @ resid / (40 - 4) * np.diag(np.linalg.inv(A.T @ A)))
    slopes, stderr = ols_slopes(X, y)
    np.testing.assert_allclose(slopes, beta[1:], rtol=1e-10)
    np.testing.assert_allclose(stderr, se[1:], rtol=1e-10)
    # an exact linear function: slopes exact, stderr 0
    s2, e2 = ols_slopes(X, X @ [1.0, -2.0, 0.5] + 7.0)
    np.testing.assert_allclose(s2, [1.0, -2.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(e2, 0.0, atol=1e-12)


def test_ols_rank_deficiency():
    rng = np.random.default_rng(4)
    x = rng.integers(-1, 2, size=(200, 2)) * 0.01 + 0.1
    const = np.full((200, 1), 0.5)                          # a layer clipped at p_max every draw
    X = np.hstack([x[:, :1], const, x[:, 1:]])
    y = 2.0 * X[:, 0] - 3.0 * X[:, 2] + 0.001 * rng.normal(size=200)
    slopes, se = ols_slopes(X, y)
    assert slopes[1] == 0.0 and se[1] == np.inf
    np.testing.assert_allclose(slopes[[0, 2]], [2.0, -3.0], atol=5 * se[[0, 2]].max())
    assert np.all(np.isfinite(se[[0, 2]]))
    # a constant column equal to a value whose mean is not exact in floating point
    slopes, se = ols_slopes(np.hstack([x, np.full((200, 1), 0.1)]), y[:200])
    assert slopes[2] == 0.0 and se[2] == np.inf
    # two identical columns: neither slope is identifiable
    slopes, se = ols_slopes(np.hstack([x[:, :1], x[:, :1]]), 4.0 * x[:, 0])
    assert np.all(se == np.inf)
    np.testing.assert_allclose(slopes, [2.0, 2.0])             # minimum-norm split of the total 4
    # no residual degree of freedom: identifiable slopes, stderr nan
    slopes, se = ols_slopes(np.array([[0.0], [1.0]]), np.array([1.0, 3.0]))
    assert slopes[0] == pytest.approx(2.0) and math.isnan(se[0])
    # everything constant / empty
    slopes, se = ols_slopes(np.full((5, 3), 0.01), np.arange(5.0))
    assert np.all(slopes == 0) and np.all(se == np.inf)
    slopes, se = ols_slopes(np.zeros((0, 2)), np.zeros(0))
    assert np.all(slopes == 0) and np.all(se == np.inf)
    with pytest.raises(ValueError):
        ols_slopes(np.zeros((3, 2)), np.zeros(4))


# ------------------------------------------------------------------------------------------
# normalisation (eq 4.6), Nesterov update, surrogate (eq 4.5)
# ------------------------------------------------------------------------------------------

def test_normalised_nesterov_update():
    lcfg = LaNMaxConfig(beta_p=0.2, p_min=1e-4, p_max=0.5)
    p = np.full(3, 0.1)
    slopes = np.array([3.0, -4.0, 0.0])
    p1, v1, g1 = _update_p(p, np.zeros(3), slopes, lcfg, lr_p=0.01)
    np.testing.assert_allclose(g1, [0.6, -0.8, 0.0])                        # eq 4.6: unit norm
    np.testing.assert_allclose(v1, g1)
    np.testing.assert_allclose(p1, p - 0.01 * (1 + 0.2) * g1)               # descent: slope > 0 → p down
    assert p1[0] < 0.1 < p1[1] and p1[2] == 0.1
    # second step: v ← βv + g, p ← p − lr (g + βv)
    slopes2 = np.array([0.0, 1.0, 0.0])
    p2, v2, g2 = _update_p(p1, v1, slopes2, lcfg, lr_p=0.01)
    np.testing.assert_allclose(v2, 0.2 * v1 + [0, 1, 0])
    np.testing.assert_allclose(p2, p1 - 0.01 * ([0, 1, 0] + 0.2 * v2))
    # the step is the same whatever the slopes' magnitude (normalised gradient)
    np.testing.assert_allclose(_update_p(p, np.zeros(3), 1e6 * slopes, lcfg, 0.01)[0], p1)
    # zero gradient: no move; huge lr: clipped to the bounds
    np.testing.assert_array_equal(_update_p(p, np.zeros(3), np.zeros(3), lcfg, 0.01)[0], p)
    np.testing.assert_allclose(_update_p(p, np.zeros(3), slopes, lcfg, 10.0)[0], [1e-4, 0.5, 0.1])
    np.testing.assert_array_equal(normalise_gradient(np.zeros(2)), [0.0, 0.0])


def test_matches_torch_nesterov_sgd():
    lcfg = LaNMaxConfig(beta_p=0.2, p_min=0.0, p_max=0.5)
    rng = np.random.default_rng(5)
    p, v = np.full(4, 0.25), np.zeros(4)
    t = torch.nn.Parameter(torch.full((4,), 0.25, dtype=torch.float64))
    opt = torch.optim.SGD([t], lr=0.01, momentum=0.2, nesterov=True)
    for _ in range(5):
        s = rng.normal(size=4)
        p, v, g = _update_p(p, v, s, lcfg, 0.01)
        t.grad = torch.as_tensor(g)
        opt.step()
    np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12)


def test_surrogate_formula_and_update_directions():
    counts = np.array([100, 1000, 5000])
    lcfg = LaNMaxConfig(alpha=0.5, lambda_p=0.1)
    pt = np.array([0.01, 0.02, 0.2])
    # the thesis' E: relative to the same network read reliably (Σ η(p_l) n_l / Σ n_l, η = −ln p / a)
    e = float(np.sum(-np.log(pt) / 12.8 * counts) / counts.sum())
    assert surrogate_energy(pt, counts, lcfg) == pytest.approx(e, rel=1e-12)
    assert surrogate_loss(0.6, 0.3, pt, counts, lcfg) == pytest.approx(2.0 + 0.5 * math.sqrt(e) + 0.1 * 0.23)
    assert surrogate_energy(np.full(3, 0.01), counts, lcfg) == pytest.approx(0.3598, abs=1e-4)   # §4.4: η(0.01)
    fp16 = lcfg.replace(energy_reference="fp16")
    assert surrogate_energy(pt, counts, fp16) == pytest.approx(e / 16, rel=1e-12)
    assert surrogate_energy(pt, counts, fp16) == pytest.approx(normalised_energy(pt, counts, bits=1, a=12.8))
    rng = np.random.default_rng(6)
    p = np.full(3, 0.05)       # p ± h stays inside the bounds: no clipping, symmetric ε

    def first_update(lcfg):
        pts = np.stack([perturb_p(p, lcfg, rng) for _ in range(300)])
        loss = 1.0 + 0.001 * rng.standard_normal(300)          # the network's loss does not depend on p
        sur = [surrogate_loss(loss_i, 0.9, q, counts, lcfg) for loss_i, q in zip(loss, pts)]
        slopes, _ = ols_slopes(pts, np.array(sur))
        return _update_p(p, np.zeros(3), slopes, lcfg, 0.001)[0]

    # energy dominates: E(p) decreases with p, so every layer's p rises, the largest layer most
    up = first_update(LaNMaxConfig(alpha=10.0, lambda_p=0.0))
    assert np.all(up > p) and np.argmax(up) == 2
    # only noise decay: slope λ_p for every layer, p falls equally
    down = first_update(LaNMaxConfig(alpha=0.0, lambda_p=1.0))
    assert np.all(down < p)
    np.testing.assert_allclose(down, p - 0.001 * 1.2 / math.sqrt(3), rtol=0.05)


# ------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------

def test_config_defaults_roundtrip_and_validation():
    c = LaNMaxConfig()
    assert (c.alpha, c.lambda_p, c.h, c.p_init, c.p_min, c.p_max, c.beta_p, c.stop_fraction, c.a) == \
        (0.01, 5e-4, 0.01, 0.01, 1e-4, 0.5, 0.2, 0.8, 12.8)
    assert c.lr_p is None
    d = c.to_dict()
    assert LaNMaxConfig.from_dict(d).to_dict() == d
    assert LaNMaxConfig.from_dict({"alpha": 1, "lr_p": 0.1}).to_dict()["alpha"] == 1.0
    for bad, knob in [({"p_min": 0.2, "p_max": 0.1}, "p_min"), ({"p_init": 0.3, "p_max": 0.2}, "p_init"),
                      ({"p_min": 0.02}, "p_init"), ({"h": 0.0}, "h"), ({"alpha": -1}, "alpha"),
                      ({"beta_p": 1.0}, "beta_p"), ({"lr_p": 11}, "lr_p"), ({"stop_fraction": 1.5}, "stop_fraction"),
                      ({"a": 0.0}, "a"), ({"p_init": float("nan")}, "p_init"), ({"bogus": 1}, "bogus")]:
        with pytest.raises(KnobError, match=knob):
            LaNMaxConfig.from_dict(bad)
    assert [
        LaNMaxConfig(stop_fraction=f).stop_epoch(n) for f, n in [(0.8, 4), (0.8, 200), (0.0, 10), (1.0, 7), (0.5, 5)]
    ] == [3, 160, 0, 7, 3]


def test_train_config_requirements(digits):
    with pytest.raises(KnobError, match="binary"):
        train_lanmax(TrainConfig(binary=False, epochs=1), LaNMaxConfig(), digits, device="cpu")
    mem = {"default": {"technology": "sram", "p": 0.01, "bits": 1}}
    with pytest.raises(KnobError, match="train_memory"):
        train_lanmax(TrainConfig(binary=True, epochs=1, train_memory=mem), LaNMaxConfig(), digits, device="cpu")
    lcfg = LaNMaxConfig()
    lcfg.p_min = 0.05           # each knob in bounds, but p_init = 0.01 < p_min
    with pytest.raises(KnobError, match="p_init"):
        train_lanmax(TrainConfig(binary=True, epochs=1), lcfg, digits, device="cpu")


# ------------------------------------------------------------------------------------------
# real runs on digits
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def cfg(**kw) -> TrainConfig:
    kw = {"binary": True, "epochs": EPOCHS, "width": 0.5, "seed": 0, **kw}
    return TrainConfig(**kw)


@pytest.fixture(scope="module")
def default_run(digits):
    events = []
    res = train_lanmax(cfg(), LaNMaxConfig(), digits, device="cpu", progress=events.append)
    return res, events


@pytest.fixture(scope="module")
def huge_lr_run(digits):
    return train_lanmax(cfg(), LaNMaxConfig(lr_p=10.0), digits, device="cpu")


def test_result_structure(default_run, digits):
    res, events = default_run
    assert isinstance(res, LaNMaxResult)
    names = list(noisy_layers(res.model))
    assert list(res.p) == names == list(res.trajectory.layer.values)
    assert all(1e-4 <= v <= 0.5 for v in res.p.values())
    np.testing.assert_array_equal(res.trajectory.p.values[-1], list(res.p.values()))
    # model: CPU, eval, ideal memories, no generator
    assert not res.model.training
    assert all(t.device.type == "cpu" for t in res.model.parameters())
    assert all(
        isinstance(layer.memory, IdealMemory) and layer.generator is None for layer in noisy_layers(res.model).values()
    )
    assert 0.5 < res.test_accuracy <= 1.0 and res.device == "cpu" and res.train_seconds > 0
    # progress after every epoch with the documented keys
    assert [e["epoch"] for e in events] == list(range(1, EPOCHS + 1))
    assert all(set(e) == {"epoch", "epochs", "loss", "test_accuracy", "p"} and e["epochs"] == EPOCHS for e in events)
    np.testing.assert_allclose([e["p"] for e in events], res.trajectory.p.values)
    np.testing.assert_allclose([e["loss"] for e in events], res.history["loss"])
    assert len(res.history["loss"]) == EPOCHS and res.history["loss"][-1] < res.history["loss"][0]


def test_trajectory_metadata(default_run):
    ds = default_run[0].trajectory
    assert ds.p.dims == ds.slope.dims == ds.grad.dims == ("epoch", "layer")
    assert ds.loss.dims == ds.surrogate.dims == ds.test_accuracy.dims == ("epoch",)
    for name in list(ds.data_vars) + list(ds.coords):
        assert ds[name].attrs.get("long_name"), name
        assert "units" in ds[name].attrs, name
    for k, v in LaNMaxConfig().to_dict().items():
        assert ds.attrs[k] == v
    assert ds.attrs["s"] == 3 and ds.attrs["lr_p_effective"] == cfg().lr
    assert 0.0 <= ds.attrs["noisy_accuracy"] <= 1.0
    assert ds.attrs["test_accuracy"] == default_run[0].test_accuracy
    # updated epochs have unit-norm gradients (eq 4.6), later epochs none
    norms = np.linalg.norm(ds.grad.values[:3], axis=1)
    np.testing.assert_allclose(norms, 1.0)
    assert np.all(np.isnan(ds.slope.values[3:])) and list(ds.updated.values) == [1, 1, 1, 0]
    assert np.all(np.isfinite(ds.surrogate.values)) and np.all(ds.surrogate.values > 0)


def test_p_stays_in_bounds_and_stops_at_s(default_run, huge_lr_run):
    """ACCEPTANCE: p ∈ [p_min, p_max] at every epoch, even with lr_p pushing against the bounds;
    p is constant after epoch s = round(0.8 · 4) = 3."""
    for res in (default_run[0], huge_lr_run):
        p = res.trajectory.p.values
        assert np.all((p >= 1e-4) & (p <= 0.5)), p
        np.testing.assert_array_equal(p[3], p[2])
        assert not np.array_equal(p[0], np.full(p.shape[1], 0.01))   # it did move
    p = huge_lr_run.trajectory.p.values
    # lr_p = 10 with a unit-norm gradient: every step overshoots, so p sits on the bounds
    assert np.all(np.isclose(p, 1e-4) | np.isclose(p, 0.5)), p


def test_stop_fraction_zero_never_updates(digits):
    res = train_lanmax(cfg(epochs=2), LaNMaxConfig(stop_fraction=0.0), digits, device="cpu")
    np.testing.assert_array_equal(res.trajectory.p.values, 0.01)
    assert res.trajectory.attrs["s"] == 0 and np.all(np.isnan(res.trajectory.slope.values))
    assert res.p == {n: 0.01 for n in res.p}


def test_energy_weight_raises_p_and_noise_decay_lowers_it(digits):
    """Large α: the energy term dominates and p rises above p_init; α = 0 with the largest λ_p:
    both terms favour reliability and p falls below it."""
    hi = train_lanmax(cfg(), LaNMaxConfig(alpha=10.0), digits, device="cpu")
    lo = train_lanmax(cfg(), LaNMaxConfig(alpha=0.0, lambda_p=1.0), digits, device="cpu")
    assert np.all(hi.trajectory.p.values.mean(axis=1) > 0.01)
    assert lo.trajectory.p.values[-1].mean() < 0.01
    assert hi.trajectory.energy.values[-1] < lo.trajectory.energy.values[-1]


def test_reproducible(default_run, digits):
    again = train_lanmax(cfg(), LaNMaxConfig(), digits, device="cpu")
    assert again.p == default_run[0].p
    assert again.history["loss"] == default_run[0].history["loss"]


def test_cancel(digits):
    ev = threading.Event()
    seen = []

    def progress(info):
        seen.append(info["epoch"])
        ev.set()

    with pytest.raises(Cancelled):
        train_lanmax(cfg(), LaNMaxConfig(), digits, device="cpu", progress=progress, cancel=ev)
    assert seen == [1]


@pytest.mark.parametrize("knob,value", [("sam", "sam"), ("sam", "asam"), ("clip_std", 2.0)])
def test_train_config_refuses_knobs_lanmax_does_not_take(knob, value, digits):
    # LaNMax trains with SGD+Nesterov on the BSC (ch. 4): no silently ignored clip_std, no TypeError for sam
    with pytest.raises(KnobError, match=rf"{knob}=.*LaNMax.*SGD\+Nesterov"):
        train_lanmax(TrainConfig(binary=True, epochs=1, width=0.5, **{knob: value}), LaNMaxConfig(), digits,
                     device="cpu")


@pytest.mark.parametrize("schedule", ["constant", "network"])
def test_lr_p_schedule_sets_the_step_of_p(digits, schedule):
    """Algorithm 1 line 16 with β_p = 0 and no clipping: ‖Δp_k‖ = ι_p (unit-norm gradient, eq 4.6),
    times ι(k)/ι, the network's cosine factor at the end of epoch k, when ι_p follows the schedule."""
    lcfg = LaNMaxConfig(lr_p=0.02, beta_p=0.0, p_init=0.25, h=0.01, stop_fraction=1.0, lr_p_schedule=schedule)
    res = train_lanmax(cfg(), lcfg, digits, device="cpu")
    p = np.vstack([np.full(res.trajectory.layer.size, 0.25), res.trajectory.p.values])
    steps = np.linalg.norm(np.diff(p, axis=0), axis=1)
    n = math.ceil(len(digits.train) / cfg().batch_size)
    factor = 0.5 * (1 + np.cos(np.pi * np.arange(1, EPOCHS + 1) * n / (EPOCHS * n)))
    expected = 0.02 * (factor if schedule == "network" else np.ones(EPOCHS))
    np.testing.assert_allclose(steps, expected, rtol=1e-9, atol=1e-12)
