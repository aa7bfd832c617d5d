"""Analytic output error and power of a network on noisy memristor crossbars — the moment-propagation
approach of MemSE ([159], thesis §3.3.2), written here from the equations — and its Monte-Carlo
counterpart.

:func:`memse` propagates, for every input sample of a batch, the mean and the (co)variance of every
activation through the network, starting from the exact input (zero variance), under the
conductance noise of :class:`~workbench.hardware.memristor.MemristorMemory`.  It returns the
predicted output mean, the output MSE against the noise-free output
``E[(ỹ − y)²] = Var[ỹ] + (E[ỹ] − y)²`` (mean over the batch and the outputs) and the expected
crossbar power per layer (eq 3.41–3.44 in expectation).  :func:`mc_output_mse` measures the same
MSE and power by Monte Carlo, with a Student-t confidence interval over draws.

What is exact and what is approximated
--------------------------------------
* **Weight reads** (exact).  A read is unbiased, ``E[w̃] = w``, with independent elements of
  variance ``V = σ_c²(g+² + g-²)/k²`` (multiplicative noise, eq 3.37) or ``V = 2σ²/k²``
  (additive, eq 3.36), ``k = (g_u − g_min)/‖W‖∞`` the weight → conductance gain of eq 3.34–3.35.
  A deployed layer's bias row is one more row of the matrix (input 1).
* **Crossbar layers** (exact, given the input moments).  The read of a layer is independent of its
  input, so for ``y_j = Σ_i w̃_ji x_i + b̃_j``:
  ``E[y] = W E[x] + b``, ``Cov(y_j, y_l) = (W Σ_x Wᵀ)_jl + δ_jl (Σ_i V_ji E[x_i²] + V_bj)``.
  For a convolution the draw is shared by every patch (Unfold-Repeat), so the weight noise also
  correlates *positions* of one output channel:
  ``Cov(y_jp, y_jq) ⊃ Σ_r V_jr E[x_r(p) x_r(q)] + V_bj`` (``r`` runs over the patch).
* **Linear digital ops** (exact): batch norm (eval statistics), average / adaptive average
  pooling, ``mean``, flatten, identity, dropout (eval), addition of a constant.
* **ReLU** (Gaussian approximation): each pre-activation is taken as Gaussian; mean and variance
  are the closed forms ``E[max(0,X)] = μΦ(α) + sφ(α)`` and
  ``Var = s²(α²Φ(α)Φ(−α) + Φ(α) + αφ(α)(Φ(−α) − Φ(α)) − φ(α)²)``, ``α = μ/s``; a pair of
  units is taken as jointly Gaussian with correlation ρ and its covariance is the Mehler
  (Hermite) series ``s_a s_b Σ_k ρ^k/k! ĉ_k(α_a) ĉ_k(α_b)``, ``ĉ_1 = Φ``,
  ``ĉ_k = (−1)^k He_{k−2}(α)φ(α)``, truncated after ``relu_terms`` terms (1 is the first order
  of Price's theorem, ``Φ(α_a)Φ(α_b)·Cov``; the default 2 adds ``ρ²φ_aφ_b/2``; more terms
  change nothing measurable on the tests' nets).
* **Max pooling** (Clark's approximation): the max of a window is built pairwise, each partial
  max treated as Gaussian with Clark's mean and variance; its covariance with any other
  activation is ``Φ(α)Cov(X, Z) + Φ(−α)Cov(Y, Z)``.
* **Covariance**: ``covariance="full"`` keeps the full per-sample covariance of every activation
  (quadratic in the activation size, as MemSE; the thesis notes it is the heavy part), which the
  shared draw of Unfold-Repeat makes necessary for accuracy: neighbouring outputs of a channel are
  strongly correlated and pooling/next layers sum them.  ``covariance="diagonal"`` keeps
  variances only (activations independent) — cheap, scales to any net, but it misses exactly
  those correlations, so it is only a rough figure on convolutional nets.  ``"auto"`` picks full
  when it fits in ``max_cov_bytes``.
* :func:`memse_fast` linearises instead (first order in the noise, no covariance at all): cheaper,
  closer to Monte Carlo than this propagation for σ_c ≤ 0.2 on the digits nets, and not limited to
  feed-forward nets.
* **Not supported** (by the propagation; :func:`memse_fast` handles them): residual additions of two
  noisy tensors (their cross-covariance is not tracked), other activations.  Either estimate needs
  an ideal, memristor or noise-injection memory.  The net
  is traced with ``torch.fx`` (noisy layers as leaves); an unsupported op raises
  ``NotImplementedError`` naming it.

Where the approximations break.  They are exact as the noise → 0 and drift as more ReLUs sit
near their kink and more max-pool windows have close competitors.  Measured on the digits SmallCNN
(width 0.25, 3 epochs, deployed, 64 test inputs, 2000 Monte-Carlo draws), analytic ÷ Monte-Carlo
MSE: σ_c = 0.005 → 0.997, 0.02 → 0.98–0.99, 0.05 → 0.97, 0.1 → 0.95, 0.2 → 0.91, 0.3 → 0.87
(additive noise with ``g_u = ‖W‖∞``: σ = 0.01 → 0.98, 0.05 → 0.92): the analytic value
underestimates, mostly through Clark's max (with average instead of max pooling the same net
stays within 1–2 % at σ_c = 0.2).  The diagonal mode gives 0.29–0.35 of the Monte-Carlo MSE on
that net at every σ_c.  The expected power stays inside the Monte-Carlo 95 % interval throughout
(it depends on the activations only through ``E[x]`` and ``E[x∘x]``).

Power.  Eq 3.41–3.44 are linear in the noisy conductances and in ``x`` / ``x∘x``, and a layer's
read is independent of its input, so
``E[P] = Σ f(E[x∘x], E|g̃+| + E|g̃-|) + Σ f(E[x], g+) + Σ f(E[x], g-)`` with ``E[x∘x] = μ² + σ²``
from the propagated moments and ``E|g̃|`` the folded-normal mean (``|g̃|`` of a conductance
programmed at 0 is the half-normal ``σ√(2/π)`` under additive noise).  As in
:func:`workbench.analysis.montecarlo.layer_power`, power is per input sample (batch sum ÷ batch
size), 0 for layers not held in a memristor memory.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
import xarray as xr
from scipy import stats
from torch.func import functional_call

from ..hardware import Memory, MemoryMap
from ..hardware.memristor import InjectionMemory, MemristorMemory
from ..knobs import check_choice, check_int
from ..nn import capture_layer_inputs, noisy_layers, set_memory, weights_as_given
from ..nn.deploy import CrossbarMixin, pair, trace
from ..nn.layers import NoisyMixin
from .montecarlo import layer_power, read_weights

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _Phi(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-a / _SQRT2)


def _phi(a: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * a * a) * _INV_SQRT_2PI


# ------------------------------------------------------------------------------------------
# reads of one layer


def read_variance(memory: Memory, weight: torch.Tensor) -> torch.Tensor:
    """Per-element variance of ``weight`` read back through ``memory`` (weight domain, same shape).

    Memristor (eq 3.34–3.38): ``σ_c²(g+² + g-²)/k²`` (multiplicative) or ``2σ²/k²`` (additive);
    noise injection (eq 5.4): ``σ_n²``; an ideal / noise-free memory: 0.  Every such read is
    unbiased (``E[w̃] = w``) with independent elements."""
    if not memory.is_noisy:
        return torch.zeros_like(weight)
    if isinstance(memory, MemristorMemory):
        gp, gm, k = memory.program(weight)
        k = torch.as_tensor(k, dtype=weight.dtype, device=weight.device)
        if memory.noise == "multiplicative":
            return memory.sigma_c ** 2 * (gp * gp + gm * gm) / (k * k)
        return (2 * memory.sigma ** 2 / (k * k)) * torch.ones_like(weight)
    if isinstance(memory, InjectionMemory):
        return memory.sigma_n(weight) ** 2 * torch.ones_like(weight)
    raise NotImplementedError(f"memse: no moment model for {type(memory).__name__} (technology "
                              f"{memory.technology!r}); supported: ideal, memristor, injection")


def _folded_normal_mean(mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``E|X|`` for ``X ~ N(μ, s²)``."""
    pos = s > 0
    s_ = torch.where(pos, s, torch.ones_like(s))
    a = mu / s_
    val = s_ * math.sqrt(2 / math.pi) * torch.exp(-0.5 * a * a) + mu * (1 - 2 * _Phi(-a))
    return torch.where(pos, val, mu.abs())


