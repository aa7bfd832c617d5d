"""The knob rules of workbench.knobs, the memories' noise knobs and the shared cache key."""

import hashlib
import json
import math

import numpy as np
import pytest

from workbench import hardware
from workbench.hardware import IdealMemory, InjectionMemory, MemristorMemory, QuantizedMemory, SRAMMemory
from workbench.keys import canonical, spec_key
from workbench.knobs import (
    KnobError,
    check_choice,
    check_int,
    check_number,
    check_numbers,
    check_probability,
    check_seed,
    knob_error_from_param,
    range_text,
    range_words,
)


def test_knob_error_has_one_home():
    assert hardware.KnobError is KnobError
    from workbench.experiments import store
    assert store.spec_key is spec_key and store.canonical is canonical


@pytest.mark.parametrize("args, text", [
    ((0.0, 0.5), "[0, 0.5]"), ((0, None, (False, False)), "(0, inf)"), ((1.0, math.inf), "[1, inf]"),
    ((None, None), "(-inf, inf)"), ((1e-6, 10), "[1e-06, 10]"), ((1, 100_000), "[1, 100000]")])
def test_range_text(args, text):
    assert range_text(*args) == text


def test_range_words():
    assert range_words(0, 0.5) == "between 0 and 0.5"
    assert range_words(0, 1, (False, True)) == "in (0, 1]"
    assert range_words(1, None) == "at least 1" and range_words(0, None, (False, True)) == "above 0"
    assert range_words(None, 2, (True, False)) == "below 2" and range_words() == "a number"


def test_check_int():
    assert check_int("draws", np.int64(3), 1, 10) == 3
    with pytest.raises(KnobError, match=r"^draws=0 is out of range: draws must be an integer in \[1, 10\]$"):
        check_int("draws", 0, 1, 10)
    with pytest.raises(KnobError, match=r"draws=2\.5 is not an integer: draws must be an integer in \[1, inf\)"):
        check_int("draws", 2.5, 1)
    with pytest.raises(KnobError, match="not an integer"):
        check_int("draws", True, 0, 1)
    with pytest.raises(KnobError, match=r"\(note\)$"):
        check_int("n", 5, 1, 2, note="note")


def test_check_number():
    assert check_number("p", "inf", 1, math.inf, parse=True) == math.inf
    assert check_number("rho", 0, 0, None) == 0.0
    for bad in (math.inf, -1.0):
        with pytest.raises(KnobError, match=r"rho=.* is out of range: rho must be in \[0, inf\)"):
            check_number("rho", bad, 0, None)
    with pytest.raises(KnobError, match=r"eta=0 is out of range: eta must be in \(0, inf\)"):
        check_number("eta", 0, 0, None, inclusive=(False, False))
    with pytest.raises(KnobError, match=r"x=nan is not allowed; x must be in \[0, 1\]"):
        check_number("x", float("nan"), 0, 1)
    with pytest.raises(KnobError, match="is not a number"):
        check_number("x", "big", 0, 1, parse=True)
    with pytest.raises(KnobError, match="is not a number"):
        check_number("x", "0.5", 0, 1)                          # strings only with parse=True
    with pytest.raises(KnobError, match=r"must be in \[0, 1\)"):
        check_number("momentum", 1.0, 0, 1, inclusive=(True, False))


def test_check_probability_seed_choice():
    assert check_probability("p", 0.5, 0.5) == 0.5
    with pytest.raises(KnobError, match=r"p=0\.6 is out of range: p must be in \[0, 0\.5\]"):
        check_probability("p", 0.6, 0.5)
    with pytest.raises(KnobError, match=r"must be in \(0, 1\]"):
        check_probability("w", 0, open_low=True)
    assert check_seed("seed", -2**63) == -2**63
    with pytest.raises(KnobError, match=r"seed=.* must be an integer in \[-2\^63, 2\^63\)"):
        check_seed("seed", 2**63)
    assert check_choice("noise", "additive", ("multiplicative", "additive")) == "additive"
    with pytest.raises(KnobError, match="noise='x' is not valid: noise must be one of 'multiplicative', 'additive'"):
        check_choice("noise", "x", ("multiplicative", "additive"))


