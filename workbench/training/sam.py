"""Sharpness-aware optimizers: SAM, ASAM and SAMSON (thesis §3.2.5 and ch. 5, §5.2).

All three solve ``min_W max_{‖T_w⁻¹ ε‖₂ ≤ ρ} L(W + ε)`` with the first-order worst case

    ε* = ρ · T_w² ∇L(W) / ‖T_w ∇L(W)‖₂

and then take the base optimizer's step at ``W`` with the gradient ``∇L(W + ε*)``:

* **SAM** (eq 3.22–3.23): ``T_w = 1`` → ``ε* = ρ ∇L / ‖∇L‖``.
* **ASAM** (eq 3.25–3.26): ``T_w = |W| + η`` (η = 0.01) → ``ε* = ρ T_w² ∇L / ‖T_w ∇L‖``.
* **SAMSON** (eq 5.1–5.3, Annex A): ``T_w = (|W| + η) / ‖W_l‖_p``, the magnitude of ``W``
  normalised by the ``p``-norm of its whole layer tensor (eq 5.1): ``p = 2`` → SAMSON₂,
  ``p = ∞`` → SAMSON∞ (any ``p ≥ 1`` is accepted).

Which tensors get ``T_w``: following the reference code of Annex A (and the ASAM code it is built
on) a parameter gets ``T_w`` when ``'weight' in name`` (conv/linear weights *and* batch-norm
scales), every other tensor (biases, batch-norm shifts) has ``T_w = 1``.  The norm in the
denominator is the 2-norm over *all* parameters that have a gradient (concatenated).  ASAM and
SAMSON therefore need parameter names: pass the model itself or ``model.named_parameters()``.

The optimizers wrap any ``torch.optim`` base optimizer (SGD, Adam, …) whose ``param_groups`` they
share, so learning-rate schedulers, weight decay and momentum work unchanged (weight decay is
applied by the base optimizer at the restored ``W``).  Optional aggressive clipping
``w ← clip(w, c)`` (eq 3.17–3.18, Algorithm 2) is applied after every step to the weights of the
conv/linear layers only (:func:`clipped_weights`, the rule of ``nn.clip_weights_``): batch-norm
scales are stored reliably and never clipped.

Usage (one SAM step per minibatch; batch-norm running statistics are updated by the first pass
only, i.e. exactly once per step as in plain training)::

    opt = SAMSON(model, torch.optim.SGD, rho=0.5, p=2, lr=0.1, momentum=0.9, weight_decay=5e-4)
    for x, y in batches:
        opt.zero_grad()                          # as usual: .grad still holds ∇L(W + ε*) of the last step
        loss = F.cross_entropy(model(x), y)      # pass 1 at W (updates BN running stats)
        loss.backward()

        def closure():                           # pass 2 at W + ε* (BN stats frozen by step)
            loss2 = F.cross_entropy(model(x), y)
            loss2.backward()
            return loss2

        opt.step(closure)                        # first_step, closure, second_step

or, with the explicit two calls (here the caller freezes the batch-norm statistics)::

        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.first_step(zero_grad=True)           # W ← W + ε*
        with frozen_running_stats(model):        # = disable_running_stats / enable_running_stats
            F.cross_entropy(model(x), y).backward()
        opt.second_step(zero_grad=True)          # W ← W, base step with ∇L(W + ε*), clip
"""

from __future__ import annotations

import contextlib
import inspect
import math
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn

from ..knobs import KnobError, check_choice, check_number

__all__ = ["ASAM", "NAMES", "RHO_DEFAULTS", "RHO_GRIDS", "SAM", "SAMSON", "SAMFamily", "disable_running_stats",
           "enable_running_stats", "frozen_running_stats", "is_weight_name", "make_sam_optimizer"]

#: optimizer names accepted by :func:`make_sam_optimizer`
NAMES = ("sgd", "sam", "asam", "samson2", "samsoninf")

#: ρ grids searched in the thesis (§5.3, Tables 5.6–5.9)
RHO_GRIDS: dict[str, tuple[float, ...]] = {
    "sam": (0.05, 0.1, 0.2, 0.5),
    "asam": (0.5, 1.0, 1.5, 2.0),
    "samson2": (0.1, 0.2, 0.5, 1.0),
    "samsoninf": (0.1, 0.2, 0.5, 1.0),
}

