"""Genetic operators on NAS states (thesis §6.2.3): repair (eq 6.4), crossover (eq 6.5 and the
truth table), mutation, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from scipy.stats import binomtest

from workbench.nas.operators import (
    StateCrossover,
    StateMutation,
    StateRepair,
    StateSampling,
    crossover_states,
    mutate_states,
    repair_states,
    sample_states,
)
from workbench.nas.supernet import Supernet, SupernetConfig

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def space():
    # the default space: 3 stages × up to 3 blocks, 32 crossbar layers
    return Supernet(SupernetConfig()).space


@pytest.fixture(scope="module")
def problem(space):
    return Problem(n_var=space.n_var, n_obj=2, xl=space.xl, xu=space.xu)


def state(space, D, g, rng=None, widths=None):
    """A valid state with depth ``D`` and ``g`` on every kept layer (scalar or per-layer array)."""
    rng = rng or np.random.default_rng(0)
    a = space.sample_arch(1, rng)[0]
    a[space.depth_slice] = D
    if widths is not None:
        a[space.width_slice] = widths
    s = space.default_states(a)[0]
    s[space.gu_slice] = np.where(s[space.gu_slice] > 0, g, 0.0)
    return s


def expected_child_gu(m1, m2, mc, g1, g2, k):
    """The truth table of §6.2.3, written out row by row."""
    out = np.empty(len(m1))
    for i in range(len(m1)):
        if m1[i] and m2[i]:
            out[i] = g2[i] if k[i] else g1[i]
        elif not m1[i] and not m2[i]:
            out[i] = 0.0
        elif mc[i]:
            out[i] = g2[i] if m2[i] else g1[i]
        else:
            out[i] = 0.0
    return out


# --------------------------------------------------------------------------- repair, eq 6.4
def test_mask_keeps_stem_head_and_first_depth_blocks(space):
    m = space.mask([1, 2, 3])
    names = np.array(space.layer_names())
    assert set(names[m]) >= {"stem.conv", "head"}
    assert not any(n.startswith("stages.0.1.") for n in names[m])
    assert any(n.startswith("stages.1.1.") for n in names[m]) and not any(n.startswith("stages.1.2.") for n in names[m])
    assert all(m[[i for i, n in enumerate(names) if n.startswith("stages.2.")]])
    assert space.mask(np.array([[1, 1, 1], [3, 3, 3]])).shape == (2, space.n_layers)


def test_repair_three_cases_of_eq_6_4(space):
    s = state(space, [2, 1, 1], 0.7)
    m = space.mask([2, 1, 1])
    kept, dropped = np.flatnonzero(m), np.flatnonzero(~m)
    g = s[space.gu_slice]
    g[kept[0]] = 0.0             # mask 1, g_u = 0 → g_u^d (r = 1)
    g[kept[1]] = 1.37            # mask 1, g_u > 0 → kept
    g[dropped[0]] = 0.9          # mask 0 → 0
    s[space.gu_slice] = g
    r = repair_states(space, s)[0][space.gu_slice]
    assert r[kept[0]] == 1.0
    assert r[kept[1]] == 1.37
    assert r[dropped[0]] == 0.0
    assert np.all(r[kept[2:]] == 0.7) and np.all(r[dropped] == 0)
    assert space.is_valid(repair_states(space, s)).all()
    # repair is idempotent on a valid state
    v = repair_states(space, s)
    np.testing.assert_array_equal(repair_states(space, v), v)


def test_repair_keeps_a_kept_g_u_outside_the_domain(space):
    """Eq 6.4 keeps a present layer's g_u > 0 as it is (no projection into eq 6.2's [0.5, 1.5]);
    a negative value is no scale and gets g_u^d, like 0."""
    s = state(space, [3, 3, 3], 0.7)
    g = s[space.gu_slice]
    g[0], g[1], g[2] = 1.8, 0.2, -0.3
    s[space.gu_slice] = g
    r = repair_states(space, s)[0][space.gu_slice]
    assert (r[0], r[1], r[2]) == (1.8, 0.2, 1.0)
    assert not space.is_valid(repair_states(space, s)).any()     # outside eq 6.2: flagged, not hidden


def test_repair_after_a_mutation_that_deepens_then_shallows(space):
    s = state(space, [1, 1, 1], 0.6)
    deeper = s.copy()
    deeper[0] = 3                               # a mutation deepens stage 0
    r = repair_states(space, deeper)[0]
    new = space.mask([3, 1, 1]) & ~space.mask([1, 1, 1])
    assert new.sum() == 6                        # two bottlenecks of 3 convs
    assert np.all(r[space.gu_slice][new] == 1.0)             # new layers get g_u^d
    assert np.all(r[space.gu_slice][space.mask([1, 1, 1])] == 0.6)
    shallower = r.copy()
    shallower[0] = 2                            # then a mutation shallows it
    r2 = repair_states(space, shallower)[0]
    removed = space.mask([3, 1, 1]) & ~space.mask([2, 1, 1])
    assert removed.sum() == 3 and np.all(r2[space.gu_slice][removed] == 0.0)
    assert space.is_valid(r2).all()


def test_mutation_operator_repairs_added_and_removed_layers(space, problem):
    rng = np.random.default_rng(1)
    X = sample_states(space, 400, rng)
    pop = StateMutation(space, prob_var=0.3).do(problem, Population.new("X", X.copy()), random_state=rng)
    Y = pop.get("X")
    assert space.is_valid(Y).all()
    m0, m1 = space.state_mask(X), space.state_mask(Y)
    added, removed = m1 & ~m0, m0 & ~m1
    assert added.sum() > 50 and removed.sum() > 50          # depth mutations happened both ways
    assert np.all(Y[:, space.gu_slice][added] == 1.0)        # new layers: g_u^d
    assert np.all(Y[:, space.gu_slice][removed] == 0.0)      # removed layers: 0
    both = m0 & m1
    changed = Y[:, space.gu_slice][both] != X[:, space.gu_slice][both]
    assert changed.any()                                      # polynomial mutation of kept g_u
    # architecture entries actually change, to valid choices
    assert (Y[:, : space.n_arch] != X[:, : space.n_arch]).any()


def test_mutation_without_gu_search_keeps_default_gu(space):
    rng = np.random.default_rng(2)
    X = sample_states(space, 300, rng, search_gu=False)
    Y = repair_states(space, mutate_states(space, X, rng, prob_var=0.3, search_gu=False))
    g = Y[:, space.gu_slice]
    assert np.all((g == 0) | (g == 1.0)) and space.is_valid(Y).all()


# --------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("search_gu", [True, False])
def test_sampled_states_are_valid(space, problem, search_gu):
    rng = np.random.default_rng(3)
    X = StateSampling(space, search_gu).do(problem, 500, random_state=rng).get("X")
    assert X.shape == (500, space.n_var)
    assert space.is_valid(X).all()
    m = space.state_mask(X)
    g = X[:, space.gu_slice]
    assert np.all(g[~m] == 0.0)
    assert np.all((g[m] >= 0.5) & (g[m] <= 1.5))
    if not search_gu:
        assert np.all(g[m] == 1.0)
    else:
        assert g[m].min() < 0.6 and g[m].max() > 1.4       # spans the domain of eq 6.2
    # every depth choice appears
    assert set(np.unique(X[:, space.depth_slice])) == {1.0, 2.0, 3.0}


# --------------------------------------------------------------------------- crossover
ROWS = [  # (m1, m2, mc, k) → which parent's g_u (0 → zero)
    ((0, 0, 0), None, "zero"), ((0, 1, 0), None, "zero"), ((0, 1, 1), None, "g2"),
    ((1, 0, 0), None, "zero"), ((1, 0, 1), None, "g1"), ((1, 1, 1), 0, "g1"), ((1, 1, 1), 1, "g2"),
]


@pytest.mark.parametrize("row,k,expect", ROWS, ids=[f"m{r}-k{k}" for r, k, _ in ROWS])
def test_crossover_truth_table_rows(space, row, k, expect):
    rng = np.random.default_rng(4)
    D1, D2 = [1, 3, 2], [3, 1, 2]
    g1 = rng.uniform(0.5, 1.0, space.n_layers)       # distinct values: the source is identifiable
    g2 = rng.uniform(1.0, 1.5, space.n_layers)
    P1, P2 = state(space, D1, g1, rng), state(space, D2, g2, rng)
    m1, m2 = space.mask(D1), space.mask(D2)
    found = 0
    # depth picks covering every (stage-0, stage-1) origin: D_c ∈ {(1,3),(3,1),(1,1),(3,3)} × stage 2
    for p0 in (False, True):
        for p1 in (False, True):
            pick2 = np.zeros(space.n_arch, bool)
            pick2[0], pick2[1] = p0, p1
            for kk in (0, 1):
                kv = np.full(space.n_layers, bool(kk))
                child = crossover_states(space, P1, P2, rng, draws=(pick2, kv))[0]
                Dc = child[space.depth_slice]
                np.testing.assert_array_equal(Dc, [D2[0] if p0 else D1[0], D2[1] if p1 else D1[1], 2])
                mc = space.mask(Dc.astype(int))
                gc = child[space.gu_slice]
                np.testing.assert_array_equal(
                    gc, expected_child_gu(m1, m2, mc, P1[space.gu_slice], P2[space.gu_slice], kv)
                )
                rows = (m1 == row[0]) & (m2 == row[1]) & (mc == row[2])
                if k is not None and kk != k:
                    continue
                if rows.any():
                    found += rows.sum()
                    want = {"zero": 0.0, "g1": P1[space.gu_slice], "g2": P2[space.gu_slice]}[expect]
                    np.testing.assert_array_equal(gc[rows], np.broadcast_to(want, gc.shape)[rows])
                assert space.is_valid(child).all()
    assert found > 0, f"row {row} never occurred"


def test_crossover_k_rows_choose_both_parents_binomially(space):
    rng = np.random.default_rng(5)
    P1 = state(space, [2, 2, 2], 0.55, rng)
    P2 = state(space, [2, 3, 1], 1.45, rng)
    both = space.mask([2, 2, 2]) & space.mask([2, 3, 1])
    n = 2000
    kids = crossover_states(space, np.repeat(P1[None], n, 0), np.repeat(P2[None], n, 0), rng)
    g = kids[:, space.gu_slice][:, both]
    assert np.all((g == 0.55) | (g == 1.45))
    from_1 = int((g[:, 0] == 0.55).sum())
    assert 0 < from_1 < n
    assert binomtest(from_1, n, 0.5).pvalue > 1e-3
    # over all shared layers too (independent k per layer)
    tot = int((g == 0.55).sum())
    assert binomtest(tot, g.size, 0.5).pvalue > 1e-3


def test_crossover_depth_entries_are_50_50(space, problem):
    rng = np.random.default_rng(6)
    P1 = state(space, [1, 1, 3], 0.8, rng)
    P2 = state(space, [3, 2, 1], 1.2, rng)
    n = 2000
    off = StateCrossover(space, prob=1.0).do(problem, Population.new(X=np.stack([P1, P2])),
                                             parents=np.tile([0, 1], (n, 1)), random_state=rng)
    kids = off.get("X").reshape(2, n, space.n_var)                      # (2 children, n matings, n_var)
    assert kids.shape == (2, n, space.n_var)
    for child in kids:
        assert space.is_valid(child).all()
        D = child[:, space.depth_slice]
        for s in range(3):
            from_1 = int((D[:, s] == P1[s]).sum())
            assert binomtest(from_1, n, 0.5).pvalue > 1e-3
    # the second child takes the complementary draws
    np.testing.assert_array_equal(kids[0][:, 0] == P1[0], kids[1][:, 0] == P2[0])


def test_crossover_through_pymoo_gives_valid_states(space, problem):
    rng = np.random.default_rng(7)
    pop = Population.new("X", sample_states(space, 60, rng))
    parents = rng.integers(0, 60, size=(40, 2))
    off = StateCrossover(space).do(problem, pop, parents, random_state=rng)
    X = StateRepair(space).do(problem, off).get("X")
    assert X.shape == (80, space.n_var) and space.is_valid(X).all()
    # crossover alone already gives valid states (m1·m2 ⊆ m_c ⊆ m1 + m2)
    assert space.is_valid(off.get("X")).all()