def expected_abs_conductances(memory: MemristorMemory, weight: torch.Tensor):
    """``(E|g̃+|, E|g̃-|)`` of the noisy conductances programmed for ``weight`` (eq 3.42's ``|g|``)."""
    gp, gm, _ = memory.program(weight)
    return _abs_means(memory, gp, gm)


def _abs_means(memory: MemristorMemory, gp: torch.Tensor, gm: torch.Tensor):
    if not memory.is_noisy:
        return gp.abs(), gm.abs()
    if memory.noise == "multiplicative":
        return tuple(_folded_normal_mean(g, memory.sigma_c * g.abs()) for g in (gp, gm))
    s = torch.full_like(gp, memory.sigma)
    return _folded_normal_mean(gp, s), _folded_normal_mean(gm, s)


# ------------------------------------------------------------------------------------------
# moments


class _Mom:
    """Moments of a random activation batch: ``mean`` ``(B, *shape)``; ``var`` ``(B, *shape)``
    (diagonal mode) or ``cov`` ``(B, n, n)`` with ``n = prod(shape)`` (full mode); both ``None``
    for a deterministic tensor (the covariance is instantiated lazily, at the first noisy layer)."""

    __slots__ = ("mean", "var", "cov")

    def __init__(self, mean, var=None, cov=None):
        self.mean, self.var, self.cov = mean, var, cov

    @property
    def random(self) -> bool:
        return self.var is not None or self.cov is not None

    def diag(self) -> torch.Tensor | None:
        if self.var is not None:
            return self.var
        if self.cov is not None:
            return torch.diagonal(self.cov, dim1=1, dim2=2).reshape(self.mean.shape)
        return None

    def second_moment(self) -> torch.Tensor:
        v = self.diag()
        return self.mean * self.mean if v is None else self.mean * self.mean + v


def _cov_linear(cov: torch.Tensor, fn, in_shape) -> torch.Tensor:
    """``A Σ Aᵀ`` per sample for a linear map ``fn`` acting on tensors of shape ``(N, *in_shape)``."""
    b, n, _ = cov.shape
    t = fn(cov.reshape(b * n, *in_shape))
    m = t[0].numel()
    t = t.reshape(b, n, m).transpose(1, 2).reshape(b * m, *in_shape)
    return fn(t).reshape(b, m, m)


def _bind(args, kwargs, names, defaults):
    out = dict(defaults)
    out.update(zip(names, args))
    out.update(kwargs)
    return out


def _has_mom(args, kwargs) -> bool:
    return any(isinstance(a, _Mom) for a in list(args) + list(kwargs.values()))