#: default ρ: the CIFAR-10 values of §5.3.1 (SAM 0.05, ASAM 0.5, SAMSON "the same ρ as ASAM";
#: also the default of Annex A)
RHO_DEFAULTS: dict[str, float] = {"sam": 0.05, "asam": 0.5, "samson2": 0.5, "samsoninf": 0.5}

#: keys this wrapper adds to every param group (a base optimizer may not use them itself)
_SAM_KEYS = ("rho", "eta", "p", "clip")
_VARIANTS = ("sam", "asam", "samson")
_TINY = 1e-12  # floor of ‖T_w ∇L‖ (a zero gradient gives ε = 0)


def clipped_weights(model: nn.Module) -> list[torch.Tensor]:
    """The tensors aggressive clipping bounds (eq 3.18): the weights of the layers held in memory —
    the model's noisy layers (:func:`workbench.nn.noisy_layers`, as ``nn.clip_weights_`` clips them),
    or every conv/linear weight of a model without any.  Biases and batch-norm parameters are
    stored reliably (§3.3.2) and left alone."""
    from ..nn import noisy_layers
    layers = list(noisy_layers(model).values()) or [
        m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    return [m.weight for m in layers]


def is_weight_name(name: str) -> bool:
    """Whether a parameter gets ``T_w``: Annex A's ``'weight' in n``."""
    return "weight" in name


# ---------------------------------------------------------------------------------------------
# hyper-parameter validation


def check_rho(rho: Any) -> float:
    """ρ, the radius of the neighbourhood (eq 3.22, 3.25, 5.2): ``0 ≤ ρ < ∞`` (0 = base optimizer)."""
    return check_number("rho", rho, 0.0, None, parse=True)


def check_eta(eta: Any) -> float:
    """η of ``T_w = |W| + η`` (ASAM, SAMSON): ``0 < η < ∞``."""
    return check_number("eta", eta, 0.0, None, inclusive=(False, False), parse=True)


def check_p(p: Any) -> float:
    """``p`` of the layer norm ``‖W_l‖_p`` of SAMSON (eq 5.1): ``1 ≤ p ≤ ∞`` ("inf" accepted)."""
    return check_number("p", p, 1.0, math.inf, parse=True)


def check_clip(clip: Any) -> float | None:
    """Aggressive clipping bound ``c`` (eq 3.17–3.18): ``None`` (off) or ``0 < c < ∞``."""
    if clip is None:
        return None
    return check_number("clip", clip, 0.0, None, inclusive=(False, False), parse=True, note="or None: off")


def _validate_group(group: dict[str, Any]) -> None:
    group["rho"] = check_rho(group["rho"])
    group["eta"] = check_eta(group["eta"])
    group["p"] = check_p(group["p"])
    group["clip"] = check_clip(group["clip"])


# ---------------------------------------------------------------------------------------------
# parameters, with or without names


def _normalize_params(params: Any) -> list[dict[str, Any]]:
    """Param groups as dicts of tensors, with ``param_names`` (torch's key) when names are given.

    Accepts a module, an iterable of tensors, of ``(name, tensor)`` pairs (``named_parameters()``)
    or of param-group dicts whose ``params`` are any of these.
    """
    if isinstance(params, torch.Tensor):
        raise TypeError("params should be an iterable of Tensors, (name, Tensor) pairs or dicts, "
                        f"or an nn.Module, but got {torch.typename(params)}")
    items = [{"params": params}] if isinstance(params, nn.Module) else list(params)
    if not items:
        raise ValueError("optimizer got an empty parameter list")
    groups = [dict(g) for g in items] if all(isinstance(g, dict) for g in items) else [{"params": items}]
    for g in groups:
        ps = g["params"]
        if isinstance(ps, nn.Module):
            ps = ps.named_parameters()
        ps = [ps] if isinstance(ps, torch.Tensor) else list(ps)
        pairs = [isinstance(q, tuple) for q in ps]
        if any(pairs):
            if not all(pairs):
                raise ValueError("all parameters should be given with names or all without")
            g["param_names"] = [str(n) for n, _ in ps]
            ps = [t for _, t in ps]
        g["params"] = ps
    if len({"param_names" in g for g in groups}) > 1:
        raise ValueError("all parameter groups should be given with names or all without")
    return groups


# ---------------------------------------------------------------------------------------------
# batch-norm running statistics

_SAVED = "_sam_saved_running_stats"
# torch's norm layers with running statistics, by public class (their bases are private)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
               nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)
INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
                  nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d)


def disable_running_stats(model: nn.Module) -> None:
    """Stop the batch/instance-norm layers of ``model`` from updating their running statistics.

    Used for the second forward pass of a SAM-family step (at ``W + ε*``), so that the running
    mean/var (and ``num_batches_tracked``) move exactly once per optimizer step, as with a plain
    optimizer.  Batch norm keeps normalising with the batch statistics in train mode: only the
    buffer update is switched off (``track_running_stats = False`` for batch norm,
    ``momentum = 0`` for instance norm).  Undo with :func:`enable_running_stats`.
    """
    for m in model.modules():
        if isinstance(m, BATCH_NORMS + INSTANCE_NORMS) and not hasattr(m, _SAVED):
            setattr(m, _SAVED, (m.track_running_stats, m.momentum))
            if isinstance(m, BATCH_NORMS):
                m.track_running_stats = False
            elif m.track_running_stats:
                m.momentum = 0.0


def enable_running_stats(model: nn.Module) -> None:
    """Restore what :func:`disable_running_stats` changed (no-op for untouched layers)."""
    for m in model.modules():
        saved = getattr(m, _SAVED, None)
        if saved is not None:
            m.track_running_stats, m.momentum = saved
            delattr(m, _SAVED)


@contextlib.contextmanager
def frozen_running_stats(model: nn.Module | None) -> Iterator[None]:
    """``with frozen_running_stats(model):`` — :func:`disable_running_stats` for the block."""
    if model is None:
        yield
        return
    disable_running_stats(model)
    try:
        yield
    finally:
        enable_running_stats(model)


# ---------------------------------------------------------------------------------------------
# the optimizers


