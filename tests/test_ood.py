"""Out-of-distribution test sets (Fig 5.7, Tables B.1–B.10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from workbench.analysis.ood import OOD_TRANSFORMS, ood_accuracy, transform_images, win_counts
from workbench.hardware import KnobError

pytestmark = pytest.mark.usefixtures("single_thread")


def _square(size: int = 32, side: int = 8) -> torch.Tensor:
    img = torch.zeros(1, 1, size, size)
    lo = (size - side) // 2
    img[..., lo:lo + side, lo:lo + side] = 1.0
    return img


def test_thesis_transforms():
    assert list(OOD_TRANSFORMS.values()) == [("rotation", 20.0), ("rotation", 40.0), ("shear", 28.6), ("shear", 57.3),
                                             ("zoom", 60.0), ("zoom", 80.0), ("zoom", 120.0), ("zoom", 140.0)]


@pytest.mark.parametrize("kind, amount", [("rotation", 0.0), ("zoom", 100.0), ("shear", 0.0)])
def test_identity_transforms(kind, amount):
    x = torch.randn(5, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    out = transform_images(x, kind, amount)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out, x, rtol=0, atol=1e-6)


def test_rotation_90_is_rot90_counter_clockwise():
    x = torch.randn(3, 2, 9, 9, generator=torch.Generator().manual_seed(1))
    ccw = transform_images(x, "rotation", 90.0)
    torch.testing.assert_close(ccw[..., 1:-1, 1:-1], torch.rot90(x, 1, (-2, -1))[..., 1:-1, 1:-1], rtol=0, atol=1e-5)
    cw = transform_images(x, "rotation", -90.0)
    torch.testing.assert_close(cw[..., 1:-1, 1:-1], torch.rot90(x, -1, (-2, -1))[..., 1:-1, 1:-1], rtol=0, atol=1e-5)
    # a single (C, H, W) image works too
    torch.testing.assert_close(transform_images(x[0], "rotation", 90.0), ccw[0])


def test_zoom_scales_a_centred_pattern():
    img = _square()
    for amount, side in ((200.0, 16), (50.0, 4)):
        out = transform_images(img, "zoom", amount)[0, 0] > 0.5
        rows = torch.nonzero(out.any(1)).flatten()
        cols = torch.nonzero(out.any(0)).flatten()
        assert len(rows) == side and len(cols) == side, amount
        assert float(rows.float().mean()) == pytest.approx(15.5) and float(cols.float().mean()) == pytest.approx(15.5)


def test_shear_displaces_rows_by_tan():
    """A 45° x-shear moves each row by tan(45°) = 1 pixel relative to the next."""
    out = transform_images(_square(), "shear", 45.0)[0, 0] > 0.5
    rows = [r for r in range(32) if out[r].any()]
    left = [int(torch.nonzero(out[r]).min()) for r in rows]
    assert len(rows) == 8
    assert abs(left[-1] - left[0]) == 7 and all(abs(b - a) == 1 for a, b in zip(left, left[1:]))


def test_fill_value():
    img = _square()
    out = transform_images(img, "zoom", 50.0, fill=-3.0)
    assert float(out[0, 0, 0, 0]) == -3.0   # a corner comes from outside the image
    assert float(transform_images(img, "zoom", 50.0)[0, 0, 0, 0]) == 0.0


@pytest.mark.parametrize("kind, amount, match", [("flip", 1.0, "kind"), ("zoom", 0.0, "zoom"), ("zoom", -5.0, "zoom"),
                                                 ("shear", 90.0, "shear"), ("rotation", float("nan"), "rotation")])
def test_bad_transforms(kind, amount, match):
    with pytest.raises(KnobError, match=match):
        transform_images(torch.zeros(1, 1, 4, 4), kind, amount)


def test_ood_accuracy_on_trained_net(trained):
    model, x, y = trained
    ds = ood_accuracy(model, x, y)
    assert list(ds.transform.values) == list(OOD_TRANSFORMS)
    assert list(ds.kind.values) == [k for k, _ in OOD_TRANSFORMS.values()]
    np.testing.assert_array_equal(ds.amount.values, [a for _, a in OOD_TRANSFORMS.values()])
    clean = ds.attrs["clean_accuracy"]
    assert clean > 0.95
    # 360 test digits: a drop of 0.2 is far outside the binomial spread (std ≤ 0.027)
    assert ds.accuracy.sel(transform="rotation_40").item() < clean - 0.2
    assert ds.accuracy.attrs["units"] == "1" and ds.amount.attrs["units"]
    sub = ood_accuracy(model, x, y, ["rotation_40"])
    assert sub.accuracy.item() == ds.accuracy.sel(transform="rotation_40").item()
    custom = ood_accuracy(model, x, y, {"none": ("rotation", 0.0)})
    assert custom.accuracy.item() == clean
    with pytest.raises(KnobError, match="transform"):
        ood_accuracy(model, x, y, ["rotation_45"])


def _acc(values: np.ndarray, methods=("sgd", "sam", "samson2"), transforms=("t1", "t2", "t3", "t4")) -> xr.DataArray:
    return xr.DataArray(values, dims=("method", "seed", "transform"),
                        coords={"method": list(methods), "seed": np.arange(values.shape[1]),
                                "transform": list(transforms)})


def test_win_counts_with_a_tie():
    # means over seeds: t1 → sam, t2 → samson2, t3 → sam & samson2 tie, t4 → sgd
    vals = np.array([
        [[0.1, 0.5, 0.2, 0.9], [0.3, 0.5, 0.4, 0.7]],     # sgd:     0.2, 0.5, 0.3, 0.8
        [[0.5, 0.4, 0.6, 0.1], [0.5, 0.4, 0.4, 0.1]],     # sam:     0.5, 0.4, 0.5, 0.1
        [[0.2, 0.9, 0.5, 0.2], [0.2, 0.7, 0.5, 0.2]],     # samson2: 0.2, 0.8, 0.5, 0.2
    ])
    wins = win_counts(_acc(vals))   # (select with sel({"method": ...}): sel's own ``method=`` is a keyword)
    assert wins.dims == ("method",)
    assert wins.sel({"method": "sgd"}).item() == 1
    assert wins.sel({"method": "sam"}).item() == 2
    assert wins.sel({"method": "samson2"}).item() == 2
    assert int(wins.sum()) == 5 and wins.attrs["n_transforms"] == 4
    assert wins.attrs["units"] == "1"
    # the order of the dims does not matter
    xr.testing.assert_equal(win_counts(_acc(vals).transpose("transform", "seed", "method")), wins)


def test_win_counts_rounding_nan_and_no_seed():
    vals = np.array([[[0.70001, np.nan]], [[0.70002, np.nan]]])
    acc = _acc(vals, methods=("a", "b"), transforms=("t1", "t2"))
    assert win_counts(acc).values.tolist() == [0, 1]
    assert win_counts(acc, decimals=4).values.tolist() == [1, 1]        # equal at 4 decimals: a tie
    assert win_counts(acc).attrs["n_transforms"] == 1                   # an all-NaN transform gives no win
    nested = acc.isel(seed=0, drop=True)
    assert win_counts(nested).values.tolist() == [0, 1]
    with pytest.raises(ValueError, match="method"):
        win_counts(nested.rename(method="optimizer"))
