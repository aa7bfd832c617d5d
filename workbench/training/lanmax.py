"""LaNMax — Layerwise Noise Maximisation (thesis ch. 4, §4.3.2, Algorithm 1).

Learn one bit error rate ``p_l`` per BinaryConnect layer while training the network, trading
accuracy for memory energy.  The outer loss is (eq 4.1)

    L_O(W, p) = E[L(BSC(W, p))] + α E(p) + λ_p p,

and the surrogate actually optimised is (eq 4.5)

    L̄_O = L / L* + α √E(p~) + λ_p Σ_l p~_l,

with ``L*`` the lowest minibatch loss seen so far and ``E`` the memory energy of eq 3.30 relative
to the same network read from reliable memory (the thesis' convention, §4.4: ``E = η(0.01) = 0.36``
at a uniform ``p = 0.01``); ``energy_reference="fp16"`` divides by the 16-bit network instead, which
makes the α√E term 4× weaker (``√16``).

Every minibatch of an epoch ``k ≤ s`` draws ``ε_l ~ U{-h, 0, h}`` per layer and reads layer
``l`` through a BSC at ``p~_l = clip(p_l + ε_l, p_min, p_max)`` (eq 4.4); the network takes its
ordinary SGD step on ``L`` and the pair ``(p~, L̄_O)`` is recorded.  At the end of the epoch
the OLS slopes of the recorded surrogates on ``p~`` estimate ``∇_p L̄_O``; they are normalised
to unit norm (eq 4.6) and ``p`` takes one Nesterov-momentum step, then is clipped to
``[p_min, p_max]`` (eq 4.7).  Epochs ``k > s`` train at the fixed learned ``p`` (no ``ε``, no
update).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import param
import torch
import torch.nn as nn
import torch.nn.functional as F
import xarray as xr

from ..datasets import DataBundle
from ..hardware.base import IdealMemory, MemoryMap, plain_values, set_knobs
from ..hardware.sram import DEFAULT_A, SRAMMemory, normalised_energy
from ..knobs import KnobError
from ..nn import clip_weights_, layer_param_counts, noisy_layers, set_generator, set_memory
from .config import TrainConfig
from .trainer import Batches, Cancelled, ProgressFn, accuracy, make_optimizer, make_scheduler, setup_run

__all__ = ["LaNMaxConfig", "LaNMaxResult", "check_train_config", "ols_slopes", "surrogate_energy", "train_lanmax"]

#: stream id mixed with ``cfg.seed`` for the ε draws (independent of init, shuffling and BSC noise)
_EPS_STREAM = 0x1A4D


class LaNMaxConfig(param.Parameterized):
    """Hyper-parameters of LaNMax (Algorithm 1); defaults are the thesis' (§4.4.1)."""

    alpha = param.Number(0.01, bounds=(0.0, 10.0),
                         doc="energy weight α of the outer loss (eq 4.1) / surrogate α√E(p) (eq 4.5); "
                             "thesis grid {0.1, 0.05, 0.03, 0.02, 0.01, 0.001, 0}")
    lambda_p = param.Number(5e-4, bounds=(0.0, 1.0),
                            doc="noise decay λ_p: the regulariser λ_p Σ_l p_l of eq 4.1 / 4.5")
    h = param.Number(0.01, bounds=(0.0, 0.5), inclusive_bounds=(False, True),
                     doc="perturbation step h: ε_l ~ U{-h, 0, h} per layer and minibatch (eq 4.4)")
    p_init = param.Number(0.01, bounds=(1e-4, 0.5), doc="initial BER of every noisy layer (§4.4.1: 0.01)")
    p_min = param.Number(1e-4, bounds=(0.0, 0.5),
                         doc="lower bound of p (eq 4.7, p_min < p ≤ p_max); lower clip of eq 4.4 and of the update")
    p_max = param.Number(0.5, bounds=(0.0, 0.5), doc="upper bound of p (eq 4.3/4.7: p ≤ 1/2)")
    lr_p = param.Number(None, allow_None=True, bounds=(0.0, 10.0),
                        doc="learning rate ι_p of p (Algorithm 1 line 16); None: the network's base lr "
                            "(thesis ι_p = ι)")
    lr_p_schedule = param.Selector(default="constant", objects=["constant", "network"],
                                   doc="ι_p over epochs (Algorithm 1 line 16, p ← p − ι_p ∇_p L_O): 'constant', or "
                                       "'network': scaled by the network's lr schedule (ι(k)/ι) at the update; "
                                       "§4.3.2 says only ι_p = ι")
    energy_reference = param.Selector(default="same-network", objects=["same-network", "fp16"],
                                      doc="E in the α√E term of eq 4.5: relative to the same network read from "
                                          "reliable memory (thesis, §4.4) or to its 16-bit version (E ÷ 16)")
    beta_p = param.Number(0.2, bounds=(0.0, 1.0), inclusive_bounds=(True, False),
                          doc="Nesterov momentum β_p of the p update (§4.4.1: 0.2)")
    stop_fraction = param.Number(0.8, bounds=(0.0, 1.0),
                                 doc="s = round(stop_fraction · epochs): ε perturbations and p updates for "
                                     "epochs k ≤ s only (Algorithm 1 lines 4, 13; thesis s = 80 %)")
    a = param.Number(DEFAULT_A, bounds=(0.0, 1000.0), inclusive_bounds=(False, True),
                     doc="energy-model constant a of η(p) = -log(p)/a (eq 3.27) used in E(p) (eq 3.30)")

    def check(self) -> "LaNMaxConfig":
        """Cross-knob checks (eq 4.7): ``p_min < p_max`` and ``p_min < p_init ≤ p_max``.

        Raises :class:`KnobError` naming the offending knob.
        """
        if not self.p_min < self.p_max:
            raise KnobError(f"p_min={self.p_min} must be < p_max={self.p_max} (eq 4.7: p_min < p ≤ p_max)")
        if not self.p_init > self.p_min:
            raise KnobError(f"p_init={self.p_init} must be > p_min={self.p_min} (eq 4.7: p_min < p ≤ p_max)")
        if not self.p_init <= self.p_max:
            raise KnobError(f"p_init={self.p_init} must be ≤ p_max={self.p_max} (eq 4.7: p_min < p ≤ p_max)")
        return self

    def stop_epoch(self, epochs: int) -> int:
        """``s``: the last epoch (1-based) with ε perturbations and a p update; 0 = never.

        ``round(stop_fraction · epochs)``, halves rounded up (not Python's round-half-even).
        """
        return int(min(epochs, max(0, math.floor(self.stop_fraction * epochs + 0.5))))

    def to_dict(self) -> dict[str, Any]:
        return plain_values(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LaNMaxConfig":
        """Build a validated config (bounds per knob via ``set_knobs``, then :meth:`check`)."""
        cfg = cls()
        set_knobs(cfg, **d)
        return cfg.check()

    def replace(self, **changes: Any) -> "LaNMaxConfig":
        d = self.to_dict()
        d.update(changes)
        return type(self).from_dict(d)


# ------------------------------------------------------------------------------------------
# gradient estimate (Algorithm 1 line 14) and update (lines 15–17)
# ------------------------------------------------------------------------------------------

def ols_slopes(p_tilde: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS of ``losses`` (n,) on ``[1, p_tilde]`` (n, L): slopes (L,) and their standard errors (L,).

    The estimator ``∇OLS`` of ``∇_p L̄_O`` (Algorithm 1 line 14).  Solved on centred data with
    an SVD (minimum-norm least squares), so a rank-deficient design is handled:

    * a column that is constant (e.g. a layer whose ``p~`` was clipped to the same bound at every
      draw) has slope exactly ``0`` and standard error ``inf``;
    * more generally a slope that the data cannot identify (its layer's column is a linear
      combination of the others and the intercept) gets the minimum-norm value and stderr ``inf``;
    * an identifiable slope with no residual degree of freedom (``n ≤ rank + 1``) has stderr
      ``nan``.

    Standard errors are the classical homoscedastic ones, ``sqrt(σ² · diag((XᵀX)⁺))`` with
    ``σ² = RSS / (n − rank − 1)``.
    """
    X = np.asarray(p_tilde, dtype=float)
    y = np.asarray(losses, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"ols_slopes expects p_tilde (n, L) and losses (n,), got {X.shape} and {y.shape}")
    n, L = X.shape
    if n == 0:
        return np.zeros(L), np.full(L, np.inf)
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("ols_slopes: p_tilde and losses must be finite")
    Xc = X - X.mean(axis=0)
    Xc[:, np.ptp(X, axis=0) == 0] = 0.0      # exactly zero, not a rounding residue of the mean
    yc = y - y.mean()
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    tol = (S.max() if S.size else 0.0) * max(n, L) * np.finfo(float).eps
    keep = S > tol
    rank = int(keep.sum())
    Ur, Sr, Vr = U[:, keep], S[keep], Vt[keep].T          # Vr: (L, rank)
    slopes = Vr @ ((Ur.T @ yc) / Sr)
    identifiable = np.isclose(np.einsum("ij,ij->i", Vr, Vr), 1.0, rtol=0, atol=1e-8)
    dof = n - rank - 1
    if dof > 0:
        resid = yc - Xc @ slopes
        sigma2 = float(resid @ resid) / dof
        var = sigma2 * np.einsum("ij,j,ij->i", Vr, 1.0 / Sr**2, Vr)
        stderr = np.sqrt(np.maximum(var, 0.0))
    else:
        stderr = np.full(L, np.nan)
    stderr = np.where(identifiable, stderr, np.inf)
    slopes = np.where(np.ptp(X, axis=0) == 0, 0.0, slopes)
    return slopes, stderr


def perturb_p(p: np.ndarray, lcfg: LaNMaxConfig, rng: np.random.Generator) -> np.ndarray:
    """``p~ = clip(p + ε, p_min, p_max)`` with ``ε_l ~ U{-h, 0, h}`` i.i.d. per layer (Algorithm 1
    lines 5–6, eq 4.4)."""
    p = np.asarray(p, dtype=float)
    eps = rng.integers(-1, 2, size=p.shape) * lcfg.h
    return np.clip(p + eps, lcfg.p_min, lcfg.p_max)


def normalise_gradient(slopes: np.ndarray) -> np.ndarray:
    """``∇OLS / ‖∇OLS‖`` (eq 4.6); the zero vector when the norm is 0 (nothing to follow)."""
    slopes = np.asarray(slopes, dtype=float)
    norm = float(np.linalg.norm(slopes))
    return slopes / norm if norm > 0 and math.isfinite(norm) else np.zeros_like(slopes)


def _update_p(p: np.ndarray, v: np.ndarray, slopes: np.ndarray, lcfg: LaNMaxConfig, lr_p: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One end-of-epoch update of ``p`` (Algorithm 1 lines 15–17), returns ``(p, v, g)``.

    Nesterov momentum, the same rule as ``torch.optim.SGD(nesterov=True, dampening=0)`` with
    ``v`` starting at 0::

        g ← ∇OLS / ‖∇OLS‖                  (eq 4.6; 0 if the norm is 0)
        v ← β_p · v + g
        p ← clip(p − lr_p · (g + β_p · v), p_min, p_max)
    """
    g = normalise_gradient(slopes)
    v = lcfg.beta_p * np.asarray(v, dtype=float) + g
    p = np.clip(np.asarray(p, dtype=float) - lr_p * (g + lcfg.beta_p * v), lcfg.p_min, lcfg.p_max)
    return p, v, g


def surrogate_energy(p: np.ndarray, counts: np.ndarray, lcfg: LaNMaxConfig) -> float:
    """``E(p)`` of eq 3.30 for the 1-bit layers, relative to ``lcfg.energy_reference``: the same
    network read reliably (``Σ_l η(p_l) n_l / Σ_l n_l``) or its 16-bit version (that ÷ 16)."""
    ref_bits = 1 if lcfg.energy_reference == "same-network" else 16
    return float(normalised_energy(np.asarray(p, dtype=float), counts, bits=1, a=lcfg.a, reference_bits=ref_bits))


def surrogate_loss(loss: float, best_loss: float, p_tilde: np.ndarray, counts: np.ndarray,
                   lcfg: LaNMaxConfig) -> float:
    """``L / L* + α √E(p~) + λ_p Σ_l p~_l`` (eq 4.5); ``E`` per :func:`surrogate_energy`.

    ``L*`` is floored at 1e-12 so a zero minibatch loss cannot divide by zero.
    """
    energy = surrogate_energy(p_tilde, counts, lcfg)
    return float(loss / max(best_loss, 1e-12) + lcfg.alpha * math.sqrt(energy) + lcfg.lambda_p * float(np.sum(p_tilde)))


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------

@dataclass
class LaNMaxResult:
    """What :func:`train_lanmax` returns.

    ``test_accuracy`` is the clean accuracy (stored weights read from an ideal memory); the
    accuracy of one noisy test pass with every layer read at its learned ``p`` is
    ``trajectory.attrs["noisy_accuracy"]``.
    """

    model: nn.Module                                   # CPU, eval mode, ideal memories
    p: dict[str, float]                                # learned BER per noisy layer
    trajectory: xr.Dataset
    history: dict[str, list[float]] = field(default_factory=dict)
    test_accuracy: float = float("nan")
    train_seconds: float = 0.0
    device: str = "cpu"


def check_train_config(cfg: TrainConfig) -> None:
    """Refuse the training knobs LaNMax cannot honour (rather than train without them)."""
    recipe = "LaNMax trains the network with SGD+Nesterov on the BSC (thesis ch. 4, Algorithm 1)"
    if cfg.sam != "none":
        raise KnobError(f"sam={cfg.sam!r} is not valid for LaNMax: sam must be 'none'; {recipe} and does not take "
                        "a sharpness-aware optimizer (sam, rho)")
    if cfg.clip_std:
        raise KnobError(f"clip_std={cfg.clip_std!r} is not valid for LaNMax: clip_std must be 0 (off); {recipe} and "
                        "does not take the ±α·std(W_l) clipping of the noise-injection baseline (§5.4.1); "
                        "the latent-weight clip (clip) applies")
    if not cfg.binary:
        raise KnobError(
            "binary=False: LaNMax needs binary=True (BinaryConnect, ζ=1; the BSC of eq 3.28 acts on sign bits)"
        )
    if cfg.train_memory:
        raise KnobError("train_memory must be None for LaNMax: it sets every layer's memory itself "
                        "(SRAMMemory(p=p~_l, bits=1) per layer)")


def _set_ps(mems: dict[str, SRAMMemory], names: list[str], ps: np.ndarray) -> None:
    for name, value in zip(names, ps):
        mems[name].p = float(value)


def train_lanmax(cfg: TrainConfig, lcfg: LaNMaxConfig, data: DataBundle | None = None, *,
                 device: str | torch.device = "auto", progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None, data_root: str | None = None) -> LaNMaxResult:
    """Train ``cfg``'s BinaryConnect network with LaNMax (Algorithm 1) and return it with ``p``.

    The network recipe (optimizer, lr schedule stepped per minibatch, weight decay, latent
    clipping, seeds, minibatch order) is exactly :func:`workbench.training.train`'s.  The BSC
    noise comes from the trainer's noise generator (seed ``cfg.seed + 1``), the ε draws from a
    separate numpy generator seeded by ``cfg.seed``.  ``progress`` receives
    ``{"epoch", "epochs", "loss", "test_accuracy", "p"}`` after every epoch (``p`` a list in
    layer order, after that epoch's update; ``test_accuracy`` one noisy draw at ``p``); setting
    ``cancel`` raises :class:`Cancelled` at the next minibatch.
    """
    check_train_config(cfg)
    lcfg.check()
    dev, data, model, noise_gen = setup_run(cfg, data, device, data_root)
    eps_rng = np.random.default_rng([cfg.seed, _EPS_STREAM])

    names = list(noisy_layers(model))
    counts_map = layer_param_counts(model)
    counts = np.array([counts_map[n] for n in names], dtype=float)
    n_layers = len(names)
    mems = {n: SRAMMemory(p=lcfg.p_init, bits=1, a=lcfg.a) for n in names}
    set_memory(model, MemoryMap(IdealMemory(), mems))
    set_generator(model, noise_gen)

    batches = Batches(data.train, cfg.batch_size, True, dev, cfg.seed)
    opt = make_optimizer(cfg, model.parameters())
    sched = make_scheduler(cfg, opt, len(batches))
    epochs = cfg.epochs
    s = lcfg.stop_epoch(epochs)
    lr_p = float(cfg.lr if lcfg.lr_p is None else lcfg.lr_p)

    p = np.full(n_layers, float(lcfg.p_init))
    v = np.zeros(n_layers)
    best_loss = math.inf
    traj = {k: np.full((epochs, n_layers), np.nan) for k in ("p", "slope", "slope_stderr", "grad")}
    hist: dict[str, list[float]] = {
        "loss": [],
        "train_accuracy": [],
        "test_accuracy": [],
        "surrogate": [],
        "energy": [],
    }

    start = time.perf_counter()
    for epoch in range(epochs):
        k = epoch + 1
        perturb = k <= s
        model.train()
        tot_loss = tot_correct = seen = tot_sur = 0.0
        n_batches = 0
        rec_p: list[np.ndarray] = []
        rec_sur: list[float] = []
        if not perturb:
            _set_ps(mems, names, p)
        for x, y in batches:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"LaNMax training cancelled at epoch {k}/{epochs}")
            if perturb:   # Algorithm 1 lines 5–6 (eq 4.4)
                p_tilde = perturb_p(p, lcfg, eps_rng)
                _set_ps(mems, names, p_tilde)
            else:
                p_tilde = p
            out = model(x)
            loss = F.cross_entropy(out, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"LaNMax training diverged at epoch {k} (loss={loss.item()}); lower lr={cfg.lr}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()                      # line 11: the network is trained on L only
            opt.step()
            sched.step()
            clip_weights_(model, cfg.clip or None)
            lv = loss.item()
            best_loss = min(best_loss, lv)
            sur = surrogate_loss(lv, best_loss, p_tilde, counts, lcfg)   # line 7 (eq 4.5)
            if perturb:
                rec_p.append(p_tilde.copy())
                rec_sur.append(sur)
            tot_sur += sur
            n_batches += 1
            tot_loss += lv * y.numel()
            tot_correct += (out.argmax(1) == y).sum().item()
            seen += y.numel()
        if perturb:   # lines 13–17
            slopes, stderr = ols_slopes(np.array(rec_p), np.array(rec_sur))
            # 'network': ι_p follows ι(k)/ι, the network's scheduled lr at the end of epoch k
            scale = opt.param_groups[0]["lr"] / cfg.lr if lcfg.lr_p_schedule == "network" and cfg.lr > 0 else 1.0
            step = lr_p * scale
            p, v, g = _update_p(p, v, slopes, lcfg, step)
            traj["slope"][epoch], traj["slope_stderr"][epoch], traj["grad"][epoch] = slopes, stderr, g
        traj["p"][epoch] = p
        _set_ps(mems, names, p)
        test_acc = accuracy(model, data.test, dev)   # one noisy draw at the current p
        hist["loss"].append(tot_loss / seen)
        hist["train_accuracy"].append(tot_correct / seen)
        hist["test_accuracy"].append(test_acc)
        hist["surrogate"].append(tot_sur / max(n_batches, 1))
        hist["energy"].append(surrogate_energy(p, counts, lcfg))
        if progress is not None:
            progress({"epoch": k, "epochs": epochs, "loss": hist["loss"][-1], "test_accuracy": test_acc,
                      "p": [float(q) for q in p]})
    seconds = time.perf_counter() - start

    learned = {n: float(q) for n, q in zip(names, p)}
    # one noisy test pass with every layer read at its learned p (fresh noise per test batch);
    # the Monte-Carlo estimate with a confidence interval is the experiments layer's job
    noisy_map = MemoryMap(IdealMemory(), {n: SRAMMemory(p=q, bits=1, a=lcfg.a) for n, q in learned.items()})
    set_memory(model, noisy_map)
    set_generator(model, torch.Generator(device=dev).manual_seed(cfg.seed + 2))
    noisy_accuracy = accuracy(model, data.test, dev)
    set_memory(model, None)
    set_generator(model, None)
    # the reported accuracy is the clean one: stored weights read from an ideal memory
    test_accuracy = accuracy(model, data.test, dev)
    model = model.cpu().eval()

    trajectory = _trajectory(names, counts, traj, hist, lcfg, s, lr_p, epochs)
    trajectory.attrs.update(noisy_accuracy=noisy_accuracy, test_accuracy=test_accuracy,
                            energy=surrogate_energy(p, counts, lcfg))
    return LaNMaxResult(model, learned, trajectory, hist, test_accuracy, seconds, str(dev))


def _trajectory(names, counts, traj, hist, lcfg: LaNMaxConfig, s: int, lr_p: float, epochs: int) -> xr.Dataset:
    ds = xr.Dataset(coords={
        "epoch": ("epoch", np.arange(1, epochs + 1), {"long_name": "epoch", "units": "1"}),
        "layer": ("layer", list(names), {"long_name": "layer", "units": ""}),
    })
    ds = ds.assign_coords(weights=("layer", counts.astype(np.int64),
                                   {"long_name": "weights stored in the layer's memory", "units": "1"}))
    el = ("epoch", "layer")
    ds["p"] = (
        el,
        traj["p"],
        {"long_name": "bit error rate p after the epoch's update (Alg. 1 l. 16–17)", "units": "1"},
    )
    ds["slope"] = (el, traj["slope"], {"long_name": "OLS slope of the surrogate on p~ (∇OLS, Alg. 1 l. 14)",
                                        "units": "1"})
    ds["slope_stderr"] = (el, traj["slope_stderr"], {"long_name": "standard error of the OLS slope", "units": "1"})
    ds["grad"] = (el, traj["grad"], {"long_name": "normalised gradient ∇OLS/‖∇OLS‖ (eq 4.6)", "units": "1"})
    ds["loss"] = ("epoch", np.array(hist["loss"]), {"long_name": "mean training cross-entropy L", "units": "nat"})
    ds["surrogate"] = ("epoch", np.array(hist["surrogate"]),
                       {"long_name": "mean surrogate L/L* + α√E + λ_p Σp~ (eq 4.5)", "units": "1"})
    ds["train_accuracy"] = ("epoch", np.array(hist["train_accuracy"]),
                            {"long_name": "training accuracy (noisy forward passes)", "units": "1"})
    ds["test_accuracy"] = ("epoch", np.array(hist["test_accuracy"]),
                           {"long_name": "test accuracy, one noisy draw at p", "units": "1"})
    ds["energy"] = ("epoch", np.array(hist["energy"]),
                    {"long_name": f"memory energy at p (eq 3.30, relative to {lcfg.energy_reference} read reliably)",
                     "units": "1"})
    ds["updated"] = ("epoch", (np.arange(1, epochs + 1) <= s).astype(np.int8),
                     {"long_name": "p perturbed and updated this epoch (k ≤ s)", "units": "1"})
    ds.attrs.update(lcfg.to_dict())
    ds.attrs.update(s=int(s), lr_p_effective=float(lr_p), method="lanmax")
    return ds
