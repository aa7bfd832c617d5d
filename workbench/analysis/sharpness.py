"""m-sharpness of a trained network and its correlation with robustness (thesis §3.2.5, §5.4.4).

The m-sharpness of Foret et al. (eq 3.24), extended in the thesis to the adaptive neighbourhoods
of ASAM and SAMSON (eq 5.5), is

    (1/n) Σ_S [ max_{‖ε T_w⁻¹‖₂ ≤ ρ} L_S(W + ε) − L_S(W) ]

over ``n`` minibatches ``S`` of size ``m``: for every minibatch the worst case within the
neighbourhood is computed *for that minibatch* (its own ε), to first order, exactly as the
SAM-family optimizers compute it (:mod:`workbench.training.sam`):

* SAM (eq 3.23, ``T_w = 1``): ``ε* = ρ ∇L_S / ‖∇L_S‖₂``;
* ASAM (eq 3.26, ``T_w = |W| + η``) and SAMSON₂/SAMSON∞ (eq 5.1–5.3, ``T_w = (|W| + η)/‖W_l‖_p``):
  ``ε* = ρ T_w² ∇L_S / ‖T_w ∇L_S‖₂``, with ``T_w`` only on tensors named ``weight``.

The thesis measures it on the training set with ``m = 128`` (CIFAR) or 400 (ImageNet) and ``ρ = 0.5``
(Fig 5.4), and correlates it across trained networks with the robustness
``acc(σ_c = 0) − acc(σ_c = 0.4)`` by Pearson's r (Table 5.10):
:func:`sharpness_robustness_correlation` and :func:`robustness_gap`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import xarray as xr
from scipy import stats

from ..device import resolve_device
from ..hardware import IdealMemory, MemoryMap
from ..hardware.memristor import MemristorMemory
from ..knobs import KnobError, check_choice, check_int, check_number
from ..nn import noisy_layers, set_memory
from ..training.sam import ASAM, SAM, SAMSON, SAMFamily, check_eta, check_p
from .montecarlo import mc_evaluate

__all__ = ["VARIANTS", "m_sharpness", "robustness_gap", "sharpness_robustness_correlation"]

#: neighbourhoods accepted by :func:`m_sharpness` (the ``T_w`` of eq 3.24 / 5.5)
VARIANTS = ("sam", "asam", "samson2", "samsoninf")


def _check_variant(variant: Any) -> str:
    return check_choice("variant", variant, VARIANTS)


def _optimizer(model: nn.Module, variant: str, rho: float, eta: float, p: float) -> SAMFamily:
    """The SAM-family optimizer whose :meth:`~SAMFamily.perturbation` is the ε* of ``variant``
    (never stepped: only its perturbation is used)."""
    params = list(model.named_parameters())
    if variant == "sam":
        return SAM(params, torch.optim.SGD, rho)
    if variant == "asam":
        return ASAM(params, torch.optim.SGD, rho, eta=eta)
    return SAMSON(params, torch.optim.SGD, rho, p=p, eta=eta)


def m_sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, variant: str = "samson2", rho: float = 0.5,
                m: int = 128, *, p: float | str | None = None, eta: float = 0.01, max_batches: int | None = None,
                seed: int = 0, device: str | torch.device = "cpu") -> xr.Dataset:
    """m-sharpness of ``model`` on ``(x, y)``: eq 3.24 (SAM) and its adaptive form eq 5.5 (ASAM, SAMSON).

    ``x``: inputs ``(N, C, H, W)``; ``y``: labels ``(N,)``.  The samples are shuffled once with
    ``seed`` and cut into ``n = ⌊N/m⌋`` minibatches ``S`` of ``m`` samples (the incomplete last one is
    dropped so that every ``S`` has size ``m``; ``max_batches`` keeps only the first ones).  For each
    ``S``: the loss ``L_S(W)`` (mean cross-entropy, in nats — the mean is eq 3.24's ``1/m`` applied to
    the summed loss), its gradient, ``ε*`` as the ``variant``'s optimizer computes it
    (:meth:`SAMFamily.perturbation`, first-order worst case of ``‖ε T_w⁻¹‖₂ ≤ ρ``), ``L_S(W + ε*)``;
    then ``W`` is restored bit for bit.

    ``variant``: ``"sam"`` (``T_w = 1``), ``"asam"`` (``|W| + η``), ``"samson2"`` / ``"samsoninf"``
    (``(|W| + η)/‖W_l‖_p`` with ``p = 2`` / ``∞``; ``p`` overrides that order, SAMSON only).
    ``rho``: radius ρ > 0 (Fig 5.4 uses 0.5).  ``eta``: η of ``T_w`` (ASAM, SAMSON).

    The model is evaluated in **eval mode**: batch norm normalises with its running statistics, so
    ``L_S`` is the loss of the deployed network, a minibatch's loss does not depend on how the
    others were cut, and no running statistic moves.  Every noisy layer reads an ideal memory
    (sharpness is a property of the stored weights).  Afterwards the model's weights, ``.grad``,
    train/eval mode and memories are as before (the model is moved to ``device``).

    Returns a Dataset: ``m_sharpness`` (the mean over batches, nats), per ``batch``: ``sharpness``,
    ``loss`` (``L_S(W)``), ``perturbed_loss`` (``L_S(W + ε*)``), ``epsilon_norm`` (``‖ε*‖₂``);
    the knobs in ``attrs``.
    """
    variant = _check_variant(variant)
    rho = check_number("rho", rho, 0.0, None, inclusive=(False, False))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    n_samples = int(x.shape[0])
    if n_samples == 0:
        raise ValueError("m_sharpness needs at least one sample")
    m = check_int("m", m, 1, n_samples)
    if max_batches is not None:
        max_batches = check_int("max_batches", max_batches, 1)
    eta = check_eta(eta)
    if p is not None and not variant.startswith("samson"):
        raise KnobError(f"p={p!r} only applies to the SAMSON variants (layer norm ‖W_l‖_p), not to {variant!r}")
    p_val = check_p(p) if p is not None else (2.0 if variant == "samson2" else math.inf)
    seed = check_int("seed", seed, 0)
    dev = resolve_device(device)

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_samples, generator=g)
    n_batches = n_samples // m
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)

    model = model.to(dev)
    was_training = model.training
    memories = {name: layer.memory for name, layer in noisy_layers(model).items()}
    params = [w for w in model.parameters()]
    saved_grads = [w.grad for w in params]
    opt = _optimizer(model, variant, rho, eta, p_val)
    loss0, loss1, enorm = [], [], []
    try:
        model.eval()
        set_memory(model, MemoryMap(IdealMemory()))
        for b in range(n_batches):
            idx = order[b * m:(b + 1) * m]
            xb, yb = x[idx].to(dev), y[idx].to(dev)
            for w in params:
                w.grad = None
            with torch.enable_grad():
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
            eps = opt.perturbation()
            named = dict(model.named_parameters())
            saved = {}
            with torch.no_grad():
                try:
                    for key, e in eps.items():
                        w = named[key]
                        saved[key] = w.detach().clone()
                        w.add_(e)
                    perturbed = F.cross_entropy(model(xb), yb)
                finally:
                    for key, w0 in saved.items():
                        named[key].copy_(w0)
            loss0.append(float(loss.detach()))
            loss1.append(float(perturbed))
            enorm.append(float(torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(e.double()) for e in eps.values()]))) if eps else 0.0)
    finally:
        for w, gr in zip(params, saved_grads):
            w.grad = gr
        for name, layer in noisy_layers(model).items():
            layer.memory = memories[name]
        model.train(was_training)

    l0, l1 = np.asarray(loss0), np.asarray(loss1)
    sharp = l1 - l0
    ds = xr.Dataset(coords={"batch": ("batch", np.arange(n_batches), {"long_name": "minibatch S", "units": "1"})})
    ds["m_sharpness"] = ((), float(sharp.mean()) if n_batches else float("nan"),
                         {"long_name": f"m-sharpness ({variant}, ρ = {rho:g}, m = {m})", "units": "nats"})
    ds["sharpness"] = ("batch", sharp, {"long_name": "L_S(W + ε*) − L_S(W)", "units": "nats"})
    ds["loss"] = ("batch", l0, {"long_name": "loss L_S(W)", "units": "nats"})
    ds["perturbed_loss"] = ("batch", l1, {"long_name": "loss L_S(W + ε*)", "units": "nats"})
    ds["epsilon_norm"] = ("batch", np.asarray(enorm), {"long_name": "‖ε*‖₂", "units": "weight units"})
    ds.attrs.update(variant=variant, rho=rho, m=m, eta=eta, p=p_val if variant.startswith("samson") else float("nan"),
                    seed=seed, n_batches=n_batches, n_samples=n_samples, equation="3.24" if variant == "sam" else "5.5")
    return ds


def sharpness_robustness_correlation(sharpness: Sequence[float] | np.ndarray | xr.DataArray,
                                     robustness: Sequence[float] | np.ndarray | xr.DataArray) -> dict[str, float]:
    """Pearson correlation between the m-sharpness and the robustness of ``n`` networks (Table 5.10).

    ``sharpness[i]`` and ``robustness[i]`` belong to network ``i`` (e.g. its :func:`m_sharpness` and
    its :func:`robustness_gap`).  Returns ``{"r": r, "p_value": two-sided p, "n": n}`` from
    :func:`scipy.stats.pearsonr`.  Refuses (ValueError) fewer than 3 pairs, non-finite values,
    different lengths and constant inputs (r undefined).
    """
    a = np.asarray(sharpness, dtype=float).ravel()
    b = np.asarray(robustness, dtype=float).ravel()
    if a.size != b.size:
        raise ValueError(f"sharpness has {a.size} values but robustness has {b.size}: one pair per network is needed")
    if a.size < 3:
        raise ValueError(f"a Pearson correlation needs at least 3 networks, got n={a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("sharpness and robustness must be finite (no NaN or inf)")
    for name, v in (("sharpness", a), ("robustness", b)):
        if np.ptp(v) == 0:
            raise ValueError(f"{name} is constant ({v[0]!r} for all {v.size} networks): the correlation is undefined")
    res = stats.pearsonr(a, b)
    return {"r": float(res.statistic), "p_value": float(res.pvalue), "n": int(a.size)}


def robustness_gap(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma_c: float = 0.4, draws: int = 10, *,
                   seed: int = 0, device: str | torch.device = "cpu") -> dict[str, float]:
    """Robustness of §5.4.4: ``acc(σ_c = 0) − acc(σ_c)`` (default σ_c = 0.4) of a crossbar memory with
    multiplicative conductance noise (eq 3.37), on every noisy layer, over ``draws`` Monte-Carlo
    draws (10 in the thesis for CIFAR).  Returns ``{"gap": mean drop, "gap_std": std of the drop
    over draws, "clean_accuracy", "noisy_accuracy", "draws"}``; accuracies are fractions."""
    sigma_c = check_number("sigma_c", sigma_c, 0.0, 1.0, inclusive=(False, True))
    clean = float(mc_evaluate(model, x, y, MemoryMap(), draws=1, device=device).accuracy.values[0])
    noisy = mc_evaluate(model, x, y, MemristorMemory(noise="multiplicative", sigma_c=float(sigma_c)), draws=draws,
                        seed=seed, device=device).accuracy.values
    return {"gap": clean - float(noisy.mean()), "gap_std": float(noisy.std(ddof=1)) if noisy.size > 1 else 0.0,
            "clean_accuracy": clean, "noisy_accuracy": float(noisy.mean()), "draws": int(noisy.size)}
