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


# --------------------------------------------------------------------------- ADC-bits genes (issue 15)
ADC = (3, 4, 5, 6, 8)


@pytest.fixture(scope="module")
def adc_space(space):
    return space.with_adc(ADC)


@pytest.fixture(scope="module")
def adc_problem(adc_space):
    return Problem(n_var=adc_space.n_var, n_obj=2, xl=adc_space.xl, xu=adc_space.xu)


def _digest(a) -> str:
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes()).hexdigest()[:16]


def test_without_adc_genes_the_operators_return_what_they_returned_before(space):
    """Digests of the operators' outputs computed with the code before ADC genes existed (same
    seeds): sampling, mutation + repair, crossover and a whole NSGA-II run through the pymoo operators."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.optimize import minimize
    assert space.n_var == 48 and not space.has_adc and space.adc_slice == slice(48, 48)
    assert space.with_adc(None).var_names == space.var_names
    S = sample_states(space, 64, np.random.default_rng(0))
    assert _digest(S) == "86c5eb3e8c51e5f6"
    assert _digest(sample_states(space, 64, np.random.default_rng(1), search_gu=False)) == "1773938f91b0db6c"
    assert _digest(repair_states(space, mutate_states(space, S, np.random.default_rng(2), prob_var=0.3))) == \
        "de468a77bb07fbfb"
    assert _digest(crossover_states(space, S[:32], S[32:], np.random.default_rng(3))) == "011652883eb73624"

    class Analytic(Problem):
        def __init__(self):
            super().__init__(n_var=space.n_var, n_obj=2, xl=space.xl, xu=space.xu)

        def _evaluate(self, X, out, *args, **kwargs):
            g = X[:, space.gu_slice]
            out["F"] = np.column_stack([-(X[:, space.depth_slice].sum(1) + 0.3 * g.sum(1)
                                          - 0.01 * X[:, space.width_slice].sum(1)),
                                        g.sum(1) + X[:, space.width_slice].sum(1)])

    for search_gu, want in ((True, ("639903fc2766a81e", "63b0dd9f440c2d20")),
                            (False, ("29d30062d44bf178", "7078c33feb9e8311"))):
        alg = NSGA2(pop_size=16, sampling=StateSampling(space, search_gu), crossover=StateCrossover(space),
                    mutation=StateMutation(space, search_gu), repair=StateRepair(space), eliminate_duplicates=True)
        res = minimize(Analytic(), alg, ("n_gen", 5), seed=0, verbose=False)
        assert (_digest(res.pop.get("X")), _digest(res.pop.get("F"))) == want


def test_adc_genes_extend_the_state_after_g_u(space, adc_space):
    sp = adc_space
    L = space.n_layers
    assert sp.n_var == space.n_var + L and sp.adc_slice == slice(space.n_var, space.n_var + L)
    assert sp.var_names[: space.n_var] == space.var_names
    assert sp.var_names[space.n_var:] == [f"adc_bits:{n}" for n in space.layer_names()]
    assert np.all(sp.xl[sp.adc_slice] == 0) and np.all(sp.xu[sp.adc_slice] == 8)
    s = sp.encode(sp.smallest())
    m = sp.mask(sp.smallest().depth)
    np.testing.assert_array_equal(s[sp.adc_slice], np.where(m, 8.0, 0.0))     # the finest ADC by default
    np.testing.assert_array_equal(s[: space.n_var], space.encode(space.smallest()))
    assert sp.is_valid(s).all() and not space.is_valid(s).any() and not sp.is_valid(s[: space.n_var]).any()
    assert sp.adc_bits(s) == {n: 8 for n, k in zip(sp.layer_names(), m) if k}
    bad = s.copy()
    bad[sp.adc_slice.start + int(np.flatnonzero(m)[0])] = 7            # not a choice
    assert not sp.is_valid(bad).any()
    gone = s.copy()
    gone[sp.adc_slice.start + int(np.flatnonzero(~m)[0])] = 4          # bits on a dropped layer
    assert not sp.is_valid(gone).any()
    assert space.with_adc([8, 3, 3]).adc_choices == (3, 8) and sp.size()["state_length"] == sp.n_var


@pytest.mark.parametrize("choices,match", [([], "empty"), ([1, 4], r"adc_bits\[0\]=1 is out of range.*\[2, 16\]"),
                                           ([4, 17], r"adc_bits\[1\]=17"), ([4.5], "not an integer"),
                                           ("4,5", "not a list")])
def test_adc_choices_are_refused_by_name(space, choices, match):
    from workbench.knobs import KnobError
    with pytest.raises(KnobError, match=match):
        space.with_adc(choices)


def test_repair_snaps_adc_bits_to_choices_and_zeroes_dropped_layers(adc_space):
    sp = adc_space
    rng = np.random.default_rng(10)
    n = 500
    A = sp.xl[: sp.n_arch] + rng.random((n, sp.n_arch)) * (sp.xu - sp.xl)[: sp.n_arch]    # any float in the bounds
    g = np.where(rng.random((n, sp.n_layers)) < 0.2, 0.0, rng.uniform(0.5, 1.5, (n, sp.n_layers)))
    b = np.where(rng.random((n, sp.n_layers)) < 0.2, 0.0, rng.uniform(-1.0, 9.0, (n, sp.n_layers)))
    X = np.concatenate([A, g, b], axis=1)
    R = repair_states(sp, X)
    assert sp.is_valid(R).all()                              # repaired states are always valid
    m = sp.state_mask(R)
    rb, b0 = R[:, sp.adc_slice], X[:, sp.adc_slice]
    assert np.all(rb[~m] == 0) and np.all(np.isin(rb[m], ADC))
    ch = np.asarray(ADC, float)
    positive = m & (b0 > 0)
    nearest = ch[np.abs(b0[..., None] - ch).argmin(-1)]
    np.testing.assert_array_equal(rb[positive], nearest[positive])      # snapped to the nearest choice
    assert np.all(rb[m & (b0 <= 0)] == 8)                                # a layer without bits: the finest ADC
    np.testing.assert_array_equal(repair_states(sp, R), R)               # idempotent


def test_sampled_adc_bits_are_valid_and_uniform_over_the_choices(adc_space, adc_problem):
    from scipy.stats import chisquare
    rng = np.random.default_rng(11)
    X = StateSampling(adc_space, True).do(adc_problem, 600, random_state=rng).get("X")
    assert adc_space.is_valid(X).all()
    m = adc_space.state_mask(X)
    b = X[:, adc_space.adc_slice]
    assert np.all(b[~m] == 0)
    counts = np.array([(b[m] == c).sum() for c in ADC])
    assert counts.sum() == m.sum() and chisquare(counts).pvalue > 1e-3       # every choice, equally often


def test_mutation_moves_adc_bits_to_another_choice_at_the_per_entry_rate(adc_space, adc_problem):
    sp = adc_space
    rng = np.random.default_rng(12)
    X = sample_states(sp, 1000, rng)
    pv = 0.1
    Y = mutate_states(sp, X, rng, prob_var=pv)
    b0, b1 = X[:, sp.adc_slice], Y[:, sp.adc_slice]
    kept = b0 > 0
    moved = b1 != b0
    assert not moved[~kept].any()
    # each kept layer's bits move with probability prob_var, always to a *different* choice
    assert binomtest(int(moved[kept].sum()), int(kept.sum()), pv).pvalue > 1e-3
    assert np.all(np.isin(b1[kept], ADC))
    # through pymoo (default rate: one change per state on average), repaired and valid
    Z = StateMutation(sp).do(adc_problem, Population.new("X", X.copy()), random_state=rng).get("X")
    assert sp.is_valid(Z).all()
    both = sp.state_mask(X) & sp.state_mask(Z)
    assert (Z[:, sp.adc_slice][both] != X[:, sp.adc_slice][both]).any()
    n_entries = sp.n_arch + 2 * sp.n_layers
    rate = (Z[:, sp.adc_slice][both] != X[:, sp.adc_slice][both]).mean()
    assert 0.2 / n_entries < rate < 5.0 / n_entries


def test_crossover_applies_the_truth_table_to_adc_bits_with_its_own_draws(adc_space, adc_problem):
    sp = adc_space
    rng = np.random.default_rng(13)
    D1, D2 = [1, 3, 2], [3, 1, 2]
    P1, P2 = state(sp, D1, 0.7, rng), state(sp, D2, 1.3, rng)
    P1[sp.adc_slice] = np.where(sp.mask(D1), 3.0, 0.0)
    P2[sp.adc_slice] = np.where(sp.mask(D2), 6.0, 0.0)
    m1, m2 = sp.mask(D1), sp.mask(D2)
    for p0, p1 in ((False, False), (True, False), (False, True), (True, True)):
        pick2 = np.zeros(sp.n_arch, bool)
        pick2[0], pick2[1] = p0, p1
        k, k_adc = np.zeros(sp.n_layers, bool), np.ones(sp.n_layers, bool)     # g_u from 1, ADC bits from 2
        child = crossover_states(sp, P1, P2, rng, draws=(pick2, k, k_adc))[0]
        mc = sp.mask(child[sp.depth_slice].astype(int))
        np.testing.assert_array_equal(child[sp.gu_slice],
                                      expected_child_gu(m1, m2, mc, P1[sp.gu_slice], P2[sp.gu_slice], k))
        np.testing.assert_array_equal(child[sp.adc_slice],
                                      expected_child_gu(m1, m2, mc, P1[sp.adc_slice], P2[sp.adc_slice], k_adc))
        assert sp.is_valid(child).all()
    with pytest.raises(ValueError, match="draws"):
        crossover_states(sp, P1, P2, rng, draws=(pick2, k))
    pop = Population.new("X", sample_states(sp, 60, rng))
    off = StateCrossover(sp).do(adc_problem, pop, rng.integers(0, 60, size=(40, 2)), random_state=rng).get("X")
    assert off.shape == (80, sp.n_var) and sp.is_valid(off).all()
    # shared layers take each parent's bits half of the time (k of the ADC part drawn per layer)
    n = 2000
    kids = crossover_states(sp, np.repeat(P1[None], n, 0), np.repeat(P2[None], n, 0), rng)
    both = m1 & m2 & sp.mask(D1)
    b = kids[:, sp.adc_slice][:, both]
    assert np.all((b == 3) | (b == 6)) and binomtest(int((b == 3).sum()), b.size, 0.5).pvalue > 1e-3


def test_nsga2_with_adc_genes_keeps_every_state_valid(adc_space):
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.optimize import minimize
    sp = adc_space

    class Bits(Problem):            # accuracy rises, cost rises with the ADC bits: the front spans them
        def __init__(self):
            super().__init__(n_var=sp.n_var, n_obj=2, xl=sp.xl, xu=sp.xu)

        def _evaluate(self, X, out, *args, **kwargs):
            b = X[:, sp.adc_slice]
            out["F"] = np.column_stack([-(1 - np.exp(-b.sum(1) / 40)), (2.0 ** b).sum(1)])

    alg = NSGA2(pop_size=20, sampling=StateSampling(sp), crossover=StateCrossover(sp), mutation=StateMutation(sp),
                repair=StateRepair(sp), eliminate_duplicates=True)
    X = minimize(Bits(), alg, ("n_gen", 8), seed=0, verbose=False).pop.get("X")
    assert sp.is_valid(X).all()
    b = X[:, sp.adc_slice]
    assert set(np.unique(b[b > 0])) <= set(ADC) and len(np.unique(b[b > 0])) > 1
