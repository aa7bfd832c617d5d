"""Property-based tests (hypothesis): bad input everywhere is answered with a clear error.

Out-of-range, NaN/±inf, empty, mismatched and wrongly typed inputs to the public functions and to
the CLI must raise :class:`~workbench.hardware.KnobError` (a ``ValueError``) — or a plain
``ValueError`` for data that do not fit together — whose message names the knob and, for a number,
the offending value or the allowed range; never a ``RuntimeError``/``IndexError``/``TypeError``
from deep inside torch or numpy, never an infinite loop, never a silently wrong number.  Values
drawn from inside the ranges must not raise.  The CLI answers with exit status 2 and
``workbench: error: ...`` before any training or evaluation starts, and leaves its store clean.
A result file corrupted on disk is detected, recomputed and verifies again.

Tensors are tiny; networks come from the session fixture ``trained`` (never modified).  Hypothesis
keeps no example database and writes its files to a temporary directory, not to the repository.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import workbench.experiments as experiments
import workbench.experiments.core as core
from workbench.analysis import mc_evaluate, summarize
from workbench.analysis.adabs import adabs
from workbench.analysis.drift import pcm_drift
from workbench.analysis.ood import KINDS, ZOOM_MIN, ood_accuracy, transform_images
from workbench.analysis.perturbation import METHODS as PERTURBATION_METHODS
from workbench.analysis.perturbation import perturbation_profile
from workbench.analysis.quantization import quantization_sweep
from workbench.analysis.sharpness import VARIANTS, m_sharpness
from workbench.cli import main
from workbench.experiments.store import Store
from workbench.hardware import (
    TECHNOLOGIES,
    InjectionMemory,
    KnobError,
    MemristorMemory,
    QuantizedMemory,
    SRAMMemory,
    crossbar_power,
    eta,
    memory_energy,
    memory_from_dict,
    normalised_energy,
    quantize_linear,
    sample_flip_positions,
    to_conductances,
)
from workbench.hardware.memristor import G_U_MIN, linear_op
from workbench.nn import noisy_layers
from workbench.training.config import TrainConfig
from workbench.training.sam import NAMES as SAM_NAMES
from workbench.training.sam import SAMSON, make_sam_optimizer

pytestmark = pytest.mark.usefixtures("single_thread")
# hypothesis' own files (example database, cached constants) go to a throw-away directory, not the repository
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="workbench-hypothesis-"))

NAN, INF = float("nan"), float("inf")
#: few examples each: the whole file runs in well under a minute on one core
FEW = settings(max_examples=25, deadline=None, database=None, phases=[p for p in Phase if p is not Phase.explain],
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SOME = settings(FEW, max_examples=40)
#: an interval in a message: "[0, 0.5]", "(0.0, 25.0]", "[1, inf)"
RANGE = re.compile(r"[\[(][^\[\]()]*,[^\[\]()]*[\])]")
#: what the CLI must never print
TRACEBACK = "Traceback (most recent call last)"


# --------------------------------------------------------------------------------------------
# strategies and checks
# --------------------------------------------------------------------------------------------

def _outside(v: float, lo, hi, lo_open: bool, hi_open: bool) -> bool:
    if math.isnan(v):
        return True
    if lo is not None and (v < lo or (lo_open and v == lo)):
        return True
    return hi is not None and (v > hi or (hi_open and v == hi))


def bad_floats(lo=None, hi=None, *, lo_open=False, hi_open=False, finite=True):
    """Floats outside ``lo..hi`` (``None``: unbounded; ``finite``: ±inf are bad too), NaN always;
    the nearest bad neighbours of each bound are drawn often."""
    edges = [NAN]
    if lo is not None:
        edges.append(lo if lo_open else math.nextafter(lo, -INF))
        edges.append(-INF)
    if hi is not None:
        edges.append(hi if hi_open else math.nextafter(hi, INF))
        edges.append(INF)
    if finite:
        edges += [INF, -INF]

    def bad(v):
        return _outside(v, lo, hi, lo_open, hi_open) or (finite and math.isinf(v))
    return st.one_of(st.sampled_from(sorted(set(edges), key=repr)), st.floats().filter(bad))


def good_floats(lo, hi, *, lo_open=False, hi_open=False):
    return st.floats(min_value=lo, max_value=hi, exclude_min=lo_open, exclude_max=hi_open, allow_nan=False)


def bad_ints(lo=None, hi=None):
    """Integers outside ``[lo, hi]``, floats (an integer knob takes no float, not even 3.0) and booleans."""
    outside = st.integers().filter(lambda v: (lo is not None and v < lo) or (hi is not None and v > hi))
    near = [v for v in ((lo - 1) if lo is not None else None, (hi + 1) if hi is not None else None) if v is not None]
    return st.one_of(st.sampled_from(near) if near else st.nothing(), outside, st.floats(), st.booleans())


#: things a user could plausibly pass where a number is expected
WRONG_TYPES = st.sampled_from(["0.1", "abc", None, [0.1], (), {}, True, False])


def mentions(msg: str, value) -> bool:
    """Whether ``msg`` shows ``value`` (as repr, str or %g) or an interval (the allowed range)."""
    texts = {repr(value), str(value)}
    if isinstance(value, float):
        texts.add(f"{value:g}")
    return any(t in msg for t in texts) or bool(RANGE.search(msg))


def refused(fn, knob: str, value=None, *, exc=KnobError) -> str:
    """``fn()`` raises ``exc`` (KnobError, or ValueError for mismatched data) naming ``knob`` and,
    for a number, ``value`` or the range; anything else (RuntimeError, IndexError, ...) escapes
    and fails the test with its own traceback."""
    with pytest.raises(ValueError) as info:
        fn()
    assert isinstance(info.value, exc), f"{type(info.value).__name__} instead of {exc.__name__}: {info.value}"
    msg = str(info.value)
    assert knob in msg, f"{knob!r} not named in {msg!r}"
    if re.fullmatch(r"[a-z]", knob):          # "p", "a", "m", ...: named as a knob, not as a letter of some word
        assert re.search(rf"\b{re.escape(knob)}(=| must)", msg), f"{knob!r} not named in {msg!r}"
    if value is not None and not isinstance(value, (str, list, tuple, dict)):
        assert mentions(msg, value), f"neither {value!r} nor a range in {msg!r}"
    return msg


def tiny_weight(shape=(3, 4), seed=0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# memories and their knobs
# --------------------------------------------------------------------------------------------

#: technology, knob, lo, hi, lo_open, hi_open, integer (ranges of the knob's own bounds and of the
#: cross-check g_min < g_u ≤ g_max with the other knobs at their defaults)
MEMORY_KNOBS = [
    ("sram", "p", 0.0, 0.5, False, False, False),
    ("sram", "bits", 1, 32, False, False, True),
    ("memristor", "sigma_c", 0.0, 1.0, False, False, False),
    ("memristor", "sigma", 0.0, 100.0, False, False, False),
    ("memristor", "g_u", G_U_MIN, 25.0, False, False, False),
    ("memristor", "g_min", 0.0, 25.0, False, True, False),
    ("memristor", "g_max", 25.0, 1000.0, False, False, False),
    ("injection", "sigma_g", 0.0, 100.0, False, False, False),
    ("injection", "g_u", G_U_MIN, 1000.0, False, False, False),
    ("quantized", "bits", 2, 16, False, False, True),
]
MEMORY_CLASSES = {"sram": SRAMMemory, "memristor": MemristorMemory, "injection": InjectionMemory,
                  "quantized": QuantizedMemory}


@SOME
@given(data=st.data())
def test_memory_knob_out_of_range_is_refused_by_name(data):
    tech, knob, lo, hi, lo_open, hi_open, integer = data.draw(st.sampled_from(MEMORY_KNOBS), label="knob")
    value = data.draw(st.one_of(bad_ints(lo, hi) if integer else bad_floats(lo, hi, lo_open=lo_open, hi_open=hi_open),
                                WRONG_TYPES), label="value")
    refused(lambda: memory_from_dict({"technology": tech, knob: value}), knob, value)


@SOME
@given(data=st.data())
def test_memory_knob_in_range_is_accepted_and_reads(data):
    tech, knob, lo, hi, lo_open, hi_open, integer = data.draw(st.sampled_from(MEMORY_KNOBS), label="knob")
    value = data.draw(st.integers(lo, hi) if integer else good_floats(lo, hi, lo_open=lo_open, hi_open=hi_open),
                      label="value")
    mem = memory_from_dict({"technology": tech, knob: value})
    assert isinstance(mem, MEMORY_CLASSES[tech]) and getattr(mem, knob) == value
    w = tiny_weight()
    if tech == "sram" and mem.bits == 1:
        w = torch.where(w >= 0, 1.0, -1.0)          # bits=1 stores sign bits: BinaryConnect weights (eq 3.28)
    out = mem.read(w, torch.Generator().manual_seed(1)).weight
    assert out.shape == w.shape and bool(torch.isfinite(out).all())


@FEW
@given(g_u=good_floats(G_U_MIN, 1000.0), g_min=good_floats(0.0, 1000.0), g_max=good_floats(0.0, 1000.0, lo_open=True))
def test_memristor_conductance_range_is_checked_together(g_u, g_min, g_max):
    knobs = {"technology": "memristor", "g_u": g_u, "g_min": g_min, "g_max": g_max}
    if g_min < g_u <= g_max:
        mem = memory_from_dict(knobs)
        gp, gm, k = mem.program(tiny_weight())
        tol = 1e-6 * g_u                                  # float32 conductances
        assert float(gp.min()) >= g_min - tol and float(gp.max()) <= g_u + tol
    else:
        msg = refused(lambda: memory_from_dict(knobs), "g_u", g_u)
        assert "g_min" in msg and "g_max" in msg


@FEW
@given(col=st.one_of(st.lists(bad_floats(G_U_MIN, 25.0), min_size=1, max_size=4),
                     st.just([]), st.just("abc"), st.just([[1.0, "x"]])),
       good=st.lists(good_floats(G_U_MIN, 25.0), max_size=3))
def test_column_g_u_out_of_range_or_empty_is_refused(col, good):
    value = (good + col) if isinstance(col, list) and col and not isinstance(col[0], list) else col
    refused(lambda: memory_from_dict({"technology": "memristor", "column_g_u": value}), "column_g_u")


@FEW
@given(n_cols=st.integers(1, 6), n_g=st.integers(1, 6))
def test_column_g_u_must_match_the_weight_columns(n_cols, n_g):
    mem = memory_from_dict({"technology": "memristor", "column_g_u": [10.0] * n_g})
    w = tiny_weight((n_cols, 3))
    if n_g == n_cols:
        assert mem.read(w).weight.shape == w.shape
    else:
        refused(lambda: mem.read(w), "column_g_u", n_g)


def test_memory_from_dict_rejects_unknown_technology_and_knobs():
    for tech in ("bogus", None, 3, ["sram"]):
        refused(lambda tech=tech: memory_from_dict({"technology": tech}), "technology")
    refused(lambda: memory_from_dict({"technology": "sram", "volts": 0.4}), "volts")
    refused(lambda: memory_from_dict(["sram"]), "technology")
    # direct construction reports through param's own ValueError, naming the knob
    with pytest.raises(ValueError, match=r"\bp\b"):
        SRAMMemory(p=2.0)


@SOME
@given(p=st.one_of(bad_floats(0.0, 0.5), WRONG_TYPES.filter(lambda v: v != "0.1")))
def test_sample_flip_positions_refuses_bad_p(p):
    refused(lambda: sample_flip_positions(100, p, torch.Generator().manual_seed(0)), "p", p)


@FEW
@given(n=st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63), st.floats(), st.booleans(), st.just("10")))
def test_sample_flip_positions_refuses_bad_n_bits(n):
    refused(lambda: sample_flip_positions(n, 0.01, torch.Generator().manual_seed(0)), "n_bits", n)


@FEW
@given(n=st.integers(0, 5000), p=good_floats(0.0, 0.5), seed=st.integers(0, 2**31))
def test_sample_flip_positions_valid(n, p, seed):
    pos = sample_flip_positions(n, p, torch.Generator().manual_seed(seed))
    assert pos.dtype == torch.long and pos.numel() <= n
    if pos.numel():
        assert bool((pos[1:] > pos[:-1]).all()) and int(pos[0]) >= 0 and int(pos[-1]) < n


@SOME
@given(p=bad_floats(0.0, 1.0), container=st.sampled_from(["float", "list", "array", "tensor"]),
       good=st.lists(good_floats(0.0, 1.0), max_size=3))
def test_eta_refuses_bad_ber_in_every_container(p, container, good):
    vals = good + [p]
    arg = {"float": p, "list": vals, "array": np.array(vals), "tensor": torch.tensor(vals, dtype=torch.float64)}[
        container
    ]
    refused(lambda: eta(arg), "p")


@FEW
@given(a=st.one_of(bad_floats(0.0, None, lo_open=True), WRONG_TYPES))
def test_eta_refuses_bad_energy_constant(a):
    refused(lambda: eta(0.01, a), "a", a)


@FEW
@given(p=st.lists(good_floats(0.0, 0.5), min_size=1, max_size=6), a=good_floats(0.1, 100.0))
def test_eta_valid_is_finite_and_non_negative(p, a):
    out = eta(np.array(p), a)
    assert np.all(np.isfinite(out)) and np.all(out >= 0)
    t = eta(torch.tensor(p, dtype=torch.float64), a)
    np.testing.assert_allclose(t.numpy(), out, rtol=1e-12)


@FEW
@given(n_p=st.integers(2, 5), n_c=st.integers(0, 5), tensor=st.booleans())
def test_memory_energy_refuses_mismatched_lengths(n_p, n_c, tensor):
    assume(n_p != n_c)
    p = [0.01] * n_p
    refused(lambda: memory_energy(torch.tensor(p) if tensor else p, [10] * n_c), "counts", n_c)


@FEW
@given(bad=st.one_of(bad_floats(0.0, None), st.sampled_from(["abc", None, {}, [0.1], ()])))
def test_memory_energy_refuses_bad_counts(bad):
    refused(lambda: memory_energy([0.01, 0.02], [10, bad]), "counts")


@FEW
@given(bits=bad_ints(1, None))
def test_memory_energy_refuses_bad_bits(bits):
    refused(lambda: memory_energy([0.01], [10], bits=bits), "bits", bits)


@FEW
@given(ref=st.sampled_from([[], [0], [0, 0], [0.0, -0.0]]), ref_bits=bad_ints(1, None))
def test_normalised_energy_refuses_an_empty_reference(ref, ref_bits):
    refused(lambda: normalised_energy([0.01], [10], reference_counts=ref), "reference_counts")
    refused(lambda: normalised_energy([], []), "reference_counts")
    refused(lambda: normalised_energy([0.01], [10], reference_bits=ref_bits), "reference_bits", ref_bits)


@FEW
@given(p=st.lists(good_floats(0.0, 0.5), min_size=1, max_size=5), data=st.data(), bits=st.integers(1, 32))
def test_memory_energy_valid_matches_eq_3_30(p, data, bits):
    counts = data.draw(st.lists(st.integers(0, 10**6), min_size=len(p), max_size=len(p)), label="counts")
    e = memory_energy(p, counts, bits)
    assert math.isclose(e, bits * sum(eta(pi) * c for pi, c in zip(p, counts)), rel_tol=1e-9, abs_tol=1e-9)
    if sum(counts):      # η(p) > 1 below p = e^-a: no upper bound
        assert 0 <= normalised_energy(p, counts, bits) < math.inf


@FEW
@given(g_min=good_floats(0.0, 50.0), g_u=st.one_of(bad_floats(None, None), good_floats(-10.0, 60.0)))
def test_to_conductances_refuses_g_u_not_above_g_min(g_min, g_u):
    w = tiny_weight()
    if math.isfinite(g_u) and g_u > g_min and g_u >= G_U_MIN:
        gp, gm, k = to_conductances(w, g_u, g_min)
        assert gp.shape == gm.shape == w.shape and float(k) > 0
        assert bool(torch.isfinite(gp).all() and torch.isfinite(gm).all())
    else:
        refused(lambda: to_conductances(w, g_u, g_min), "g_u", g_u)


@FEW
@given(g_min=st.one_of(bad_floats(0.0, None), WRONG_TYPES))
def test_to_conductances_refuses_bad_g_min(g_min):
    refused(lambda: to_conductances(tiny_weight(), 25.0, g_min), "g_min", g_min)


@FEW
@given(n_out=st.integers(1, 5), n_g=st.integers(1, 5))
def test_to_conductances_per_column_length_must_match(n_out, n_g):
    w = tiny_weight((n_out, 3))
    g = torch.full((n_g,), 10.0)
    if n_g == n_out:
        gp, gm, k = to_conductances(w, g, 0.0, per_column=True)
        assert gp.shape == w.shape
    else:
        refused(lambda: to_conductances(w, g, 0.0, per_column=True), "g_u", n_g)


def test_to_conductances_and_quantize_refuse_empty_weights():
    for shape in [(0,), (0, 3), (3, 0)]:
        refused(lambda shape=shape: to_conductances(torch.ones(shape), 25.0), "weight", exc=ValueError)
        refused(lambda shape=shape: quantize_linear(torch.ones(shape), 4), "weight", exc=ValueError)
    refused(lambda: to_conductances(torch.tensor(1.0), 25.0, per_column=True), "per_column", exc=ValueError)


@SOME
@given(bits=st.one_of(bad_ints(2, 32), st.sampled_from(["4", None])))
def test_quantize_linear_refuses_bad_bits(bits):
    refused(lambda: quantize_linear(tiny_weight(), bits), "bits", bits)


@FEW
@given(bits=st.integers(2, 16), seed=st.integers(0, 1000))
def test_quantize_linear_valid_levels(bits, seed):
    w = tiny_weight((6, 5), seed)
    q = quantize_linear(w, bits)
    assert q.shape == w.shape and len(torch.unique(q)) <= 2**bits - 1
    step = float(w.abs().max()) / (2 ** (bits - 1) - 1)
    assert float((q - w).abs().max()) <= step / 2 * (1 + 1e-5) + 1e-6 * float(w.abs().max())


shapes = st.tuples(st.integers(1, 4), st.integers(1, 4))


@SOME
@given(batch=st.integers(1, 3), x_in=st.integers(1, 4), gp_shape=shapes, gm_shape=shapes,
       bias=st.sampled_from(["none", "both", "plus_only", "wrong_len"]))
def test_crossbar_power_refuses_mismatched_shapes(batch, x_in, gp_shape, gm_shape, bias):
    x = torch.rand(batch, x_in)
    gp, gm = torch.rand(gp_shape), torch.rand(gm_shape)
    bp = bm = None
    if bias == "both":
        bp, bm = torch.rand(gp_shape[0]), torch.rand(gp_shape[0])
    elif bias == "plus_only":
        bp = torch.rand(gp_shape[0])
    elif bias == "wrong_len":
        bp, bm = torch.rand(gp_shape[0] + 1), torch.rand(gp_shape[0] + 1)
    fits = gp_shape == gm_shape and gp_shape[1] == x_in and bias in ("none", "both")
    if fits:
        assert math.isfinite(float(crossbar_power(linear_op, x, gp, gm, bp, bm)))
    else:
        refused(lambda: crossbar_power(linear_op, x, gp, gm, bp, bm), "g_", exc=ValueError)


# --------------------------------------------------------------------------------------------
# training recipe and optimizers
# --------------------------------------------------------------------------------------------

#: numeric TrainConfig knobs: name, lo, hi, lo_open, hi_open, integer
TRAIN_KNOBS = [
    ("width", 0.0625, 16.0, False, False, False), ("depth", 10, 100, False, False, True),
    ("k", 1.0, 20.0, False, False, False), ("epochs", 1, 1000, False, False, True),
    ("batch_size", 1, 65536, False, False, True), ("lr", 0.0, 10.0, True, False, False),
    ("momentum", 0.0, 1.0, False, True, False), ("weight_decay", 0.0, 1.0, False, False, False),
    ("step_every", 1, 10000, False, False, True), ("gamma", 0.0, 1.0, True, False, False),
    ("clip", 0.0, 10.0, False, False, False), ("clip_std", 0.0, 10.0, False, False, False),
    ("seed", 0, 2**31 - 1, False, False, True), ("rho", 0.0, 10.0, True, False, False),
]


@SOME
@given(data=st.data())
def test_train_config_refuses_every_out_of_range_knob(data):
    knob, lo, hi, lo_open, hi_open, integer = data.draw(st.sampled_from(TRAIN_KNOBS), label="knob")
    bad = bad_ints(lo, hi) if integer else bad_floats(lo, hi, lo_open=lo_open, hi_open=hi_open)
    value = data.draw(st.one_of(bad, WRONG_TYPES.filter(lambda v: not (knob == "rho" and v is None))), label="value")
    extra = {"sam": "sam"} if knob == "rho" else {}
    refused(lambda: TrainConfig.from_dict({**extra, knob: value}), knob, value)


@SOME
@given(data=st.data())
def test_train_config_accepts_in_range_knobs_and_round_trips(data):
    knob, lo, hi, lo_open, hi_open, integer = data.draw(st.sampled_from(TRAIN_KNOBS), label="knob")
    value = data.draw(st.integers(lo, hi) if integer else good_floats(lo, hi, lo_open=lo_open, hi_open=hi_open),
                      label="value")
    extra = {"sam": "sam"} if knob == "rho" else {}
    cfg = TrainConfig.from_dict({**extra, knob: value})
    assert getattr(cfg, knob) == value
    assert TrainConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


@FEW
@given(name=st.text(min_size=1, max_size=12).filter(lambda s: s not in TrainConfig.param), value=st.integers())
def test_train_config_refuses_unknown_knobs(name, value):
    refused(lambda: TrainConfig.from_dict({name: value}), repr(name))


@FEW
@given(rho=good_floats(0.0, 10.0, lo_open=True), sam=st.sampled_from(["none", "sam", "asam", "samson2", "samsoninf"]))
def test_rho_needs_a_sharpness_aware_optimizer(rho, sam):
    if sam == "none":
        msg = refused(lambda: TrainConfig.from_dict({"sam": sam, "rho": rho}), "rho", rho)
        assert "sam" in msg
    else:
        assert TrainConfig.from_dict({"sam": sam, "rho": rho}).rho == rho


@FEW
@given(depth=st.integers(10, 100))
def test_wide_resnet_depth_must_be_6n_plus_4(depth):
    if (depth - 4) % 6 == 0:
        assert TrainConfig.from_dict({"model": "wrn", "depth": depth}).depth == depth
    else:
        refused(lambda: TrainConfig.from_dict({"model": "wrn", "depth": depth}), "depth", depth)
    assert TrainConfig.from_dict({"model": "small_cnn", "depth": depth}).depth == depth   # unused there


@FEW
@given(mem=st.one_of(
    st.builds(lambda p: {"default": {"technology": "sram", "p": p}}, bad_floats(0.0, 0.5)),
    st.builds(lambda t: {"default": {"technology": t}}, st.text(max_size=5).filter(lambda t: t not in TECHNOLOGIES)),
    st.builds(lambda t: {"overrides": {"features.0": {"technology": t}}},
              st.text(max_size=5).filter(lambda t: t not in TECHNOLOGIES)),
    st.sampled_from([{"default": "sram"}, {"default": {"technology": "memristor", "g_u": 99.0}},
                     {"default": {"technology": "sram", "volts": 0.4}}])))
def test_train_memory_is_validated_with_the_config(mem):
    refused(lambda: TrainConfig.from_dict({"train_memory": mem}), "train_memory")


def test_train_config_refuses_non_mappings_and_booleans():
    for d in (None, [("epochs", 1)], "epochs=1"):
        refused(lambda d=d: TrainConfig.from_dict(d), "mapping")
    for knob in ("epochs", "lr", "width", "seed"):
        refused(lambda knob=knob: TrainConfig.from_dict({knob: True}), knob)
    cfg = TrainConfig.from_dict({"train_memory": {"default": {"technology": "sram", "p": 0.01}}})
    assert cfg.train_memory["default"]["p"] == 0.01


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


SAM_KNOBS = {  # knob -> (lo, hi, lo_open, hi_open) of make_sam_optimizer
    "rho": (0.0, None, False, False), "eta": (0.0, None, True, False), "clip": (0.0, None, True, False),
    "lr": (0.0, None, True, False), "momentum": (0.0, None, False, False), "weight_decay": (0.0, None, False, False),
}


@SOME
@given(data=st.data(), name=st.sampled_from(SAM_NAMES), base=st.sampled_from(["sgd", "adam", "adamw"]))
def test_make_sam_optimizer_refuses_bad_knobs_for_every_method(data, name, base):
    knob = data.draw(st.sampled_from(sorted(SAM_KNOBS)), label="knob")
    lo, hi, lo_open, hi_open = SAM_KNOBS[knob]
    value = data.draw(st.one_of(bad_floats(lo, hi, lo_open=lo_open, hi_open=hi_open),
                                st.sampled_from(["abc", True, [0.1]])), label="value")
    refused(lambda: make_sam_optimizer(name, tiny_net(), base, **{knob: value}), knob, value)


@FEW
@given(name=st.sampled_from(SAM_NAMES), rho=good_floats(0.0, 5.0), eta_=good_floats(1e-6, 1.0),
       clip=st.one_of(st.none(), good_floats(1e-3, 5.0)), lr=good_floats(1e-4, 1.0))
def test_make_sam_optimizer_valid_knobs_step(name, rho, eta_, clip, lr):
    net = tiny_net()
    opt = make_sam_optimizer(name, net, rho=rho, eta=eta_, clip=clip, lr=lr)
    x, y = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 0, 1])

    def closure():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss
    opt.zero_grad()
    closure()
    opt.step(closure) if name != "sgd" else opt.step()
    assert all(bool(torch.isfinite(p).all()) for p in net.parameters())


@FEW
@given(p=st.one_of(bad_floats(1.0, None, finite=False), st.sampled_from(["abc", True])))
def test_samson_refuses_p_below_one(p):
    refused(lambda: SAMSON(tiny_net(), torch.optim.SGD, 0.5, p=p, lr=0.1), "p", p)


# --------------------------------------------------------------------------------------------
# analyses (on the session's trained digits network, a few samples)
# --------------------------------------------------------------------------------------------

N = 24


@pytest.fixture(scope="module")
def small(trained):
    model, x, y = trained
    return model, x[:N], y[:N]


@SOME
@given(draws=st.one_of(bad_ints(1, 100_000), st.just("3")))
def test_mc_evaluate_refuses_bad_draws(small, draws):
    model, x, y = small
    refused(lambda: mc_evaluate(model, x, y, MemristorMemory(), draws=draws, device="cpu"), "draws", draws)


@FEW
@given(knob=st.sampled_from(["max_draws", "chunk", "batch_size", "power_batch", "seed"]), data=st.data())
def test_mc_evaluate_refuses_bad_integer_knobs(small, knob, data):
    value = data.draw(st.one_of(st.floats(), st.booleans(), st.just("1"))
                      if knob == "seed" else bad_ints(1, 100_000 if knob == "max_draws" else None), label="value")
    model, x, y = small
    refused(lambda: mc_evaluate(model, x, y, MemristorMemory(), draws=2, device="cpu", **{knob: value}), knob, value)


@FEW
@given(width=st.one_of(bad_floats(0.0, 1.0, lo_open=True), st.sampled_from(["0.1", True])))
def test_mc_evaluate_refuses_bad_target_ci_width(small, width):
    model, x, y = small
    refused(lambda: mc_evaluate(model, x, y, MemristorMemory(), draws=2, target_ci_width=width, device="cpu"),
            "target_ci_width", width)


@FEW
@given(mode=st.text(max_size=10).filter(lambda m: m not in ("auto", "vectorised", "loop")))
def test_mc_evaluate_refuses_unknown_mode(small, mode):
    model, x, y = small
    refused(lambda: mc_evaluate(model, x, y, MemristorMemory(), draws=1, mode=mode, device="cpu"), "mode")


@FEW
@given(n_x=st.integers(0, N), n_y=st.integers(0, N))
def test_mc_evaluate_refuses_mismatched_or_empty_data(small, n_x, n_y):
    assume(n_x != n_y or n_x == 0)
    model, x, y = small
    msg = refused(lambda: mc_evaluate(model, x[:n_x], y[:n_y], MemristorMemory(), draws=1, device="cpu"), "x and y",
                  exc=ValueError)
    assert str(n_x) in msg and str(n_y) in msg


def test_mc_evaluate_refuses_a_memory_dict(small):
    model, x, y = small
    refused(lambda: mc_evaluate(model, x, y, {"technology": "sram"}, draws=1, device="cpu"), "memory")


@FEW
@given(draws=st.integers(1, 3), mode=st.sampled_from(["auto", "loop", "vectorised"]), sigma_c=good_floats(0.0, 1.0),
       seed=st.integers(-2**63, 2**63 - 1), chunk=st.integers(1, 4))
def test_mc_evaluate_valid(small, draws, mode, sigma_c, seed, chunk):
    model, x, y = small
    before = {n: layer.memory for n, layer in noisy_layers(model).items()}
    ds = mc_evaluate(model, x, y, MemristorMemory(sigma_c=sigma_c), draws=draws, seed=seed, chunk=chunk, mode=mode,
                     device="cpu")
    acc = ds.accuracy.values
    assert acc.size == draws and np.all((acc >= 0) & (acc <= 1))
    assert ds.attrs["ci95_low"] <= ds.attrs["accuracy_mean"] <= ds.attrs["ci95_high"]
    after = {n: layer.memory for n, layer in noisy_layers(model).items()}
    assert after == before


def test_mc_evaluate_target_ci_never_stops_below_the_minimum_draws(small):
    model, x, y = small
    ds = mc_evaluate(
        model, x, y, SRAMMemory(p=0.02, bits=8), draws=5, target_ci_width=1e-6, max_draws=3, chunk=2, device="cpu"
    )
    assert ds.accuracy.size == 5


@FEW
@given(acc=st.lists(st.floats(0.0, 1.0), max_size=8), nan_at=st.one_of(st.none(), st.integers(0, 8)))
def test_summarize_defines_empty_and_nan(acc, nan_at):
    """No draw: every statistic NaN, draws 0.  A NaN draw: every statistic NaN (never a number that
    silently ignores it).  Otherwise: low ≤ mean ≤ high, std ≥ 0."""
    if nan_at is not None:
        acc = acc[:nan_at] + [NAN] + acc[nan_at:]
    s = summarize(np.array(acc, dtype=float))
    assert s["draws"] == len(acc)
    stats_ = [s[k] for k in ("accuracy_mean", "accuracy_std", "ci95_low", "ci95_high")]
    if not acc or nan_at is not None:
        assert all(math.isnan(v) for v in stats_), s
    else:
        assert s["ci95_low"] <= s["accuracy_mean"] <= s["ci95_high"] and s["accuracy_std"] >= 0
        assert min(acc) - 1e-12 <= s["accuracy_mean"] <= max(acc) + 1e-12


@FEW
@given(confidence=st.one_of(bad_floats(0.0, 1.0, lo_open=True, hi_open=True), st.sampled_from(["0.95", True])))
def test_summarize_refuses_bad_confidence(confidence):
    refused(lambda: summarize(np.array([0.5, 0.6]), confidence), "confidence", confidence)


@FEW
@given(rho=st.one_of(bad_floats(0.0, None, lo_open=True), st.sampled_from(["0.5", True])))
def test_m_sharpness_refuses_bad_rho(small, rho):
    model, x, y = small
    refused(lambda: m_sharpness(model, x, y, rho=rho, m=8), "rho", rho)


@FEW
@given(m=bad_ints(1, N), variant=st.sampled_from(VARIANTS))
def test_m_sharpness_refuses_bad_m(small, m, variant):
    model, x, y = small
    refused(lambda: m_sharpness(model, x, y, variant=variant, m=m), "m", m)


@FEW
@given(variant=st.one_of(st.text(max_size=10), st.just(["sam"]), st.none()).filter(lambda v: v not in VARIANTS))
def test_m_sharpness_refuses_unknown_variant(small, variant):
    model, x, y = small
    refused(lambda: m_sharpness(model, x, y, variant=variant, m=8), "variant")


@FEW
@given(variant=st.sampled_from(VARIANTS), rho=good_floats(0.01, 2.0), m=st.integers(4, N))
def test_m_sharpness_valid_leaves_the_model_untouched(small, variant, rho, m):
    model, x, y = small
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ds = m_sharpness(model, x, y, variant=variant, rho=rho, m=m, max_batches=2)
    assert math.isfinite(float(ds.m_sharpness))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@FEW
@given(bits=st.one_of(bad_ints(2, 16), st.sampled_from(["4", None])), good=st.lists(st.integers(2, 16), max_size=2,
                                                                                      unique=True))
def test_quantization_sweep_refuses_bad_bits(small, bits, good):
    model, x, y = small
    refused(lambda: quantization_sweep(model, x, y, bits=good + [bits]), "bits", bits)


def test_quantization_sweep_refuses_empty_and_duplicate_bits(small):
    model, x, y = small
    refused(lambda: quantization_sweep(model, x, y, bits=[]), "bits")
    refused(lambda: quantization_sweep(model, x, y, bits=[4, 4]), "bits")
    assert quantization_sweep(model, x, y, bits=4).bits.values.tolist() == [4]      # one width given as an int


@FEW
@given(bits=st.lists(st.integers(2, 16), min_size=1, max_size=2, unique=True))
def test_quantization_sweep_valid(small, bits):
    model, x, y = small
    ds = quantization_sweep(model, x, y, bits=bits)
    assert ds.bits.values.tolist() == bits and np.all((ds.accuracy.values >= 0) & (ds.accuracy.values <= 1))


@SOME
@given(kind=st.one_of(st.text(max_size=8), st.none(), st.just(3)).filter(lambda k: k not in KINDS),
       amount=st.floats(-100, 100))
def test_transform_images_refuses_unknown_kind(kind, amount):
    refused(lambda: transform_images(torch.zeros(2, 1, 4, 4), kind, amount), "kind")


TRANSFORM_RANGES = {"rotation": (None, None, False, False), "shear": (-90.0, 90.0, True, True),
                    "zoom": (ZOOM_MIN, None, False, False)}


@SOME
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_transform_images_refuses_nan_and_out_of_range_amounts(kind, data):
    lo, hi, lo_open, hi_open = TRANSFORM_RANGES[kind]
    amount = data.draw(st.one_of(bad_floats(lo, hi, lo_open=lo_open, hi_open=hi_open), st.sampled_from(["abc", None])),
                       label="amount")
    refused(lambda: transform_images(torch.zeros(2, 1, 4, 4), kind, amount), "amount", amount)


@FEW
@given(fill=st.one_of(st.sampled_from([NAN, INF, -INF]), st.sampled_from(["a", None, True])))
def test_transform_images_refuses_bad_fill(fill):
    refused(lambda: transform_images(torch.zeros(2, 1, 4, 4), "rotation", 10.0, fill=fill), "fill", fill)


@SOME
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data(), fill=st.floats(-3, 3))
def test_transform_images_valid_keeps_shape_and_finiteness(kind, data, fill):
    lo, hi, lo_open, hi_open = TRANSFORM_RANGES[kind]
    amount = data.draw(good_floats(-1e6 if lo is None else lo, 1e6 if hi is None else hi, lo_open=lo_open,
                                   hi_open=hi_open), label="amount")
    x = torch.rand(2, 1, 6, 6)
    out = transform_images(x, kind, amount, fill=fill)
    assert out.shape == x.shape and out.dtype == x.dtype and bool(torch.isfinite(out).all())


@FEW
@given(
    spec=st.one_of(
        st.dictionaries(
            st.text(min_size=1, max_size=5),
            st.tuples(st.sampled_from(sorted(KINDS)), st.just(NAN)),
            min_size=1,
            max_size=2,
        ),
        st.dictionaries(
            st.text(min_size=1, max_size=5),
            st.tuples(st.text(max_size=5).filter(lambda k: k not in KINDS), st.floats(1, 50)),
            min_size=1,
            max_size=2,
        ),
        st.sampled_from([{"a": "rotation"}, {"a": ("rotation",)}, {"a": ("zoom", 50.0, 1)}, [], {}, ["rot_20"]]),
    )
)
def test_ood_accuracy_refuses_bad_transforms(small, spec):
    model, x, y = small
    msg = refused(lambda: ood_accuracy(model, x, y, spec, device="cpu"), "")
    assert re.search(r"transform|kind|amount", msg)


def test_ood_accuracy_valid_and_mismatched(small):
    model, x, y = small
    ds = ood_accuracy(model, x, y, "rotation_20", device="cpu")          # one name as a plain string
    assert ds.transform.values.tolist() == ["rotation_20"] and 0 <= float(ds.accuracy[0]) <= 1
    refused(lambda: ood_accuracy(model, x, y[:5], ["zoom_60"], device="cpu"), "x and y", exc=ValueError)


@FEW
@given(times=st.one_of(st.just([]), st.lists(bad_floats(0.0, None, lo_open=True), min_size=1, max_size=3),
                       st.just("abc"), st.just([[1.0, 2.0], [3.0]])))
def test_pcm_drift_refuses_bad_times(small, times):
    model, x, y = small
    refused(lambda: pcm_drift(model, x, y, times=times, draws=1), "times")


@FEW
@given(draws=st.one_of(bad_ints(1, 1000), st.just("2")), seed=st.one_of(st.just(0), st.floats(), st.just("0")))
def test_pcm_drift_refuses_bad_draws_and_seed(small, draws, seed):
    model, x, y = small
    refused(lambda: pcm_drift(model, x, y, times=[1.0], draws=draws, seed=0), "draws", draws)
    if seed != 0:
        refused(lambda: pcm_drift(model, x, y, times=[1.0], draws=1, seed=seed), "seed", seed)


def test_pcm_drift_valid_and_mismatched(small):
    model, x, y = small
    ds = pcm_drift(model, x[:8], y[:8], times=[1.0, 3600.0], draws=1, seed=3)
    assert ds.accuracy.shape == (2, 1) and np.all((ds.accuracy.values >= 0) & (ds.accuracy.values <= 1))
    refused(lambda: pcm_drift(model, x, y[:3], times=[1.0], draws=1), "x and y", exc=ValueError)


@SOME
@given(knob=st.sampled_from(["c", "rho", "n"]), data=st.data())
def test_perturbation_profile_refuses_bad_knobs(knob, data):
    value = data.draw({"c": bad_floats(1e-6, 10.0), "rho": bad_floats(0.0, 10.0),
                       "n": bad_ints(2, 100_000)}[knob], label="value")
    refused(lambda: perturbation_profile(**{knob: value}), knob, value)


@FEW
@given(c=good_floats(1e-6, 10.0), rho=good_floats(0.0, 10.0), n=st.integers(2, 300),
       methods=st.lists(st.sampled_from(sorted(PERTURBATION_METHODS)), min_size=1, max_size=4, unique=True))
def test_perturbation_profile_valid(c, rho, n, methods):
    ds = perturbation_profile(c, rho, n=n, methods=methods)
    assert ds.epsilon.shape == (len(methods), n) and bool(np.isfinite(ds.epsilon.values).all())


def test_perturbation_profile_refuses_empty_methods():
    refused(lambda: perturbation_profile(methods=[]), "methods")


@FEW
@given(batch_size=st.one_of(bad_ints(2, None), st.just("64")), max_batches=st.one_of(st.none(), bad_ints(1, None)))
def test_adabs_refuses_bad_batching(small, batch_size, max_batches):
    model, x, y = small
    refused(lambda: adabs(model, MemristorMemory(), x, batch_size=batch_size), "batch_size", batch_size)
    if max_batches is not None:
        refused(lambda: adabs(model, MemristorMemory(), x, max_batches=max_batches), "max_batches", max_batches)


def test_adabs_refuses_empty_data_and_a_memory_dict(small):
    model, x, y = small
    for n in (0, 1):
        refused(lambda n=n: adabs(model, MemristorMemory(), x[:n]), "x_calib")
    refused(lambda: adabs(model, {"technology": "memristor"}, x), "memory")


@FEW
@given(batch_size=st.integers(2, N), sigma_c=good_floats(0.0, 0.5))
def test_adabs_valid_leaves_the_model_untouched(small, batch_size, sigma_c):
    model, x, y = small
    state = {k: v.clone() for k, v in model.state_dict().items()}
    net = adabs(model, MemristorMemory(sigma_c=sigma_c), x, batch_size=batch_size, max_batches=2)
    assert net is not model and not net.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------------------------
# CLI: exit status 2, the knob named, refused before any computation, the store left clean
# --------------------------------------------------------------------------------------------

class Reached(Exception):
    """Raised by the patched compute entry points: a bad value got past validation."""


def _reached(*args, **kwargs):
    raise Reached("training/evaluation started before the bad value was refused")


def cli(argv: list[str], *, stubs: dict | None = None) -> tuple[int, str, str]:
    """``main(argv + --cache-dir TMP)`` with training and every store computation patched to raise
    :class:`Reached` (or replaced by ``stubs``); returns ``(status, stdout, stderr)`` and checks
    that the throw-away store holds no entry afterwards."""
    cache = Path(tempfile.mkdtemp(prefix="wb-prop-cli-"))
    out, err = io.StringIO(), io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(core, "train", _reached)
            mp.setattr(Store, "get_or_compute", _reached)
            mp.setattr(Store, "load_object", _reached)
            for name, fn in (stubs or {}).items():
                mp.setattr(experiments, name, fn)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = main([*argv, "--cache-dir", str(cache), "--quiet"])
                except SystemExit as exc:          # argparse's own refusals (also status 2)
                    status = exc.code
        assert not [p for p in cache.rglob("*") if p.suffix in (".nc", ".pt", ".sha256")], "a refused run wrote results"
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return status, out.getvalue(), err.getvalue()


def assert_cli_refused(argv: list[str], knob: str, value=None) -> str:
    status, out, err = cli(argv)
    assert status == 2, (status, err)
    assert TRACEBACK not in err
    assert "workbench: error:" in err or "error: argument" in err, err
    assert knob in err, f"{knob!r} not named in {err!r}"
    if value is not None:
        assert mentions(err, value), err
    return err


@SOME
@given(data=st.data())
def test_cli_evaluate_refuses_bad_memory_knobs_before_training(data):
    flag, tech, knob, lo, hi, lo_open, hi_open = data.draw(st.sampled_from([
        ("--p", "sram", "p", 0.0, 0.5, False, False),
        ("--sigma-c", "memristor", "sigma_c", 0.0, 1.0, False, False),
        ("--sigma", "memristor", "sigma", 0.0, 100.0, False, False),
        ("--g-u", "memristor", "g_u", G_U_MIN, 25.0, False, False)]), label="flag")
    value = data.draw(bad_floats(lo, hi, lo_open=lo_open, hi_open=hi_open), label="value")
    assert_cli_refused(["evaluate", "--memory", tech, f"{flag}={value!r}"], knob, value)


@FEW
@given(draws=st.integers().filter(lambda d: not 1 <= d <= 100_000), cmd=st.sampled_from(["evaluate", "curve"]))
def test_cli_refuses_bad_draws_before_training(draws, cmd):
    assert_cli_refused([cmd, "--memory", "sram", f"--draws={draws}"], "draws", draws)


@FEW
@given(bits=st.integers().filter(lambda b: not 1 <= b <= 32))
def test_cli_refuses_bad_sram_bits(bits):
    assert_cli_refused(["evaluate", "--memory", "sram", f"--bits={bits}"], "bits", bits)


@FEW
@given(flag=st.sampled_from(["--p", "--sigma-c", "--g-u"]), text=st.sampled_from(["abc", "", "0.1.2", "1e"]))
def test_cli_refuses_non_numbers_through_argparse(flag, text):
    status, out, err = cli(["evaluate", "--memory", "sram", f"{flag}={text}"])
    assert status == 2 and TRACEBACK not in err and flag in err


def _fake_evaluate(cfg, memory, energy_reference="same-network", **kwargs):
    """What ``core.evaluate`` returns, without computing: the CLI's handling of the knobs is under test."""
    ds = xr.Dataset({"energy": ((), 0.5), "power": ("draw", [1.0, 2.0])})
    ds.attrs.update(accuracy_mean=0.9, accuracy_std=0.01, ci95_low=0.89, ci95_high=0.91, clean_accuracy=0.95, draws=2,
                    cache_key="k", cache="computed", energy_reference=energy_reference)
    return ds


