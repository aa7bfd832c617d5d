"""The perturbation explorer of Fig 5.1: the SAM-family ascent step ε*(w) for one layer's weights.

The weights are spread uniformly over ``[-c, c]`` (the domain that aggressive clipping, eq 3.18,
leaves them in) and the loss gradient is 1 for every weight, as in the thesis figure; ε* comes
from the optimizers themselves (:meth:`workbench.training.sam.SAMFamily.perturbation`), so the
explorer shows exactly what training uses.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import xarray as xr

from ..knobs import KnobError, check_int, check_number
from ..training.sam import SAMFamily

#: method name → (variant, p of ‖W_l‖_p)
METHODS = {"sam": ("sam", 2.0), "asam": ("asam", 2.0), "samson2": ("samson", 2.0), "samsoninf": ("samson", math.inf)}


def perturbation_profile(c: float = 0.1, rho: float = 0.05, *, n: int = 201, eta: float = 0.01,
                         methods: Sequence[str] = tuple(METHODS), samson_p: float | None = None) -> xr.Dataset:
    """Fig 5.1: ``ε*(w)`` of SAM (eq 3.23), ASAM (eq 3.26) and SAMSON₂/∞ (eq 5.1–5.3) for ``n``
    weights evenly spaced in ``[-c, c]`` with ``∇L = 1``.  Dims ``(optimizer, w)``.

    ``samson_p``: also SAMSON with the layer norm ``‖W_l‖_p`` of that ``p`` (any ``p ≥ 1``),
    as optimizer ``"samson_p"``."""
    check_number("c", c, 1e-6, 10)                   # a smaller c overflows SAMSON's T_w²
    check_number("rho", rho, 0, 10)
    check_int("n", n, 2, 100_000)
    if isinstance(methods, str):
        methods = [methods]
    if not methods and samson_p is None:
        raise KnobError("methods is empty: choose at least one of " + ", ".join(METHODS))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise KnobError(f"methods {unknown} unknown; choose from {list(METHODS)}")
    if samson_p is not None:
        check_number("samson_p", samson_p, 1, math.inf)
    w = torch.linspace(-c, c, n, dtype=torch.float64)
    eps = []
    table = dict(METHODS)
    methods = list(methods)
    if samson_p is not None:
        table["samson_p"] = ("samson", float(samson_p))
        methods.append("samson_p")
    for m in methods:
        variant, p = table[m]
        weight = nn.Parameter(w.clone())
        weight.grad = torch.ones_like(weight)
        opt = SAMFamily([("weight", weight)], torch.optim.SGD, rho=rho, variant=variant, p=p, eta=eta, lr=0.1)
        eps.append(opt.perturbation()["weight"].detach().numpy())
    return xr.Dataset(
        {"epsilon": (("optimizer", "w"), np.array(eps), {"long_name": "perturbation ε*(w)", "units": "1"})},
        coords={"optimizer": ("optimizer", list(methods), {"long_name": "optimizer", "units": ""}),
                "w": ("w", w.numpy(), {"long_name": "weight w", "units": "1"})},
        attrs={"c": float(c), "rho": float(rho), "eta": float(eta), "figure": "5.1", "gradient": "dL/dw = 1",
               "samson_p": float(samson_p) if samson_p is not None else float("nan")})