class _Propagator(fx.Interpreter):
    """Runs the traced network on :class:`_Mom` values (one chunk of samples)."""

    def __init__(self, gm: fx.GraphModule, mmap: MemoryMap, full: bool, noise: bool, dtype, relu_terms: int = 2):
        super().__init__(gm)
        self.relu_terms = relu_terms
        self.mmap, self.full, self.noise, self.dtype = mmap, full, noise, dtype
        self.power: dict[str, float] = {}
        self.max_numel = 0

    def run_node(self, n):
        out = super().run_node(n)
        if isinstance(out, _Mom):
            self.max_numel = max(self.max_numel, out.mean[0].numel())
        return out

    # --- dispatch ---------------------------------------------------------------------
    def call_module(self, target, args, kwargs):
        if not _has_mom(args, kwargs):
            return super().call_module(target, args, kwargs)
        m = self.fetch_attr(target)
        x = args[0]
        if isinstance(m, NoisyMixin):
            return self._crossbar(target, m, x)
        if isinstance(m, nn.ReLU):
            return self._relu(x)
        if isinstance(m, nn.MaxPool2d):
            return self._maxpool(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)
        if isinstance(m, nn.AvgPool2d):
            return self._avgpool(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                 m.divisor_override)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self._adaptive_avgpool(x, m.output_size)
        if isinstance(m, (nn.Identity, nn.Dropout)):
            return x
        if isinstance(m, nn.Flatten):
            return self._reshape(x, torch.flatten(x.mean, m.start_dim, m.end_dim))
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self._batchnorm(x, m)
        raise NotImplementedError(f"memse: module {target!r} ({type(m).__name__}) is not supported; supported: noisy/"
                                  f"crossbar conv and linear, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm "
                                  f"(eval), Flatten, Identity, Dropout")

    def call_function(self, target, args, kwargs):
        if not _has_mom(args, kwargs):
            return super().call_function(target, args, kwargs)
        if target in (F.relu, torch.relu):
            return self._relu(args[0])
        if target is torch.flatten:
            a = _bind(args, kwargs, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
            return self._reshape(a["input"], torch.flatten(a["input"].mean, a["start_dim"], a["end_dim"]))
        if target is F.max_pool2d:
            a = _bind(args, kwargs,
                      ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                      {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False})
            return self._maxpool(a["input"], a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"],
                                 a["return_indices"])
        if target is F.avg_pool2d:
            a = _bind(args, kwargs, ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                     "divisor_override"),
                      {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                       "divisor_override": None})
            return self._avgpool(a["input"], a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                                 a["count_include_pad"], a["divisor_override"])
        if target is F.adaptive_avg_pool2d:
            a = _bind(args, kwargs, ("input", "output_size"), {})
            return self._adaptive_avgpool(a["input"], a["output_size"])
        if target in (operator.add, operator.iadd, torch.add) and not kwargs:
            return self._add(*args)
        if target in (operator.mul, operator.imul, torch.mul) and not kwargs:
            return self._scale(*args)
        if target in (operator.truediv,) and isinstance(args[1], (int, float)):
            return self._scale(args[0], 1.0 / args[1])
        name = getattr(target, "__name__", repr(target))
        raise NotImplementedError(f"memse: function {name} is not supported (residual additions of two noisy tensors, "
                                  f"other activations and ops are not modelled)")

    def call_method(self, target, args, kwargs):
        if not _has_mom(args, kwargs):
            return super().call_method(target, args, kwargs)
        x, rest = args[0], args[1:]
        if target in ("size", "dim") and isinstance(x, _Mom):
            return getattr(x.mean, target)(*rest, **kwargs)
        if target in ("view", "reshape", "flatten") and isinstance(x, _Mom):
            return self._reshape(x, getattr(x.mean, target)(*rest, **kwargs))
        if target == "relu":
            return self._relu(x)
        if target == "mean" and isinstance(x, _Mom):
            return self._mean(x, *rest, **kwargs)
        raise NotImplementedError(f"memse: method .{target}() on a noisy tensor is not supported")

    # --- ops --------------------------------------------------------------------------
    def _reshape(self, x: _Mom, new_mean: torch.Tensor) -> _Mom:
        if new_mean.shape[0] != x.mean.shape[0]:
            raise NotImplementedError("memse: a reshape that mixes the batch dimension is not supported")
        var = None if x.var is None else x.var.reshape(new_mean.shape)
        return _Mom(new_mean, var, x.cov)

    def _add(self, a, b):
        if isinstance(a, _Mom) and isinstance(b, _Mom):
            if a.random and b.random:
                raise NotImplementedError("memse: the sum of two noisy tensors (a residual connection) needs their "
                                          "cross-covariance, which this estimator does not track")
            r = a if a.random else b
            mean = a.mean + b.mean
        else:
            r, c = (a, b) if isinstance(a, _Mom) else (b, a)
            mean = r.mean + (c.to(r.mean) if isinstance(c, torch.Tensor) else c)
        if mean.shape != r.mean.shape:
            raise NotImplementedError("memse: an addition that broadcasts a noisy tensor is not supported")
        return _Mom(mean, r.var, r.cov)

    def _scale(self, a, b):
        x, c = (a, b) if isinstance(a, _Mom) else (b, a)
        if isinstance(c, _Mom) or not isinstance(c, (int, float)):
            raise NotImplementedError("memse: only the product of a noisy tensor by a number is supported")
        return _Mom(x.mean * c, None if x.var is None else x.var * c * c, None if x.cov is None else x.cov * c * c)

    def _linear_op(self, x: _Mom, fn, var_factor) -> _Mom:
        """A linear digital op ``fn``; ``var_factor`` gives ``Var`` from ``fn(var)`` for independent
        inputs (uniform weights ``a`` per output: ``Σ a² v = a·fn(v)``)."""
        mean = fn(x.mean)
        if not x.random:
            return _Mom(mean)
        if self.full:
            return _Mom(mean, cov=_cov_linear(x.cov, fn, x.mean.shape[1:]))
        return _Mom(mean, var=fn(x.var) * var_factor)

    def _mean(self, x: _Mom, dim=None, keepdim=False, **kw):
        if dim is None or kw:
            raise NotImplementedError("memse: .mean() needs explicit non-batch dims")
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        nd = x.mean.dim()
        dims = tuple(d % nd for d in dims)
        if 0 in dims:
            raise NotImplementedError("memse: a mean over the batch dimension is not supported")
        count = math.prod(x.mean.shape[d] for d in dims)
        return self._linear_op(x, lambda t: t.mean(dims, keepdim=keepdim), 1.0 / count)

    def _batchnorm(self, x: _Mom, bn) -> _Mom:
        if bn.running_mean is None:
            raise NotImplementedError("memse: a batch norm without running statistics is not supported")
        a = 1.0 / torch.sqrt(bn.running_var.to(self.dtype) + bn.eps)
        c = -bn.running_mean.to(self.dtype) * a
        if bn.affine:
            gamma, beta = bn.weight.detach().to(self.dtype), bn.bias.detach().to(self.dtype)
            a, c = a * gamma, c * gamma + beta
        shape = (1, -1) + (1,) * (x.mean.dim() - 2)
        a, c = a.view(shape), c.view(shape)
        mean = x.mean * a + c
        if not x.random:
            return _Mom(mean)
        if self.full:
            af = (a * torch.ones_like(x.mean[:1])).flatten()
            return _Mom(mean, cov=x.cov * af[:, None] * af[None, :])
        return _Mom(mean, var=x.var * a * a)

    def _adaptive_avgpool(self, x: _Mom, output_size) -> _Mom:
        h, w = x.mean.shape[-2:]
        oh, ow = pair(output_size)
        oh, ow = oh or h, ow or w

        def sizes(n, o):
            return torch.tensor([math.ceil((i + 1) * n / o) - (i * n) // o for i in range(o)], dtype=self.dtype)
        count = sizes(h, oh).view(-1, 1) * sizes(w, ow).view(1, -1)
        return self._linear_op(x, lambda t: F.adaptive_avg_pool2d(t, (oh, ow)), 1.0 / count.to(x.mean.device))

    def _avgpool(self, x: _Mom, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override) -> _Mom:
        if ceil_mode:
            raise NotImplementedError("memse: AvgPool2d(ceil_mode=True) is not supported")
        ks = pair(kernel_size)
        st = pair(stride) if stride not in (None, []) else ks
        pd = pair(padding)

        def fn(t):
            return F.avg_pool2d(t, ks, st, pd, False, count_include_pad, divisor_override)
        if divisor_override:
            factor = 1.0 / divisor_override
        elif count_include_pad or pd == (0, 0):
            factor = 1.0 / (ks[0] * ks[1])
        else:
            ones = torch.ones((1, 1, *x.mean.shape[-2:]), dtype=self.dtype, device=x.mean.device)
            factor = 1.0 / (F.avg_pool2d(ones, ks, st, pd, False, True) * ks[0] * ks[1])[0]
        return self._linear_op(x, fn, factor)

    def _relu(self, x: _Mom) -> _Mom:
        if not x.random:
            return _Mom(F.relu(x.mean))
        mu, v = x.mean, x.diag()
        s = torch.sqrt(v.clamp_min(0))
        pos = s > 0
        s_ = torch.where(pos, s, torch.ones_like(s))
        a = torch.where(pos, mu / s_, torch.zeros_like(mu))
        P, Q, p = _Phi(a), _Phi(-a), _phi(a)
        r = (a * a * P * Q + P + a * p * (Q - P) - p * p).clamp_min(0)
        mean = torch.where(pos, mu * P + s * p, F.relu(mu))
        var = torch.where(pos, v * r, torch.zeros_like(v))
        if not self.full:
            return _Mom(mean, var=var)
        b = mu.shape[0]
        d = torch.where(pos, P, (mu > 0).to(mu)).reshape(b, -1)
        if self.relu_terms == 1:
            cov = x.cov * d[:, :, None]
            cov.mul_(d[:, None, :])
        else:
            # Mehler / Hermite series in the correlation ρ = C/(s_a s_b):
            # Cov = s_a s_b Σ_k ρ^k/k! ĉ_k(α_a) ĉ_k(α_b) = C ⊙ Σ_k ρ^(k−1)/k! ĉ_k(α_a) ĉ_k(α_b),
            # ĉ_1 = Φ(α), ĉ_k = (−1)^k He_{k−2}(α) φ(α) (k ≥ 2), summed by Horner's rule in place
            inv = torch.where(pos, 1.0 / s_, torch.zeros_like(s)).reshape(b, -1)
            af = a.reshape(b, -1)
            pf = torch.where(pos & (p > 1e-30), p, torch.zeros_like(p)).reshape(b, -1)
            coef = [d]
            he_prev, he = torch.zeros_like(af), torch.ones_like(af)          # He_{-1}, He_0
            for k in range(2, self.relu_terms + 1):
                coef.append((-1) ** k * he * pf)
                he_prev, he = he, af * he - (k - 2) * he_prev                  # He_{k-1}
            rho = x.cov * inv[:, :, None]
            rho.mul_(inv[:, None, :])
            kmax = self.relu_terms
            cov = coef[-1][:, :, None] * (coef[-1] / math.factorial(kmax))[:, None, :]
            for k in range(kmax - 1, 0, -1):
                cov.mul_(rho).addcmul_(coef[k - 1][:, :, None], (coef[k - 1] / math.factorial(k))[:, None, :])
            del rho
            cov.mul_(x.cov)
        torch.diagonal(cov, dim1=1, dim2=2).copy_(var.reshape(b, -1))
        return _Mom(mean, cov=cov)

    def _maxpool(self, x: _Mom, kernel_size, stride, padding, dilation, ceil_mode, return_indices) -> _Mom:
        if ceil_mode or return_indices:
            raise NotImplementedError("memse: max pooling with ceil_mode or return_indices is not supported")
        ks = pair(kernel_size)
        st = pair(stride) if stride not in (None, []) else ks
        pd, dl = pair(padding), pair(dilation)
        if not x.random:
            return _Mom(F.max_pool2d(x.mean, ks, st, pd, dl))
        b, c, h, w = x.mean.shape
        m = ks[0] * ks[1]
        v = x.diag()
        # padded positions never win: a mean far below every activation, no variance
        low = float(x.mean.min()) - 1e6 * (1.0 + float(x.mean.abs().max()) + float(v.max().sqrt()))
        pad4 = (pd[1], pd[1], pd[0], pd[0])

        def windows(t, fill):
            u = F.unfold(F.pad(t, pad4, value=fill), ks, dilation=dl, stride=st)        # (B, C*m, L)
            return u.view(t.shape[0], c, m, -1).permute(0, 1, 3, 2)                     # (B, C, L, m)
        um, uv = windows(x.mean, low), windows(v, 0.0)
        L = um.shape[2]
        oh = (h + 2 * pd[0] - dl[0] * (ks[0] - 1) - 1) // st[0] + 1
        ow = (w + 2 * pd[1] - dl[1] * (ks[1] - 1) - 1) // st[1] + 1
        if self.full:
            n = c * h * w
            idx = torch.arange(1, n + 1, dtype=torch.float64, device=x.mean.device).view(1, c, h, w)
            idx = (windows(idx, 0.0)[0].round().long() - 1)                                   # (C, L, m), -1 = pad
            valid = idx >= 0
            ic = idx.clamp_min(0)
            sw = x.cov[:, ic[..., :, None], ic[..., None, :]]                                 # (B, C, L, m, m)
            sw = sw * (valid[..., :, None] & valid[..., None, :]).to(sw)
            wts = torch.zeros_like(um)
            wts[..., 0] = 1.0
        mu_m, v_m = um[..., 0], uv[..., 0]
        for t in range(1, m):
            mt, vt = um[..., t], uv[..., t]
            cross = (wts * sw[..., :, t]).sum(-1) if self.full else 0.0
            theta = torch.sqrt((v_m + vt - 2 * cross).clamp_min(0))
            d = mu_m - mt
            pos = theta > 0
            th_ = torch.where(pos, theta, torch.ones_like(theta))
            a = torch.where(pos, d / th_, torch.zeros_like(d))
            P = torch.where(pos, _Phi(a), (d >= 0).to(d))
            Q = torch.where(pos, _Phi(-a), (d < 0).to(d))
            tp = torch.where(pos, theta * _phi(a), torch.zeros_like(d))
            mu_m = mt + d * P + tp
            v_m = (v_m * P + vt * Q + d * d * P * Q + tp * d * (Q - P) - tp * tp).clamp_min(0)
            if self.full:
                wts = wts * P[..., None]
                wts[..., t] += Q
        mean = mu_m.reshape(b, c, oh, ow)
        var = v_m.reshape(b, c, oh, ow)
        if not self.full:
            return _Mom(mean, var=var)

        tiles = st == ks and pd == (0, 0) and dl == (1, 1) and h == oh * ks[0] and w == ow * ks[1]

        def apply(t):  # (B, N, C, H, W) -> (B, N, C*L): the window sums Σ_i w_i t_i of each output
            nb = t.shape[1]
            if tiles:   # non-overlapping windows tiling the map: no unfold
                u = t.reshape(b, nb, c, oh, ks[0], ow, ks[1])
                wt = wts.view(b, 1, c, oh, ow, ks[0], ks[1])
                out = u[:, :, :, :, 0, :, 0] * wt[..., 0, 0]
                for i in range(ks[0]):
                    for j in range(ks[1]):
                        if i or j:
                            out.addcmul_(u[:, :, :, :, i, :, j], wt[..., i, j])
                return out.reshape(b, nb, c * L)
            u = F.unfold(t.reshape(b * nb, c, h, w), ks, dilation=dl, padding=pd, stride=st).view(b, nb, c, m, L)
            return torch.einsum("bncml,bclm->bncl", u, wts).reshape(b, nb, c * L)
        cov = apply(x.cov.view(b, -1, c, h, w))                                               # (B, n, n_out)
        cov = apply(cov.transpose(1, 2).reshape(b, -1, c, h, w)).contiguous()                 # (B, n_out, n_out)
        torch.diagonal(cov, dim1=1, dim2=2).copy_(var.reshape(b, -1))
        return _Mom(mean, cov=cov)

    # --- crossbar layers ----------------------------------------------------------------
    def _crossbar(self, name: str, layer: NoisyMixin, x: _Mom) -> _Mom:
        memory = self.mmap[name]
        wq = layer.quantized_weight().detach().to(self.dtype)
        kernel, row = _split(layer, wq)
        if memory.technology == "memristor":
            self.power[name] = self.power.get(name, 0.0) + _expected_power(layer, memory, wq, x)
        lin = _kernel_fn(layer)
        scale = layer.out_scale if layer.binary else 1.0
        bshape = (1, -1) + (1,) * (x.mean.dim() - 2)
        mean = lin(x.mean, kernel)
        for bias in (row, layer.bias.detach().to(self.dtype) if layer.bias is not None else None):
            if bias is not None:
                mean = mean + bias.view(bshape)
        V = read_variance(memory, wq) if self.noise else None
        if V is not None and not bool((V > 0).any()):
            V = None
        if not x.random and V is None:
            return _Mom(mean * scale)
        vk, vb = _split(layer, V) if V is not None else (None, None)
        b = mean.shape[0]
        if not self.full:
            var = torch.zeros_like(mean)
            if x.random:
                var = var + lin(x.var, kernel * kernel)
            if vk is not None:
                var = var + lin(x.second_moment(), vk)
                if vb is not None:
                    var = var + vb.view(bshape)
            return _Mom(mean * scale, var=var * scale * scale)
        n_out = mean[0].numel()
        if x.random:
            cov = _cov_linear(x.cov, lambda t: lin(t, kernel), x.mean.shape[1:]).contiguous()
        else:
            cov = torch.zeros((b, n_out, n_out), dtype=mean.dtype, device=mean.device)
        if vk is not None:
            if mean.dim() == 2:      # linear: independent rows → diagonal term
                term = lin(x.second_moment(), vk)
                if vb is not None:
                    term = term + vb
                torch.diagonal(cov, dim1=1, dim2=2).add_(term)
            elif isinstance(layer, nn.Conv2d):
                term = _conv_weight_noise(layer, x, vk, vb)                                   # (B, C_out, P, P)
                c_out, p = term.shape[1], term.shape[2]
                blocks = cov.view(b, c_out, p, c_out, p).diagonal(dim1=1, dim2=3)              # (B, P, P, C_out)
                blocks.add_(term.permute(0, 2, 3, 1))
            else:
                raise NotImplementedError("memse: full covariance of a linear layer on >2-D inputs is not supported")
        if scale != 1.0:
            mean, cov = mean * scale, cov.mul_(scale * scale)
        return _Mom(mean, cov=cov)


def _split(layer: NoisyMixin, t: torch.Tensor):
    """``(kernel, bias_row)`` of a programmed tensor of ``layer`` (bias row ``None`` unless deployed)."""
    if isinstance(layer, CrossbarMixin):
        return layer.split(t)
    return t, None


def _kernel_fn(layer: NoisyMixin):
    """``(x, kernel) -> f(x, kernel)`` without any bias (the layer's linear / conv operator)."""
    if isinstance(layer, nn.Conv2d):
        if isinstance(layer.padding, str):
            raise NotImplementedError("memse: string padding of a convolution is not supported")
        return lambda x, k: F.conv2d(x, k, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return lambda x, k: F.linear(x, k)


def _conv_weight_noise(layer: nn.Conv2d, x: _Mom, vk: torch.Tensor, vb: torch.Tensor | None) -> torch.Tensor:
    """Covariance added by the weight noise of an Unfold-Repeat convolution, per output channel
    ``j`` between positions ``p, q``: ``Σ_r V_jr E[x_r(p) x_r(q)] + V_bj`` (one draw for every
    patch).  Returns ``(B, C_out, P, P)``."""
    b, c_in, h, w = x.mean.shape
    kh, kw = vk.shape[-2:]
    g = layer.groups
    c_out = vk.shape[0]
    unfold = dict(kernel_size=(kh, kw), dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
    u = F.unfold(x.mean, **unfold)                                                             # (B, R, P)
    p = u.shape[-1]
    rg = (c_in // g) * kh * kw
    v2 = vk.reshape(g, c_out // g, rg)
    u = u.view(b, g, rg, p)
    term = torch.einsum("gjr,bgrp,bgrq->bgjpq", v2, u, u)
    if x.cov is not None:
        idx = torch.arange(1, c_in * h * w + 1, dtype=torch.float64, device=x.mean.device).view(1, c_in, h, w)
        idx = F.unfold(idx, **unfold)[0].round().long() - 1                                   # (R, P), -1 = padding
        valid = idx >= 0
        ic = idx.clamp_min(0)
        s = x.cov[:, ic[:, :, None], ic[:, None, :]]                                           # (B, R, P, P)
        s = s * (valid[:, :, None] & valid[:, None, :]).to(s)
        term = term + torch.einsum("gjr,bgrpq->bgjpq", v2, s.view(b, g, rg, p, p))
    term = term.reshape(b, c_out, p, p)
    if vb is not None:
        term = term + vb.view(1, c_out, 1, 1)
    return term


def _expected_power(layer: NoisyMixin, memory: MemristorMemory, wq: torch.Tensor, x: _Mom) -> float:
    """Batch sum of ``E[P]`` of eq 3.41–3.44 for this layer (independent read and input)."""
    gp, gm, _ = memory.program(wq)
    ap, am = _abs_means(memory, gp, gm)
    op = layer.crossbar_op()
    total = op(x.second_moment(), ap + am).sum() + op(x.mean, gp).sum() + op(x.mean, gm).sum()
    return float(total)


# ------------------------------------------------------------------------------------------
# public API


def _memory_map(model: nn.Module, memory_map) -> MemoryMap:
    mmap = memory_map if isinstance(memory_map, MemoryMap) else MemoryMap(memory_map)
    unknown = set(mmap.overrides) - set(noisy_layers(model))
    if unknown:
        raise KeyError(f"memory map names layers the model does not have: {sorted(unknown)}; "
                       f"layers: {list(noisy_layers(model))}")
    return mmap


def _propagate(gm, mmap, x, full, noise, dtype, chunk, relu_terms=2):
    means, variances, power, max_numel = [], [], {}, 0
    for i in range(0, len(x), chunk):
        prop = _Propagator(gm, mmap, full, noise, dtype, relu_terms)
        out = prop.run(_Mom(x[i:i + chunk].to(dtype)))
        if not isinstance(out, _Mom):
            raise NotImplementedError("memse: the model must return one tensor")
        means.append(out.mean.reshape(out.mean.shape[0], -1))
        v = out.diag()
        variances.append(torch.zeros_like(means[-1]) if v is None else v.reshape(v.shape[0], -1))
        for k, p in prop.power.items():
            power[k] = power.get(k, 0.0) + p
        max_numel = max(max_numel, prop.max_numel)
    return torch.cat(means), torch.cat(variances), power, max_numel


def _dataset(names, mean, var, clean, power) -> xr.Dataset:
    """The Dataset returned by :func:`memse` and :func:`memse_fast` (power per input sample)."""
    bias2 = (mean - clean) ** 2
    lp = np.array([power.get(k, 0.0) for k in names])
    mse_v, mse_b = float(var.mean()), float(bias2.mean())
    so = ("sample", "output")
    return xr.Dataset(
        {"mean": (so, mean.cpu().numpy(), {"long_name": "predicted output mean E[ỹ]", "units": "1"}),
         "variance": (so, var.cpu().numpy(), {"long_name": "predicted output variance", "units": "1"}),
         "clean": (so, clean.cpu().numpy(), {"long_name": "noise-free output y", "units": "1"}),
         "mse": ((), mse_v + mse_b, {"long_name": "output MSE E[(ỹ − y)²]", "units": "1"}),
         "mse_variance": ((), mse_v, {"long_name": "variance part of the output MSE", "units": "1"}),
         "mse_bias2": ((), mse_b, {"long_name": "squared-bias part of the output MSE", "units": "1"}),
         "layer_power": ("layer", lp, {"long_name": "expected crossbar power per layer (per sample)", "units": "a.u."}),
         "power": ((), float(lp.sum()), {"long_name": "expected crossbar power (per sample)", "units": "a.u."})},
        coords={"sample": ("sample", np.arange(len(mean)), {"long_name": "input sample", "units": "1"}),
                "output": ("output", np.arange(mean.shape[1]), {"long_name": "network output", "units": "1"}),
                "layer": ("layer", names, {"long_name": "layer", "units": ""})})


def memse(model: nn.Module, x: torch.Tensor, memory_map: MemoryMap | Memory, *, covariance: str = "auto",
          chunk: int = 4, dtype: torch.dtype = torch.float32, max_cov_bytes: int = 256 * 2 ** 20,
          relu_terms: int = 2) -> xr.Dataset:
    """Analytic output MSE and expected crossbar power of ``model`` on the batch ``x`` (MemSE, [159]).

    ``memory_map``: the memory of every noisy layer (memristor with ``g_u`` per network / layer /
    column, additive σ or multiplicative σ_c; ideal; noise injection).  ``covariance``:
    ``"full"`` (per-sample covariance of every activation), ``"diagonal"`` (variances only) or
    ``"auto"`` (full when one sample's largest covariance, ×4 for temporaries, fits in
    ``max_cov_bytes``).  ``relu_terms``: terms of the ReLU covariance series (module docstring).
    Samples are processed ``chunk`` at a time (fewer in full mode if ``chunk`` samples do not fit
    in ``max_cov_bytes``; 4 was fastest on a 2-core CPU) in ``dtype``: the variance formulas avoid
    differences of large second moments (``E[X²] − E[X]²``), so float32 agrees with float64 to
    ~1e-6 relative on the tests' nets and is 2–3× faster on CPU.  The model is not modified
    (batch norms use their running statistics, dropout is off).

    Returns a Dataset with ``mean``, ``variance`` and ``clean`` ``(sample, output)`` (the output
    flattened per sample), the scalar ``mse`` = ``mse_variance`` + ``mse_bias2`` (means over the
    batch and outputs), ``layer_power(layer)`` and ``power`` (expected, per input sample).
    """
    check_choice("covariance", covariance, ("auto", "full", "diagonal"))
    check_int("chunk", chunk, 1)
    check_int("relu_terms", relu_terms, 1, 12)
    mmap = _memory_map(model, memory_map)
    gm = trace(model)
    names = list(noisy_layers(model))
    with torch.no_grad():
        clean, _, _, max_numel = _propagate(gm, mmap, x, False, False, dtype, max(len(x), 1))
        per_sample = 4 * max_numel ** 2 * torch.tensor([], dtype=dtype).element_size()   # covariance + temporaries
        full = covariance == "full" or (covariance == "auto" and per_sample <= max_cov_bytes)
        if full:
            chunk = max(1, min(chunk, max_cov_bytes // per_sample))
        mean, var, power, _ = _propagate(gm, mmap, x, full, True, dtype, chunk, relu_terms)
    ds = _dataset(names, mean, var, clean, {k: p / len(x) for k, p in power.items()})
    ds.attrs.update(method="memse", covariance="full" if full else "diagonal", n_samples=len(x),
                    relu_terms=int(relu_terms),
                    approximations=f"Gaussian ReLU moments, covariance series to order {relu_terms}; Clark max pooling"
                                   + ("" if full else "; activations independent (diagonal covariance)"))
    return ds


def _sensitivity(layer: NoisyMixin, x: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Σ_w V_w (∂y_o/∂w)²`` per output and sample, ``(O, B)``, for one noisy layer given its input
    ``x`` ``(B, *in)``, the gradients ``g`` ``(O, B, *out)`` of each network output with respect
    to the layer's output, and the read variance ``v`` (weight-shaped).  The per-sample gradient of
    a kernel weight sums over the positions sharing its draw (Unfold-Repeat):
    ``∂y_o/∂w_jr = s Σ_p g_jp u_r(p)`` (``u`` the unfolded input, ``s`` the BinaryConnect scale);
    a bias row's input is 1."""
    vk, vb = _split(layer, v)
    o, b = g.shape[:2]
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        if isinstance(layer.padding, str):
            raise NotImplementedError("memse: string padding of a convolution is not supported")
        two_d = isinstance(layer, nn.Conv2d)
        x4 = x if two_d else x.unsqueeze(2)
        def k2(t):
            return pair(t) if two_d else (1, t[0])
        u = F.unfold(x4, vk.shape[-2:] if two_d else (1, vk.shape[-1]), dilation=k2(layer.dilation),
                     padding=k2(layer.padding) if two_d else (0, layer.padding[0]), stride=k2(layer.stride))
        groups = layer.groups
    else:                                       # linear on (B, ..., F): every position shares the draw
        u = x.reshape(b, -1, x.shape[-1]).transpose(1, 2)
        g = g.reshape(o, b, -1, g.shape[-1]).transpose(-1, -2)
        groups = 1
    c_out, p = vk.shape[0], u.shape[-1]
    cg = c_out // groups
    g = g.reshape(o, b, groups, cg, p)
    grad = torch.bmm(g.permute(1, 2, 0, 3, 4).reshape(b * groups, o * cg, p),
                     u.reshape(b * groups, -1, p).transpose(1, 2))                        # (B·G, O·C/G, R/G)
    grad = grad.square_().view(b, groups, o, -1)
    if groups == 1:
        out = (grad.view(b * o, -1) @ vk.reshape(-1)).view(b, o).T
    else:
        out = torch.einsum("bgoq,gq->ob", grad, vk.reshape(groups, -1))
    if vb is not None:
        gs = g.sum(-1).reshape(o, b, c_out)
        out = out + (gs * gs) @ vb
    scale = layer.out_scale if layer.binary else 1.0
    return out * scale * scale


def memse_fast(model: nn.Module, x: torch.Tensor, memory_map: MemoryMap | Memory, *, chunk: int = 64) -> xr.Dataset:
    """Fast analytic output MSE and expected crossbar power, first order in the weight noise.

    The output is linearised around the noise-free weights (delta method), ``ỹ − y ≈ Σ_w
    (∂y/∂w) δw``; the reads are unbiased and independent (eq 3.36–3.38, :func:`read_variance`), so
    per sample and output ``Var[ỹ_o] = Σ_w V_w (∂y_o/∂w)²``, with every per-sample gradient summed
    over the patches that share a convolution's draw (Unfold-Repeat).  The Jacobians come from one
    forward and one backward pass per output (batched), so the cost is that of ~O backward passes
    and does not grow with the activation size squared as :func:`memse` (full covariance) does.
    It works on any differentiable net (residual additions included).

    Neglected (all second order in the noise): the mean shift ``E[ỹ] − y`` (``mse_bias2`` is 0)
    and the variance change from ReLU kinks and max-pool winners crossing over, products of the
    noise of two layers, and, in the power, the activations' variance (``E[x∘x] ≈ x∘x`` in
    eq 3.41–3.44, the conductance part ``E|g̃|`` stays exact).  Exact for one crossbar layer or a
    linear network.  The MSE is proportional to ``σ_c²`` (``σ²`` additive) per layer, reported in
    ``layer_mse``.

    Measured (``benchmarks/bench_memse.py``; digits SmallCNN w = 0.25 and 1, WRN-10-1, deployed, 64
    inputs; ÷ a 400-draw Monte-Carlo MSE): σ_c ≤ 0.1 → 0.98–1.01 on all three (95 % intervals
    inside [0.94, 1.06]); it underestimates as the second-order terms grow: σ_c = 0.2 → 0.91–0.98,
    σ_c = 0.3 → 0.79–0.94 (worst on the WRN).  Power: −0.2 % at σ_c = 0.05, −1 % at 0.1, −4 % at
    0.2, −8 to −10 % at 0.3.  Its cost is ~O backward passes whatever σ_c, so its lead over Monte
    Carlo at a ±10 % CI depends on how many draws that CI needs: at σ_c = 0.1, 13× on SmallCNN
    w = 0.25 (77 draws), 5× on w = 1 (61 draws), 2.6× on WRN-10-1 (27 draws).

    Returns the fields of :func:`memse` (``mean`` = ``clean``) plus ``layer_mse(layer)``.
    Samples are processed ``chunk`` at a time."""
    check_int("chunk", chunk, 1)
    mmap = _memory_map(model, memory_map)
    layers = noisy_layers(model)
    names = list(layers)
    was_training = model.training
    model.eval()
    weights = {n: layer.quantized_weight().detach() for n, layer in layers.items()}
    variances = {n: read_variance(mmap[n], w) for n, w in weights.items()}
    noisy = [n for n in names if bool((variances[n] > 0).any())]
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(module, inp, out, name):
        if name in seen:
            raise NotImplementedError(f"memse: layer {name!r} is called twice in one pass (weight sharing)")
        seen[name] = (inp[0].detach(), out)
        return out.clone()                      # an in-place op after the layer must not rebind `out`
    hooks = [layers[n].register_forward_hook(lambda m, i, o, n=n: hook(m, i, o, n)) for n in names]
    cleans, var_chunks, layer_mse, power = [], [], dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    try:
        params = {f"{n}.weight": w.clone().requires_grad_(n in noisy) for n, w in weights.items()}
        for i in range(0, len(x), chunk):
            seen.clear()
            with weights_as_given(), torch.enable_grad():
                y = functional_call(model, params, (x[i:i + chunk],))
            y = y.reshape(len(y), -1)
            o, b = y.shape[1], y.shape[0]
            cleans.append(y.detach())
            total = torch.zeros((o, b), dtype=y.dtype, device=y.device)
            if noisy:
                eye = torch.eye(o, dtype=y.dtype, device=y.device)[:, None, :].expand(o, b, o)
                grads = torch.autograd.grad(y, [seen[n][1] for n in noisy], eye, is_grads_batched=True,
                                            allow_unused=True)
                for n, g in zip(noisy, grads):
                    if g is not None:
                        s = _sensitivity(layers[n], seen[n][0], g, variances[n].to(y.dtype))
                        layer_mse[n] += float(s.sum())
                        total += s
            var_chunks.append(total.T.detach())
            for n in names:
                if mmap[n].technology == "memristor":
                    power[n] += _expected_power(layers[n], mmap[n], weights[n], _Mom(seen[n][0]))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    clean, var = torch.cat(cleans), torch.cat(var_chunks)
    n_samples, n_out = clean.shape
    ds = _dataset(names, clean, var, clean, {k: p / n_samples for k, p in power.items()})
    ds["layer_mse"] = ("layer", np.array([layer_mse[k] / (n_samples * n_out) for k in names]),
                       {"long_name": "output MSE from each layer's read noise", "units": "1"})
    ds.attrs.update(method="memse-fast", covariance="linearised", n_samples=int(n_samples),
                    approximations="first order in the weight noise (delta method): no mean shift, no ReLU-kink or "
                                    "max-pool crossing, no product of two layers' noise; power with noise-free "
                                    "activations")
    return ds


def _ci(values: np.ndarray, confidence: float) -> tuple[float, float, float, float]:
    n = values.size
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)) if n > 1 else float("inf")
    return mean, std, mean - half, mean + half


def mc_output_mse(model: nn.Module, x: torch.Tensor, memory_map: MemoryMap | Memory, draws: int = 100, seed: int = 0,
                  *, confidence: float = 0.95) -> xr.Dataset:
    """Monte-Carlo counterpart of :func:`memse`: per draw (one read of every layer, shared by the
    whole batch), the output MSE ``mean((ỹ − y)²)`` over the batch and outputs, and the crossbar
    power of eq 3.39–3.44 with that draw's noisy activations (per input sample, all of ``x``).

    Returns ``mse(draw)``, ``power(draw)``, ``layer_power(draw, layer)``, the Monte-Carlo output
    mean ``output_mean(sample, output)``; attrs ``mse_mean``, ``mse_std``, ``mse_ci95_low/high``,
    ``power_mean``, ``power_std``, ``power_ci95_low/high`` (Student-t interval of the mean at
    ``confidence``).  Draws depend only on ``seed``.  The model's memories are restored after.
    """
    check_int("draws", draws, 2, 100_000)
    mmap = _memory_map(model, memory_map)
    layers = noisy_layers(model)
    previous = {name: layer.memory for name, layer in layers.items()}
    was_training = model.training
    set_memory(model.eval(), mmap)
    try:
        gen = torch.Generator(device=x.device).manual_seed(seed)
        with torch.no_grad():
            clean_params = {f"{n}.weight": layer.quantized_weight().detach() for n, layer in layers.items()}
            with weights_as_given():
                clean = functional_call(model, clean_params, (x,))
            mse, powers, total = [], [], torch.zeros_like(clean)
            has_crossbar = any(layer.memory.technology == "memristor" for layer in layers.values())
            for _ in range(draws):
                reads = read_weights(model, gen)
                y, inputs = capture_layer_inputs(model, {f"{n}.weight": w for n, (w, _) in reads.items()}, x)
                mse.append(float(((y - clean) ** 2).mean()))
                total += y
                if has_crossbar:
                    powers.append(layer_power(model, reads, inputs))
    finally:
        for name, layer in layers.items():
            layer.memory = previous[name]
        model.train(was_training)
    mse = np.array(mse)
    names = list(layers)
    lp = np.array([[p[n] for n in names] for p in powers]) if powers else np.zeros((draws, len(names)))
    ds = xr.Dataset(coords={"draw": ("draw", np.arange(draws), {"long_name": "Monte-Carlo draw", "units": "1"}),
                            "layer": ("layer", names, {"long_name": "layer", "units": ""})})
    ds["mse"] = ("draw", mse, {"long_name": "output MSE of the draw", "units": "1"})
    ds["layer_power"] = (("draw", "layer"), lp, {"long_name": "crossbar power per layer (per sample)", "units": "a.u."})
    ds["power"] = ("draw", lp.sum(1), {"long_name": "crossbar power (per sample)", "units": "a.u."})
    om = (total / draws).reshape(len(x), -1).cpu().numpy()
    ds["output_mean"] = (("sample", "output"), om, {"long_name": "Monte-Carlo output mean", "units": "1"})
    m, s, lo, hi = _ci(mse, confidence)
    pm, ps, plo, phi = _ci(lp.sum(1), confidence)
    ds.attrs.update(method="monte-carlo", draws=int(draws), seed=int(seed), confidence=float(confidence),
                    mse_mean=m, mse_std=s, mse_ci95_low=lo, mse_ci95_high=hi,
                    power_mean=pm, power_std=ps, power_ci95_low=plo, power_ci95_high=phi)
    return ds