@SOME
@given(data=st.data())
def test_cli_evaluate_accepts_in_range_memory_knobs(data):
    flag, tech, knob, lo, hi, lo_open, hi_open = data.draw(st.sampled_from([
        ("--p", "sram", "p", 0.0, 0.5, False, False),
        ("--sigma-c", "memristor", "sigma_c", 0.0, 1.0, False, False),
        ("--sigma", "memristor", "sigma", 0.0, 100.0, False, False),
        ("--g-u", "memristor", "g_u", G_U_MIN, 25.0, False, False)]), label="flag")
    value = data.draw(good_floats(lo, hi, lo_open=lo_open, hi_open=hi_open), label="value")
    draws = data.draw(st.integers(1, 100_000), label="draws")
    status, out, err = cli(["evaluate", "--memory", tech, f"{flag}={value!r}", f"--draws={draws}", "--json"],
                           stubs={"evaluate": _fake_evaluate})
    assert status == 0, err
    assert json.loads(out)["memory"][knob] == value


@SOME
@given(data=st.data())
def test_cli_train_set_refuses_bad_values_before_training(data):
    knob, lo, hi, lo_open, hi_open, integer = data.draw(st.sampled_from(TRAIN_KNOBS), label="knob")
    value = data.draw(st.one_of(bad_ints(lo, hi) if integer else bad_floats(lo, hi, lo_open=lo_open, hi_open=hi_open),
                                st.sampled_from(["abc", True, [1]])), label="value")
    extra = ["--set", "sam=\"sam\""] if knob == "rho" else []
    assert_cli_refused(["train", *extra, "--set", f"{knob}={json.dumps(value)}"], knob)


