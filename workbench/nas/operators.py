"""Genetic operators on NAS states ``s = (m, g_u)`` (thesis §6.2.3), as pymoo operators.

A state is the float vector of :class:`~workbench.nas.supernet.ArchSpace`: architecture
choices ``m`` (depth values ``D``, width and expand indices) then one ``g_u`` per supernet
crossbar layer, stored as a multiple ``r`` of the layer's default ``g_u^d = ‖W_l‖∞``: the domain
of eq 6.2, ``g_u ∈ [0.5·g_u^d, 1.5·g_u^d]``, is ``r ∈ [0.5, 1.5]``, and ``r = 0`` marks a layer
the depth vector drops.

* :class:`StateSampling` — random architectures, ``r ~ U[0.5, 1.5]`` on kept layers (``r = 1``
  when ``g_u`` is not searched, strategy M1), then the repair of eq 6.4;
* :class:`StateMutation` — random resetting of architecture choices, pymoo's polynomial mutation
  on the kept layers' ``r``; the algorithm's repair (eq 6.4) runs after it;
* :class:`StateCrossover` — uniform crossover of the architecture (eq 6.5 for ``D``) and the
  truth table of §6.2.3 for ``g_u``;
* :class:`StateRepair` — eq 6.4: ``g_u^d`` (``r = 1``) where ``mask(D) = 1`` and ``g_u = 0``
  (a layer a mutation just added), ``g_u`` kept where ``mask(D) = 1`` and ``g_u > 0``, 0 where the
  mask is 0.  It also snaps architecture entries to valid choices.  A kept ``g_u`` is kept as
  is, also outside eq 6.2's domain, as eq 6.4 says: the domain is kept by the operators (sampling,
  mutation within ``[0.5, 1.5]``, crossover copying a parent) and checked by ``ArchSpace.is_valid``.

With ADC-bits genes (``ArchSpace(adc_choices=...)``, one integer number of bits per layer after the
``g_u`` part) every operator treats them as a second per-layer part: sampling draws them uniformly
from the choices on kept layers; mutation resets a kept layer's bits, with the same per-entry
probability, to a *different* choice; crossover applies the truth table of §6.2.3 to them with its
own draws ``k``; repair snaps them to the nearest choice where ``mask(D) = 1`` (the finest choice,
:attr:`ArchSpace.adc_default`, for a layer a mutation just added, as eq 6.4 gives it ``g_u^d``) and
zeroes them where the mask is 0.  The random draws of the ADC part come after all the others, so
without ADC genes every operator draws, and returns, exactly what it did before.
"""

from __future__ import annotations

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.mutation import Mutation
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.operators.mutation.pm import mut_pm

from .space import ArchSpace


# --------------------------------------------------------------------------- functions
def repair_states(space: ArchSpace, X) -> np.ndarray:
    """Repair ``R(g_u, mask(D))`` of eq 6.4 on every row of ``X`` (returns a new array)."""
    X = np.array(np.atleast_2d(X), dtype=float)
    A = np.rint(X[:, : space.n_arch])
    A = np.clip(A, space.xl[: space.n_arch], space.xu[: space.n_arch])
    choices = np.asarray(space.depth_choices)
    D = A[:, space.depth_slice]
    A[:, space.depth_slice] = choices[np.abs(D[..., None] - choices).argmin(-1)]   # nearest allowed depth
    X[:, : space.n_arch] = A
    m = space.mask(A[:, space.depth_slice].astype(int))
    g = X[:, space.gu_slice]
    # eq 6.4 covers g_u ≥ 0; a non-positive value is no conductance scale, so it gets g_u^d like 0
    X[:, space.gu_slice] = np.where(m, np.where(g > 0, g, 1.0), 0.0)
    if space.has_adc:
        b = X[:, space.adc_slice]
        ch = np.asarray(space.adc_choices, float)
        nearest = ch[np.abs(b[..., None] - ch).argmin(-1)]
        X[:, space.adc_slice] = np.where(m, np.where(b > 0, nearest, float(space.adc_default)), 0.0)
    return X