class SAMFamily(torch.optim.Optimizer):
    """SAM / ASAM / SAMSON wrapped around a base optimizer (see the module docstring).

    ``SAMFamily(params, base_optimizer_cls, rho, variant=..., eta=0.01, p=2, clip=None,
    model=None, **base_kwargs)``:

    * ``params``: an ``nn.Module`` (its ``named_parameters()``; also used as ``model``), named
      parameters, plain parameters (SAM without clipping only) or param-group dicts; a group may
      override ``rho``, ``eta``, ``p``, ``clip`` and any base-optimizer option.
    * ``base_optimizer_cls``: e.g. ``torch.optim.SGD`` or ``torch.optim.Adam``, built on the
      same param groups with ``**base_kwargs`` (``lr``, ``momentum``, ``weight_decay``, …).
    * ``variant``: ``"sam"`` (eq 3.23), ``"asam"`` (eq 3.26) or ``"samson"`` (eq 5.3).
    * ``rho`` ≥ 0 (ρ = 0: exactly the base optimizer, at twice the cost); ``eta`` > 0;
      ``p`` ∈ [1, ∞] (SAMSON only); ``clip``: ``None`` or ``c > 0`` (eq 3.18).
    * ``model``: the network, so that :meth:`step` freezes its batch-norm running statistics
      during the second pass.

    Out-of-range values raise :class:`~workbench.hardware.KnobError` naming the knob and its range.
    """

    variant: str = "sam"

    def __init__(self, params: Any, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
                 rho: float = 0.05, *, variant: str | None = None, eta: float = 0.01, p: float | str = 2.0,
                 clip: float | None = None, model: nn.Module | None = None, **base_kwargs: Any):
        variant = self.variant if variant is None else variant
        self.variant = check_choice("variant", variant, _VARIANTS)
        if not (isinstance(base_optimizer_cls, type) and issubclass(base_optimizer_cls, torch.optim.Optimizer)):
            raise TypeError(f"base_optimizer_cls must be a torch.optim.Optimizer subclass, got {base_optimizer_cls!r}")
        if isinstance(base_optimizer_cls, type) and issubclass(base_optimizer_cls, SAMFamily):
            raise TypeError("base_optimizer_cls cannot itself be a SAM-family optimizer")
        clash = set(_SAM_KEYS) & set(inspect.signature(base_optimizer_cls).parameters)
        if clash:
            raise TypeError(f"{base_optimizer_cls.__name__} has option(s) {sorted(clash)} that clash with the "
                            "SAM-family param-group keys; it cannot be wrapped")
        if isinstance(params, nn.Module) and model is None:
            model = params
        self.model = model
        groups = _normalize_params(params)
        defaults = dict(rho=check_rho(rho), eta=check_eta(eta), p=check_p(p), clip=check_clip(clip))
        self.base_optimizer: torch.optim.Optimizer | None = None
        super().__init__(groups, defaults)
        self.base_optimizer = base_optimizer_cls(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups  # shared dicts: schedulers see one lr
        self.defaults.update(self.base_optimizer.defaults)
        self._perturbed = False

    # -- param groups ----------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (validated); after construction it is added to the base optimizer too."""
        if "param_names" not in param_group:
            (param_group,) = _normalize_params([param_group])
        if self.base_optimizer is None:
            super().add_param_group(param_group)
        else:
            for k in _SAM_KEYS:
                param_group.setdefault(k, self.defaults[k])
            _validate_group(param_group)
            self._check_names(param_group)
            self.base_optimizer.add_param_group(param_group)
            return
        _validate_group(param_group)
        self._check_names(param_group)

    def _check_names(self, group: dict[str, Any]) -> None:
        if "param_names" in group:
            return
        if self.variant != "sam":
            raise ValueError(f"{type(self).__name__} ({self.variant}) needs parameter names to choose the tensors "
                             "that get T_w (Annex A: 'weight' in name): pass the model or model.named_parameters()")
        if group["clip"] is not None and self.model is None:
            raise ValueError("clip needs the model (it bounds the conv/linear weights): pass the model or model=")

    # -- the perturbation ------------------------------------------------------------------------

    def _t_w(self, group: dict[str, Any], name: str | None, w: torch.Tensor) -> torch.Tensor | None:
        """``T_w`` of one tensor; ``None`` stands for ``T_w = 1``."""
        if self.variant == "sam" or name is None or not is_weight_name(name):
            return None
        t = w.abs().add_(group["eta"])  # ASAM: |W| + η (eq 3.26)
        if self.variant == "samson":  # SAMSON: (|W| + η) / ‖W_l‖_p (eq 5.1, 5.3)
            n = torch.linalg.vector_norm(w, ord=group["p"])
            t.div_(torch.where(n > 0, n, torch.ones_like(n)))  # an all-zero tensor falls back to ASAM's T_w
        return t

    @torch.no_grad()
    def _perturbations(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """``(key, parameter, ε*)`` for every parameter that has a gradient (eq 3.23/3.26/5.3)."""
        rows = []  # (key, w, T_w or None, T_w ∇L, rho)
        k = 0
        for group in self.param_groups:
            names = group.get("param_names")
            for i, w in enumerate(group["params"]):
                key = names[i] if names is not None else f"param{k}"
                k += 1
                if w.grad is None:
                    continue
                t = self._t_w(group, names[i] if names is not None else None, w)
                rows.append((key, w, t, w.grad if t is None else w.grad * t, group["rho"]))
        if not rows:
            return []
        dev = rows[0][1].device
        norms = [torch.linalg.vector_norm(tg) for _, _, _, tg, _ in rows]
        dtype = norms[0].dtype
        for n in norms[1:]:
            dtype = torch.promote_types(dtype, n.dtype)
        norm = torch.linalg.vector_norm(torch.stack([n.to(dev, dtype) for n in norms])).clamp_min(_TINY)
        out = []
        for key, w, t, tg, rho in rows:
            e = tg if t is None else tg * t  # T_w² ∇L
            out.append((key, w, e * (rho / norm.to(w.device)).to(e.dtype)))
        return out

    def perturbation(self) -> dict[str, torch.Tensor]:
        """ε* for the current gradients, by parameter name (``"param<k>"`` when unnamed).

        Parameters without a gradient are left out (they are not perturbed).  Nothing is modified.
        """
        return {key: e for key, _, e in self._perturbations()}

    # -- the two half-steps ----------------------------------------------------------------------

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Ascent: ``W ← W + ε*`` with ε* from the current gradients (at ``W``)."""
        if self._perturbed:
            raise RuntimeError("first_step() called twice without second_step()")
        rows = self._perturbations()
        if not rows:
            raise RuntimeError("first_step() found no gradients: run the first forward/backward pass at W first")
        for _, w, e in rows:
            self.state[w]["w"] = w.detach().clone()
            w.add_(e)
        self._perturbed = True
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Descent: restore ``W`` exactly, take the base step with the gradient at ``W + ε*``
        (now in ``.grad``), then clip the weights if ``clip`` is set (eq 3.18, Algorithm 2)."""
        if not self._perturbed:
            raise RuntimeError("second_step() called without first_step()")
        for group in self.param_groups:
            for w in group["params"]:
                saved = self.state.get(w, {}).pop("w", None)
                if saved is not None:
                    w.copy_(saved)
        self._perturbed = False
        self.base_optimizer.step()
        self._clip()
        self._opt_called = True  # an attached LR scheduler counts this as an optimizer step
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def _clip(self) -> None:
        targets = {id(w) for w in clipped_weights(self.model)} if self.model is not None else set()
        for group in self.param_groups:
            if group["clip"] is not None:
                for w in group["params"]:
                    if id(w) in targets:
                        w.clamp_(-group["clip"], group["clip"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One full SAM-family step; the gradients at ``W`` must already be in ``.grad`` (zero the
        gradients before that first backward pass, as with any optimizer: after a step ``.grad``
        holds ``∇L(W + ε*)``, the gradient the base optimizer used).

        ``closure`` (required) re-runs forward + backward; it is called once, at ``W + ε*``, with
        the running statistics of ``self.model``'s batch-norm layers frozen.  Returns its value.
        """
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure (forward + backward at W + ε*); "
                             "or call first_step() and second_step() yourself")
        self.first_step(zero_grad=True)
        with torch.enable_grad(), frozen_running_stats(self.model):
            loss = closure()
        self.second_step()
        return loss

    # -- checkpointing ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict (momentum buffers, …) whose param groups also hold
        ``rho``, ``eta``, ``p`` and ``clip``, plus the SAM variant."""
        sd = self.base_optimizer.state_dict()
        sd["sam_variant"] = self.variant
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        variant = sd.pop("sam_variant", self.variant)
        if variant != self.variant:
            raise ValueError(f"state dict is for {variant!r}, this optimizer is {self.variant!r}")
        for g in sd["param_groups"]:
            for k in _SAM_KEYS:
                if k not in g:
                    raise ValueError(f"state dict param group has no {k!r}: not a SAM-family state dict")
            _validate_group(dict(g))
        self.base_optimizer.load_state_dict(sd)
        self.param_groups = self.base_optimizer.param_groups
        for group in self.param_groups:
            _validate_group(group)
        self.state.clear()
        self._perturbed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.variant}, base={self.base_optimizer!r})"


class SAM(SAMFamily):
    """SAM (Foret et al., eq 3.22–3.23): ``ε* = ρ ∇L / ‖∇L‖₂``; thesis ρ grid {0.05, 0.1, 0.2, 0.5}."""

    variant = "sam"

    def __init__(self, params: Any, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
                 rho: float = 0.05, *, clip: float | None = None, model: nn.Module | None = None, **base_kwargs: Any):
        super().__init__(params, base_optimizer_cls, rho, clip=clip, model=model, **base_kwargs)


class ASAM(SAMFamily):
    """ASAM (Kwon et al., eq 3.25–3.26): ``ε* = ρ T_w² ∇L / ‖T_w ∇L‖₂``, ``T_w = |W| + η`` on tensors
    named ``weight``; thesis ρ grid {0.5, 1, 1.5, 2}."""

    variant = "asam"

    def __init__(self, params: Any, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
                 rho: float = 0.5, *, eta: float = 0.01, clip: float | None = None, model: nn.Module | None = None,
                 **base_kwargs: Any):
        super().__init__(params, base_optimizer_cls, rho, eta=eta, clip=clip, model=model, **base_kwargs)


class SAMSON(SAMFamily):
    """SAMSON (eq 5.1–5.3, Annex A): ASAM with ``T_w = (|W| + η) / ‖W_l‖_p``, the layer's ``p``-norm;
    ``p = 2`` → SAMSON₂, ``p = inf`` (or ``"inf"``) → SAMSON∞; thesis ρ grid {0.1, 0.2, 0.5, 1}."""

    variant = "samson"

    def __init__(self, params: Any, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
                 rho: float = 0.5, *, p: float | str = 2.0, eta: float = 0.01, clip: float | None = None,
                 model: nn.Module | None = None, **base_kwargs: Any):
        super().__init__(params, base_optimizer_cls, rho, eta=eta, p=p, clip=clip, model=model, **base_kwargs)


# ---------------------------------------------------------------------------------------------
# factory

_BASES: dict[str, type[torch.optim.Optimizer]] = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
                                                  "adamw": torch.optim.AdamW}


def make_sam_optimizer(name: str, params: Any, base: str = "sgd", *, rho: float | None = None,
                       lr: float | None = None, momentum: float = 0.9, weight_decay: float = 5e-4,
                       nesterov: bool = False, clip: float | None = None, eta: float = 0.01,
                       model: nn.Module | None = None) -> torch.optim.Optimizer:
    """Build one of the optimizers compared in ch. 5 (§5.3, Tables 5.1–5.9).

    ``name``: ``"sgd"`` (the plain base optimizer), ``"sam"``, ``"asam"``, ``"samson2"`` or
    ``"samsoninf"``.  ``base``: ``"sgd"`` (``momentum``, ``nesterov`` apply), ``"adam"`` or
    ``"adamw"`` (``momentum``/``nesterov`` unused; the thesis uses Adam for Transformers).
    Defaults are the thesis recipe: lr 0.1 (SGD; 1e-3 for Adam), momentum 0.9, weight decay 5e-4;
    ``rho=None`` takes :data:`RHO_DEFAULTS` (SAM 0.05, ASAM 0.5, SAMSON 0.5); the thesis grids
    are :data:`RHO_GRIDS` (SAM {0.05, 0.1, 0.2, 0.5}, ASAM {0.5, 1, 1.5, 2}, SAMSON
    {0.1, 0.2, 0.5, 1}).  ``clip=c`` bounds the conv/linear weights (:func:`clipped_weights`) to
    ``[-c, c]`` after every step (also for ``"sgd"``, through a step post-hook).
    """
    key = str(name).lower()
    if key not in NAMES:
        raise KnobError(f"name={name!r} is not valid: name must be one of {', '.join(map(repr, NAMES))}")
    bkey = str(base).lower()
    if bkey not in _BASES:
        raise KnobError(f"base={base!r} is not valid: base must be one of {', '.join(map(repr, _BASES))}")
    if lr is None:
        lr = 0.1 if bkey == "sgd" else 1e-3
    lr = check_number("lr", lr, 0.0, None, inclusive=(False, False), parse=True)
    # every knob is checked, also those the chosen method ignores (rho, eta for "sgd"; eta for "sam")
    if rho is not None:
        check_rho(rho)
    eta = check_eta(eta)
    # TrainConfig.momentum's range: a momentum ≥ 1 never forgets a gradient
    momentum = check_number("momentum", momentum, 0.0, 1.0, inclusive=(True, False), parse=True)
    weight_decay = check_number("weight_decay", weight_decay, 0.0, None, parse=True)
    kw: dict[str, Any] = dict(lr=lr, weight_decay=weight_decay)
    if bkey == "sgd":
        kw.update(momentum=momentum, nesterov=bool(nesterov) and momentum > 0)
    clip = check_clip(clip)
    if isinstance(params, nn.Module) and model is None:
        model = params
    if key == "sgd":
        groups = _normalize_params(params)
        opt = _BASES[bkey](groups, **kw)
        if clip is not None:
            if model is None:
                raise ValueError("clip needs the model (it bounds the conv/linear weights): pass the model or model=")
            held = {id(w) for g in opt.param_groups for w in g["params"]}
            targets = [w for w in clipped_weights(model) if id(w) in held]

            def _clip_hook(optimizer, args, kwargs):
                with torch.no_grad():
                    for w in targets:
                        w.clamp_(-clip, clip)

            opt.register_step_post_hook(_clip_hook)
        return opt
    rho = RHO_DEFAULTS[key] if rho is None else rho
    if key == "sam":
        return SAM(params, _BASES[bkey], rho, clip=clip, model=model, **kw)
    if key == "asam":
        return ASAM(params, _BASES[bkey], rho, eta=eta, clip=clip, model=model, **kw)
    return SAMSON(params, _BASES[bkey], rho, p=2.0 if key == "samson2" else math.inf, eta=eta, clip=clip,
                  model=model, **kw)