@FEW
@given(
    text=st.one_of(
        st.text(min_size=1, max_size=10).filter(lambda s: "=" not in s),
        st.text(min_size=1, max_size=8)
        .filter(lambda s: "=" not in s and s.strip() not in TrainConfig.param)
        .map(lambda s: f"{s}=1"),
    )
)
def test_cli_train_set_refuses_malformed_and_unknown_keys(text):
    status, out, err = cli(["train", f"--set={text}"])
    assert status == 2 and TRACEBACK not in err and "workbench: error:" in err
    assert "--set" in err or "unknown knob" in err


def test_cli_train_refuses_cross_knob_errors_before_training():
    assert_cli_refused(["train", "--set", "rho=0.1"], "rho")
    assert_cli_refused(["train", "--preset", "digits-wrn", "--set", "depth=11"], "depth")
    assert_cli_refused(["train", "--set", 'train_memory={"default": {"technology": "sram", "p": 2}}'], "train_memory")
    assert_cli_refused(["train", "--set", "epochs=true"], "epochs")
    assert_cli_refused(["train", "--preset", "no-such-preset"], "preset")


def _fake_train_model(cfg, store=None, **kwargs):
    return core.Trained(None, cfg, None, 0.9, 1.0, "cpu", "key", False)


@FEW
@given(data=st.data())
def test_cli_train_set_accepts_in_range_values(data):
    knob, lo, hi, lo_open, hi_open, integer = data.draw(st.sampled_from(TRAIN_KNOBS), label="knob")
    value = data.draw(st.integers(lo, hi) if integer else good_floats(lo, hi, lo_open=lo_open, hi_open=hi_open),
                      label="value")
    extra = ["--set", "sam=\"sam\""] if knob == "rho" else []
    if knob == "depth":
        value = 4 + 6 * ((value - 4) // 6) if value >= 10 else 10
    status, out, err = cli(["train", *extra, "--set", f"{knob}={json.dumps(value)}", "--json"],
                           stubs={"train_model": _fake_train_model})
    assert status == 0, err
    assert json.loads(out)["config"][knob] == value


@FEW
@given(garbage=st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)))
def test_cli_sweep_refuses_a_garbage_spec(garbage):
    try:
        json.loads(garbage)
        assume(False)            # valid JSON: not garbage (non-object JSON is the xfail test below)
    except (ValueError, UnicodeDecodeError):
        pass
    d = Path(tempfile.mkdtemp(prefix="wb-prop-spec-"))
    try:
        spec = d / "spec.json"
        spec.write_bytes(garbage)
        status, out, err = cli(["sweep", str(spec)])
        assert status == 2 and TRACEBACK not in err and "workbench: error:" in err, err
        assert "spec" in err or "codec" in err
    finally:
        shutil.rmtree(d, ignore_errors=True)


