"""Robustness to out-of-distribution inputs (thesis §5.5.2, Fig 5.7, Tables B.1–B.10).

The test set is deformed by the eight affine transforms of the thesis — rotation 20°/40°, shear
28.6°/57.3° (0.5 and 1 rad), zoom 60/80/120/140 % — and a trained network is evaluated on each,
without fine-tuning.  Fig 5.7 then counts, over all scenarios, how often each training method
reaches the best mean accuracy over repetitions (:func:`win_counts`).

Conventions (:func:`transform_images`, built on ``torchvision.transforms.v2.functional.affine``,
bilinear interpolation, the image centre as the fixed point, pixels from outside the image
filled with ``fill``):

* ``rotation φ`` (degrees): the content turns counter-clockwise by φ (as ``torch.rot90`` and
  ``torchvision``'s ``rotate``; ``affine`` itself counts clockwise, so it is given ``-φ``);
* ``shear φ`` (degrees): a shear parallel to the x axis by the angle φ, ``torchvision``'s
  convention (horizontal displacement ``tan(φ)`` per row from the centre);
* ``zoom s`` (percent): the content is scaled by ``s/100`` about the image centre — zoom 60 %
  shrinks the picture to 0.6 of its size (the border is filled), zoom 140 % enlarges it 1.4×
  (the outer part is cropped); 100 % is the identity.

``fill`` is in the units of ``x`` (0 by default: for standardised inputs, the mean pixel).
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Iterable, Mapping

import numpy as np
import torch
import torch.nn as nn
import xarray as xr
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..hardware import MemoryMap
from ..knobs import KnobError, check_choice
from .montecarlo import mc_evaluate

__all__ = ["KINDS", "OOD_TRANSFORMS", "ood_accuracy", "transform_images", "win_counts"]

#: transform kinds and the unit of their amount
KINDS = {"rotation": "°", "shear": "°", "zoom": "%"}

#: smallest zoom (%): far below one pixel for any image, and above the scales whose inverse overflows
#: float32 in the sampling grid (a zoom of 1e-37 % gives NaN pixels)
ZOOM_MIN = 1e-6

#: the eight OOD scenarios of §5.5.2 / Tables B.1–B.10: name → (kind, amount)
OOD_TRANSFORMS: "OrderedDict[str, tuple[str, float]]" = OrderedDict([
    ("rotation_20", ("rotation", 20.0)),
    ("rotation_40", ("rotation", 40.0)),
    ("shear_28.6", ("shear", 28.6)),
    ("shear_57.3", ("shear", 57.3)),
    ("zoom_60", ("zoom", 60.0)),
    ("zoom_80", ("zoom", 80.0)),
    ("zoom_120", ("zoom", 120.0)),
    ("zoom_140", ("zoom", 140.0)),
])


def _check_transform(kind: str, amount: float) -> float:
    check_choice("kind", kind, KINDS)
    try:
        amount = float(amount)
    except (TypeError, ValueError):
        raise KnobError(f"amount={amount!r} is not a number") from None
    if kind == "zoom":
        if not (ZOOM_MIN <= amount < math.inf):
            raise KnobError(f"amount={amount!r} is out of range: a zoom must be in [{ZOOM_MIN:g}, inf) %")
    elif kind == "shear":
        if not (-90.0 < amount < 90.0):
            raise KnobError(f"amount={amount!r} is out of range: a shear angle must be in (-90, 90) °")
    elif not math.isfinite(amount):
        raise KnobError(f"amount={amount!r} is out of range: a rotation must be a finite angle in °")
    return amount


def transform_images(x: torch.Tensor, kind: str, amount: float, *, fill: float = 0.0) -> torch.Tensor:
    """Deform a batch of images ``x`` ``(N, C, H, W)`` (or ``(C, H, W)``) by one affine transform.

    ``kind``: ``"rotation"`` (``amount`` in degrees, counter-clockwise), ``"shear"`` (degrees, parallel
    to the x axis) or ``"zoom"`` (percent of the image size, about the centre; 60 → scale 0.6).
    Bilinear interpolation; pixels that come from outside the image get ``fill``.  See the module
    docstring for the conventions.  Returns a new tensor of the same shape and dtype.
    """
    amount = _check_transform(kind, amount)
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real) or not math.isfinite(fill):
        raise KnobError(f"fill={fill!r} is out of range: fill must be a finite number (in the units of x)")
    if x.dim() not in (3, 4):
        raise ValueError(f"x must be images (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    if amount == (100.0 if kind == "zoom" else 0.0):
        return x.clone()  # the identity, exactly (the sampling grid of affine() is off by float rounding)
    angle, scale, shear = 0.0, 1.0, [0.0, 0.0]
    if kind == "rotation":
        angle = -amount  # affine() turns clockwise
    elif kind == "shear":
        shear = [amount, 0.0]
    else:
        scale = amount / 100.0
    return TF.affine(x, angle=angle, translate=[0, 0], scale=scale, shear=shear,
                     interpolation=InterpolationMode.BILINEAR, fill=float(fill))


def _resolve(transforms: Mapping[str, tuple[str, float]] | Iterable[str] | None
             ) -> "OrderedDict[str, tuple[str, float]]":
    if transforms is None:
        return OrderedDict(OOD_TRANSFORMS)
    if isinstance(transforms, str):
        transforms = [transforms]
    if isinstance(transforms, Mapping):
        out = OrderedDict()
        for k, v in transforms.items():
            if isinstance(v, str) or not isinstance(v, (tuple, list)) or len(v) != 2:
                raise KnobError(f"transform {str(k)!r}={v!r} must be a pair (kind, amount), e.g. ('rotation', 20.0)")
            out[str(k)] = (v[0], _check_transform(v[0], v[1]))
    else:
        out = OrderedDict()
        for name in transforms:
            if name not in OOD_TRANSFORMS:
                raise KnobError(f"transform={name!r} is not valid: transform must be one of "
                                f"{', '.join(map(repr, OOD_TRANSFORMS))} (or pass a mapping name → (kind, amount))")
            out[name] = OOD_TRANSFORMS[name]
    if not out:
        raise KnobError("transforms is empty: give at least one transform")
    return out


def ood_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 transforms: Mapping[str, tuple[str, float]] | Iterable[str] | None = None, *, fill: float = 0.0,
                 device: str | torch.device = "cpu") -> xr.Dataset:
    """Accuracy of ``model`` (ideal memory) on the test set ``(x, y)`` deformed by each transform (Fig 5.7).

    ``transforms``: ``None`` (the eight of :data:`OOD_TRANSFORMS`), names from it, or a mapping
    ``name → (kind, amount)``.  Returns a Dataset with ``accuracy(transform)`` (fraction) and the
    coordinates ``kind(transform)``, ``amount(transform)``; attrs ``clean_accuracy`` (undeformed),
    ``fill`` and ``n_test``.
    """
    spec = _resolve(transforms)
    names = list(spec)

    def accuracy(xs: torch.Tensor) -> float:
        return float(mc_evaluate(model, xs, y, MemoryMap(), draws=1, device=device).accuracy.values[0])

    clean = accuracy(x)
    acc = [accuracy(transform_images(x, kind, amount, fill=fill)) for kind, amount in spec.values()]
    ds = xr.Dataset(coords={
        "transform": ("transform", names, {"long_name": "OOD transform", "units": ""}),
        "kind": ("transform", [k for k, _ in spec.values()], {"long_name": "transform kind", "units": ""}),
        "amount": ("transform", np.asarray([a for _, a in spec.values()], dtype=float),
                   {"long_name": "transform amount", "units": "° (rotation, shear) or % (zoom)"}),
    })
    ds["accuracy"] = ("transform", np.asarray(acc), {"long_name": "test accuracy (transformed inputs)", "units": "1"})
    ds.attrs.update(clean_accuracy=clean, fill=float(fill), n_test=int(len(y)))
    return ds


def win_counts(acc: xr.DataArray, *, decimals: int | None = None) -> xr.DataArray:
    """Fig 5.7: for each transform, the method(s) with the highest accuracy averaged over ``seed``.

    ``acc``: accuracies with dims ``method``, ``transform`` and optionally ``seed`` (repetitions;
    NaN cells are skipped in the mean).  Ties: every method that reaches the best mean gets a win,
    so the counts may sum to more than the number of transforms (Table B.2, zoom 60 %, bolds two
    methods).  Means are compared exactly, or after rounding to ``decimals`` (e.g. 4 for fractions
    shown as percentages with two decimals, as in the thesis' tables).  A transform whose means are
    all NaN gives no win.  Returns ``wins(method)`` (select a method with ``wins.sel({"method": name})``
    or ``wins.loc[name]``: ``sel(method=...)`` is taken by xarray as its own ``method`` argument).
    """
    for d in ("method", "transform"):
        if d not in acc.dims:
            raise ValueError(f"acc must have a {d!r} dimension, got dims {acc.dims}")
    extra = set(acc.dims) - {"method", "transform", "seed"}
    if extra:
        raise ValueError(f"acc has unexpected dims {sorted(extra)}: only method, transform and seed are allowed")
    mean = acc.mean("seed", skipna=True) if "seed" in acc.dims else acc
    if decimals is not None:
        mean = mean.round(decimals)
    mean = mean.transpose("method", "transform")
    vals = mean.values.astype(float)
    best = np.full(vals.shape[1], np.nan)
    has = ~np.all(np.isnan(vals), axis=0)
    best[has] = np.nanmax(vals[:, has], axis=0)
    winners = (vals == best[None, :]) & has[None, :]
    wins = xr.DataArray(winners.sum(axis=1).astype(int), dims=("method",), coords={"method": mean["method"].values},
                        name="wins", attrs={"long_name": "number of best mean accuracies", "units": "1"})
    wins.attrs["n_transforms"] = int(has.sum())
    return wins