def test_noise_knob_of_each_memory():
    """Each memory names the knob its accuracy curve sweeps; additive crossbar noise is σ (eq 3.36),
    not g_u (the programmed range), and every named knob is a knob of that memory."""
    mems = {None: IdealMemory(), "p": SRAMMemory(), "sigma_c": MemristorMemory(noise="multiplicative"),
            "sigma": MemristorMemory(noise="additive"), "sigma_g": InjectionMemory(), "bits": QuantizedMemory()}
    for knob, mem in mems.items():
        assert mem.noise_knob == knob, (mem, mem.noise_knob)
        assert knob is None or knob in mem.knobs()


def test_supernet_key_is_the_shared_spec_key():
    """SupernetConfig.cache_key is spec_key with the supernet's code version: the same hash as the
    hand-written JSON+sha256 it replaced, so stored supernets stay found."""
    from workbench import __version__
    from workbench.nas.supernet import SUPERNET_VERSION, SupernetConfig
    cfg = SupernetConfig()
    blob = json.dumps({"kind": "supernet", "spec": cfg.to_dict(), "code": f"{__version__}+nas{SUPERNET_VERSION}"},
                      sort_keys=True, separators=(",", ":"), default=str)
    assert cfg.cache_key() == hashlib.sha256(blob.encode()).hexdigest()[:24]
    assert cfg.cache_key() != cfg.replace(dataset="mnist").cache_key()


def test_sharpness_robustness_args_pops_the_spec_keys():
    from workbench.experiments.sharpness import sharpness_robustness_args
    kw = {"methods": ["sgd"], "robustness_levels": [0.0, 0.3], "rho": 0.5}
    rob = sharpness_robustness_args(kw)
    assert kw == {"methods": ["sgd"], "rho": 0.5}
    assert rob == {"methods": ["sgd"], "seeds": (0, 1, 2), "levels": [0.0, 0.3], "adabs": [True], "draws": 10,
                   "train": None}
    assert sharpness_robustness_args({"methods": ["sgd"]}) is None


def test_check_numbers_names_the_first_bad_entry():
    assert check_numbers("widths", (0.5, 1)) == [0.5, 1.0]
    with pytest.raises(KnobError, match=r"^widths\[2\]=0 is out of range: widths\[2\] must be in \(0, inf\)$"):
        check_numbers("widths", [1, 2, 0, -1], 0, inclusive=(False, True))
    with pytest.raises(KnobError, match=r"widths=\[\] is empty"):
        check_numbers("widths", [])
    with pytest.raises(KnobError, match=r"widths='1' is not a list of numbers"):
        check_numbers("widths", "1")


def test_a_param_refusal_reads_as_the_one_wording():
    import param

    class Model(param.Parameterized):
        p = param.Number(0.1, bounds=(0, 0.5))
        n = param.Integer(2, bounds=(1, None))
        kind = param.Selector(default="a", objects=["a", "b"])

    m = Model()

    def refusal(name, value):
        with pytest.raises(ValueError) as info:
            m.param.update(**{name: value})
        return str(knob_error_from_param(name, value, info.value, m.param[name]))

    assert refusal("p", 0.7) == "p=0.7 is out of range: p must be in [0, 0.5]"
    assert refusal("p", "x") == "p='x' is not a number: p must be in [0, 0.5]"
    assert refusal("n", 0) == "n=0 is out of range: n must be an integer in [1, inf)"
    assert refusal("n", 2.0) == "n=2.0 is not an integer: n must be an integer in [1, inf)"
    assert refusal("kind", "c") == "kind='c' is not valid: kind must be one of 'a', 'b'"
    # a model's own message is kept, and a KnobError passes through as it is
    assert str(knob_error_from_param("p", 1, ValueError("p needs a trained network"))) == "p needs a trained network"
    own = KnobError("p=1 is out of range: p must be in [0, 0.5]")
    assert knob_error_from_param("p", 1, own) is own