@FEW
@given(name=st.text(alphabet="abcdefghij_", min_size=1, max_size=10))
def test_cli_sweep_refuses_a_missing_spec_or_unknown_experiment(name):
    d = Path(tempfile.mkdtemp(prefix="wb-prop-spec-"))
    try:
        assert_cli_refused(["sweep", str(d / f"{name}.json")], "does not exist")
        spec = d / "spec.json"
        spec.write_text(json.dumps({"experiments": {f"no_{name}": {}}}))
        assert_cli_refused(["sweep", str(spec)], f"no_{name}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("content", ["[1, 2]", "3", '"spec"', None])
def test_cli_sweep_refuses_a_non_object_spec(tmp_path, content):
    spec = tmp_path / "spec.json"
    if content is None:
        spec.mkdir()
    else:
        spec.write_text(content)
    assert_cli_refused(["sweep", str(spec)], "spec")


@pytest.mark.parametrize(
    "argv, knob",
    [
        (["--target-ci=5"], "target_ci_width"),
        (["--target-ci=nan"], "target_ci_width"),
        (["--target-ci=0"], "target_ci_width"),
        (["--seed=99999999999999999999"], "seed"),
    ],
)
def test_cli_evaluate_refuses_bad_target_ci_and_seed_before_training(argv, knob):
    assert_cli_refused(["evaluate", "--memory", "sram", *argv], knob)


@pytest.mark.parametrize("times", ["0", "-1", "nan", "inf"])
def test_cli_drift_refuses_bad_times_before_training(times):
    assert_cli_refused(["drift", "--times", times], "times")


@pytest.mark.parametrize("argv, knob", [(["--rho=-1"], "rho"), (["--m=0"], "m"), (["--sigma-c=5"], "sigma_c"),
                                        (["--variants", "bogus"], "variant")])
def test_cli_sharpness_refuses_bad_knobs_before_training(argv, knob):
    assert_cli_refused(["sharpness", *argv], knob)


# --------------------------------------------------------------------------------------------
# the store: a result corrupted on disk is detected, recomputed and verifies again
# --------------------------------------------------------------------------------------------

def _seeded(seed: int = 3) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset({"accuracy": ("draw", rng.random(20), {"long_name": "test accuracy", "units": "1"})},
                      coords={"draw": np.arange(20)}, attrs={"accuracy_mean": 0.5})


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self) -> xr.Dataset:
        self.calls += 1
        return _seeded()