def _inherit(m1, m2, mc, v1, v2, k) -> np.ndarray:
    """The truth table of §6.2.3 for one per-layer part (``g_u`` or ADC bits)."""
    return np.where(m1 & m2, np.where(k, v2, v1), np.where(mc & m1, v1, np.where(mc & m2, v2, 0.0)))


def crossover_states(space: ArchSpace, X1, X2, rng: np.random.Generator, complement: bool = False,
                     draws: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Child ``s_c`` of parents ``s_1``, ``s_2`` (rows of ``X1``, ``X2``), §6.2.3.

    Every architecture entry comes from parent 1 or 2 with probability ½ (eq 6.5 for the depth
    vector ``D``; the same uniform crossover for width and expand entries), giving ``m_c =
    mask(D_c)``.  Then, per layer, with ``k ~ U{0, 1}``::

        m1·m2 = 1        → g_uc = g_u1 if k = 0 else g_u2
        else if m_c = 1  → g_uc = the non-zero one of g_u1, g_u2
        else             → g_uc = 0

    ``complement``: use the complementary draws (the second child of a mating).  ``draws``:
    the ``(pick_parent2, k)`` boolean arrays (for tests), plus ``k`` of the ADC part with ADC genes
    (``(pick_parent2, k, k_adc)``); drawn from ``rng`` otherwise.  ADC bits follow the same table.
    """
    X1, X2 = np.atleast_2d(np.asarray(X1, dtype=float)), np.atleast_2d(np.asarray(X2, dtype=float))
    n = len(X1)
    shapes = ((n, space.n_arch), (n, space.n_layers)) + (((n, space.n_layers),) if space.has_adc else ())
    if draws is None:
        drawn = [rng.random(shape) < 0.5 for shape in shapes]
    else:
        if len(draws) < len(shapes):
            raise ValueError(f"draws holds {len(draws)} arrays, this space needs {len(shapes)} "
                             "(pick_parent2, k, and k of the ADC bits with ADC genes)")
        drawn = [np.broadcast_to(np.asarray(d, bool), shape) for d, shape in zip(draws, shapes)]
    if complement:
        drawn = [~d for d in drawn]
    pick2, k = drawn[0], drawn[1]
    A = np.where(pick2, X2[:, : space.n_arch], X1[:, : space.n_arch])
    m1, m2 = space.state_mask(X1), space.state_mask(X2)
    mc = space.mask(np.rint(A[:, space.depth_slice]).astype(int))
    parts = [A, _inherit(m1, m2, mc, X1[:, space.gu_slice], X2[:, space.gu_slice], k)]
    if space.has_adc:
        parts.append(_inherit(m1, m2, mc, X1[:, space.adc_slice], X2[:, space.adc_slice], drawn[2]))
    return np.concatenate(parts, axis=1)


def mutate_states(space: ArchSpace, X, rng: np.random.Generator, prob_var: float | None = None,
                  eta: float = 20.0, search_gu: bool = True) -> np.ndarray:
    """Mutation to a neighbouring state (not repaired: run :func:`repair_states` after it).

    Each architecture entry is reset, with probability ``prob_var``, to a *different* allowed
    choice; each kept layer's ``r`` gets pymoo's polynomial mutation (``eta``) within
    ``[0.5, 1.5]`` with the same probability (only when ``search_gu``); with ADC genes, each kept
    layer's ADC bits are reset, with that probability, to a different choice.  Default
    ``prob_var = 1 / (number of searched entries)``: one change per state on average."""
    X = np.array(np.atleast_2d(X), dtype=float)
    n = len(X)
    n_eff = space.n_arch + (space.n_layers if search_gu else 0) + (space.n_layers if space.has_adc else 0)
    pv = min(0.5, 1.0 / n_eff) if prob_var is None else float(prob_var)
    lo, hi = space.xl[: space.n_arch], space.xu[: space.n_arch]
    flip = rng.random((n, space.n_arch)) < pv
    for j in range(space.n_arch):
        rows = np.flatnonzero(flip[:, j])
        if len(rows) == 0 or hi[j] == lo[j]:
            continue
        options = (np.asarray(space.depth_choices, float) if j < space.n_stages
                   else np.arange(lo[j], hi[j] + 1))
        for i in rows:
            others = options[options != X[i, j]]
            X[i, j] = rng.choice(others)
    if search_gu:
        g = X[:, space.gu_slice]
        kept = g > 0
        L = space.n_layers
        gm = mut_pm(np.where(kept, g, 1.0), np.full(L, space.gu_low), np.full(L, space.gu_high),
                    np.full(n, float(eta)), np.full(n, pv), False, random_state=rng)
        X[:, space.gu_slice] = np.where(kept, gm, 0.0)
    if space.has_adc:
        ch = np.asarray(space.adc_choices, float)
        b = X[:, space.adc_slice]
        flip = (rng.random(b.shape) < pv) & (b > 0)
        if len(ch) > 1 and flip.any():
            idx = np.abs(b[..., None] - ch).argmin(-1)                        # the current (nearest) choice
            step = rng.integers(1, len(ch), size=b.shape)                     # uniform over the other choices
            X[:, space.adc_slice] = np.where(flip, ch[(idx + step) % len(ch)], b)
    return X


def sample_states(space: ArchSpace, n: int, rng: np.random.Generator, search_gu: bool = True) -> np.ndarray:
    """``n`` random valid states: uniform architecture choices; ``r ~ U[0.5, 1.5]`` on kept
    layers (``r = 1``, i.e. ``g_u = g_u^d``, when not ``search_gu``); with ADC genes, ADC bits
    uniform over the choices on kept layers; repaired (eq 6.4)."""
    A = space.sample_arch(n, rng)
    m = space.mask(A[:, space.depth_slice].astype(int))
    g = rng.uniform(space.gu_low, space.gu_high, size=m.shape) if search_gu else np.ones(m.shape)
    parts = [A, np.where(m, g, 0.0)]
    if space.has_adc:
        parts.append(np.where(m, rng.choice(np.asarray(space.adc_choices, float), size=m.shape), 0.0))
    return repair_states(space, np.concatenate(parts, axis=1))


# --------------------------------------------------------------------------- pymoo operators
class StateSampling(Sampling):
    """pymoo sampling of valid states (see :func:`sample_states`)."""

    def __init__(self, space: ArchSpace, search_gu: bool = True):
        super().__init__()
        self.space, self.search_gu = space, search_gu

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        return sample_states(self.space, n_samples, random_state, self.search_gu)


class StateRepair(Repair):
    """pymoo repair of eq 6.4 (see :func:`repair_states`); pymoo runs it after sampling and
    after every mating (crossover + mutation)."""

    def __init__(self, space: ArchSpace):
        super().__init__()
        self.space = space

    def _do(self, problem, X, **kwargs):
        return repair_states(self.space, X)


class StateMutation(Mutation):
    """pymoo mutation (see :func:`mutate_states`) followed by the repair of eq 6.4 (built in, so
    the operator alone returns valid states; the algorithm's :class:`StateRepair` then is a no-op)."""

    def __init__(self, space: ArchSpace, search_gu: bool = True, prob: float = 1.0, prob_var: float | None = None,
                 eta: float = 20.0):
        super().__init__(prob=prob)
        self.space, self.search_gu, self.eta, self.state_prob_var = space, search_gu, eta, prob_var

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        return repair_states(self.space, mutate_states(self.space, X, random_state, self.state_prob_var, self.eta,
                                                       self.search_gu))


class StateCrossover(Crossover):
    """pymoo crossover of two parents into two children (the second uses the complementary
    draws), see :func:`crossover_states`; applied to a mating with probability ``prob``."""

    def __init__(self, space: ArchSpace, prob: float = 0.9):
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)
        self.space = space

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        P1, P2 = X[0], X[1]
        rng = random_state
        pick2 = rng.random((len(P1), self.space.n_arch)) < 0.5
        k = rng.random((len(P1), self.space.n_layers)) < 0.5
        draws = (pick2, k) + ((rng.random((len(P1), self.space.n_layers)) < 0.5,) if self.space.has_adc else ())
        c1 = crossover_states(self.space, P1, P2, rng, draws=draws)
        c2 = crossover_states(self.space, P1, P2, rng, complement=True, draws=draws)
        return np.stack([c1, c2])