@SOME
@given(how=st.sampled_from(["truncate", "overwrite", "append", "sidecar", "no_sidecar", "empty"]), data=st.data())
def test_store_recomputes_a_corrupted_entry(how, data):
    root = Path(tempfile.mkdtemp(prefix="wb-prop-store-"))
    try:
        store = Store(root, read_only=[])
        spec = {"what": "property", "n": 1}
        first = Counter()
        ds0 = store.get_or_compute("prop", spec, first)
        assert first.calls == 1 and ds0.attrs["cache"] == "computed"
        (path,) = root.glob("prop/*.nc")
        side = path.with_name(path.name + ".sha256")
        raw = path.read_bytes()
        changed = True
        if how == "truncate":
            path.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1), label="cut")])
        elif how == "overwrite":
            at = data.draw(st.integers(0, len(raw) - 1), label="at")
            junk = data.draw(st.binary(min_size=1, max_size=64), label="junk")
            new = raw[:at] + junk + raw[at + len(junk):]
            changed = new != raw
            path.write_bytes(new)
        elif how == "append":
            path.write_bytes(raw + data.draw(st.binary(min_size=1, max_size=64), label="junk"))
        elif how == "sidecar":
            side.write_text(data.draw(st.text(max_size=70), label="sidecar"))
        elif how == "no_sidecar":
            side.unlink()
        else:
            path.write_bytes(b"")
        again = Counter()
        ds1 = store.get_or_compute("prop", spec, again)
        assert again.calls == (1 if changed else 0)
        assert ds1.attrs["cache"] == ("computed" if changed else "hit")
        xr.testing.assert_identical(ds1["accuracy"], ds0["accuracy"])
        entries = store.verify(repair=False)
        assert [e.ok for e in entries] == [True]
        third = Counter()
        assert store.get_or_compute("prop", spec, third).attrs["cache"] == "hit" and third.calls == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


@FEW
@given(cut=st.floats(0.0, 0.999), junk=st.binary(min_size=1, max_size=32))
def test_store_refuses_corrupted_weights(cut, junk):
    root = Path(tempfile.mkdtemp(prefix="wb-prop-store-"))
    try:
        store = Store(root, read_only=[])
        obj = {"state_dict": {"w": torch.arange(6.0)}, "test_accuracy": 0.5}
        path = store.save_object("weights", "k", obj, {"spec": 1})
        raw = path.read_bytes()
        path.write_bytes(raw[:int(cut * len(raw))] + junk)
        assert store.load_object("weights", "k") is None
        assert store.load_object("weights", "k", repair=True) is None and not path.exists()
        store.save_object("weights", "k", obj, {"spec": 1})
        assert torch.equal(store.load_object("weights", "k")["state_dict"]["w"], torch.arange(6.0))
        assert all(e.ok for e in store.verify(repair=False))
    finally:
        shutil.rmtree(root, ignore_errors=True)
