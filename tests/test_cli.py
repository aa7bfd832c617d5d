"""Tests for the command line (``workbench ...`` / ``python -m workbench ...``).

The main flows run the real entry point in a subprocess; the rest call
``workbench.cli.main([...])`` in-process.  Every run uses a throw-away store
(``--cache-dir`` or ``$WORKBENCH_CACHE`` under ``tmp_path``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import workbench.experiments.core as core
from workbench.cli import main
from workbench.experiments import Store

ROOT = Path(__file__).resolve().parents[1]
#: accuracy matters little for the SRAM checks: a briefly trained BinaryConnect network
BC = ["--set", "epochs=4"]
SWEEP = [0.0, 0.01, 0.05, 0.2, 0.5]


def run_cli(*args: str, cache: Path | None = None, env_cache: Path | None = None, timeout: float = 300):
    """``python -m workbench ARGS`` in a subprocess; returns the CompletedProcess."""
    env = {**os.environ}
    if env_cache is not None:
        env["WORKBENCH_CACHE"] = str(env_cache)
    argv = [sys.executable, "-m", "workbench", *args]
    if cache is not None:
        argv += ["--cache-dir", str(cache)]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def one_json(stdout: str) -> dict:
    """The single JSON object that ``--json`` prints (nothing else on stdout)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one line of JSON on stdout, got {stdout!r}"
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


def cli_json(capsys, *args: str) -> dict:
    """``main([...ARGS, --json])`` in-process; asserts success and returns the object."""
    rc = main([*args, "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "Traceback" not in err
    return one_json(out)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One store shared by this module's tests (trained networks are reused)."""
    return tmp_path_factory.mktemp("cli-store")


# --------------------------------------------------------------------------- train

def test_train_json_defaults_reach_97_percent_over_3_seeds(cache, capsys):
    """Acceptance: ``workbench train --json`` with the defaults, mean of seeds 0, 1, 2 ≥ 0.97."""
    proc = run_cli("train", "--json", cache=cache)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    first = one_json(proc.stdout)
    for key in ("test_accuracy", "train_seconds", "device", "cache_key"):
        assert key in first, key
    # (``cached`` may be true: the default network can be among the results shipped in data/store)
    assert first["preset"] == "digits-cnn" and isinstance(first["cached"], bool)
    assert isinstance(first["device"], str) and first["device"].split(":")[0] in ("cpu", "cuda", "mps")
    assert first["train_seconds"] > 0
    assert len(first["cache_key"]) == 24
    assert first["config"]["seed"] == 0 and first["config"]["epochs"] == 20
    accs = [first["test_accuracy"]]
    for seed in (1, 2):
        res = cli_json(capsys, "train", "--set", f"seed={seed}", "--cache-dir", str(cache))
        assert res["config"]["seed"] == seed and res["cache_key"] != first["cache_key"]
        assert res["train_seconds"] > 0
        accs.append(res["test_accuracy"])
    assert all(0.0 <= a <= 1.0 for a in accs)
    assert sum(accs) / 3 >= 0.97, accs
    # the default IS seed=0: the same cache entry, now loaded rather than trained
    again = cli_json(capsys, "train", "--set", "seed=0", "--cache-dir", str(cache))
    assert again["cached"] is True and again["cache_key"] == first["cache_key"]
    assert again["test_accuracy"] == first["test_accuracy"]
    assert again["train_seconds"] == first["train_seconds"]      # recorded at training time


def test_train_recompute_and_human_output(tmp_path, capsys):
    args = ["train", "--set", "epochs=1", "--cache-dir", str(tmp_path)]
    first = cli_json(capsys, *args)
    recomputed = cli_json(capsys, *args, "--recompute")
    assert recomputed["cached"] is False and recomputed["cache_key"] == first["cache_key"]
    assert recomputed["test_accuracy"] == first["test_accuracy"]          # seeded: the same network
    assert main([*args, "--quiet"]) == 0
    out, _ = capsys.readouterr()
    assert "test_accuracy:" in out and "cache_key:" in out and "{" not in out.splitlines()[0]


# --------------------------------------------------------------------------- evaluate

def test_evaluate_p_half_is_chance_level(cache):
    """``workbench evaluate --memory sram --p 0.5 --json``: every weight is a coin flip."""
    proc = run_cli("evaluate", "--memory", "sram", "--p", "0.5", "--json", *BC, env_cache=cache)
    assert proc.returncode == 0, proc.stderr
    res = one_json(proc.stdout)
    assert res["preset"] == "digits-bc" and res["memory"]["p"] == 0.5 and res["draws"] == 30
    assert abs(res["accuracy_mean"] - 0.1) < 0.05, res
    assert res["clean_accuracy"] > 0.8
    assert res["ci95_low"] <= res["accuracy_mean"] <= res["ci95_high"]
    # 1-bit weights at p = 0.5, relative to the same network read reliably: η(0.5) (eq 3.27)
    assert res["energy"] == pytest.approx(-math.log(0.5) / 12.8, rel=1e-12)
    assert res["energy_reference"] == "same-network"
    # $WORKBENCH_CACHE was honoured (no --cache-dir given)
    kinds = {e.kind for e in Store(cache, read_only=[]).entries()}
    assert {"weights", "evaluate"} <= kinds


@pytest.mark.parametrize("p, energy", [(0.01, 0.3598), (1e-4, 0.7196)])
def test_evaluate_energy_is_the_thesis_convention(cache, capsys, p, energy):
    """§4.4.2: a full-width BinaryConnect net at a uniform p has E = η(p) relative to itself read
    reliably (36 % at p = 0.01, 28 % saved at 1e-4); ``--energy-reference fp16`` divides by 16 and
    reads the same cache entry."""
    args = ["evaluate", "--memory", "sram", "--p", str(p), "--draws", "2", *BC, "--cache-dir", str(cache)]
    res = cli_json(capsys, *args)
    assert res["energy"] == pytest.approx(energy, abs=5e-5)
    assert res["energy_reference"] == "same-network" and "same network" in res["energy_units"]
    fp16 = cli_json(capsys, *args, "--energy-reference", "fp16")
    assert fp16["energy"] == pytest.approx(res["energy"] / 16, rel=1e-12)
    assert fp16["energy_reference"] == "fp16" and "16 bits" in fp16["energy_units"]
    assert fp16["cache_key"] == res["cache_key"] and fp16["cache"] == "hit"


def test_evaluate_p0_equals_clean_accuracy(cache, capsys):
    res = cli_json(capsys, "evaluate", "--memory", "sram", "--p", "0", *BC, "--cache-dir", str(cache))
    assert res["accuracy_mean"] == res["clean_accuracy"]
    assert res["accuracy_std"] == 0.0
    assert res["ci95_low"] == res["ci95_high"] == res["accuracy_mean"]
    hit = cli_json(capsys, "evaluate", "--memory", "sram", "--p", "0", *BC, "--cache-dir", str(cache))
    assert hit["cache"] == "hit" and hit["cache_key"] == res["cache_key"] and hit["cache_key"]
    assert hit["accuracy_mean"] == res["accuracy_mean"]


def test_evaluate_accuracy_falls_monotonically_with_p(cache, capsys):
    rows = [cli_json(capsys, "evaluate", "--memory", "sram", "--p", str(p), *BC, "--cache-dir", str(cache))
            for p in SWEEP]
    means = [r["accuracy_mean"] for r in rows]
    for lo, hi in zip(rows, rows[1:]):
        # the next (noisier) mean is no higher than this one, up to this one's confidence interval
        assert hi["accuracy_mean"] <= max(lo["accuracy_mean"], lo["ci95_high"]) + 1e-12, means
    assert means[0] - means[-1] > 0.6, means
    assert means[2] < means[0] and means[3] < means[2], means
    energies = [r["energy"] for r in rows]
    assert energies == sorted(energies, reverse=True)          # η(p) falls with p
    # a curve over the same grid reuses exactly these cells
    curve = cli_json(capsys, "curve", "--memory", "sram", "--knob", "p", "--values", *map(str, SWEEP), *BC,
                     "--cache-dir", str(cache))
    assert curve["values"] == SWEEP and curve["accuracy_mean"] == means
    assert curve["clean_accuracy"] == rows[0]["clean_accuracy"]


def test_evaluate_memristor_reports_power(tmp_path, capsys):
    res = cli_json(capsys, "evaluate", "--memory", "memristor", "--sigma-c", "0.1", "--draws", "3", "--set", "epochs=2",
                   "--cache-dir", str(tmp_path))
    assert res["preset"] == "digits-cnn" and res["draws"] == 3
    assert res["memory"]["technology"] == "memristor" and res["memory"]["sigma_c"] == 0.1
    assert math.isfinite(res["power"]) and res["power"] > 0
    assert res["power_units"]
    assert 0 <= res["accuracy_mean"] <= 1
    # additive noise at a lower conductance scale draws less power
    low = cli_json(capsys, "evaluate", "--memory", "memristor", "--noise", "additive", "--g-u", "5", "--draws", "3",
                   "--set", "epochs=2", "--cache-dir", str(tmp_path))
    assert 0 < low["power"] < res["power"]


# --------------------------------------------------------------------------- validation

BAD = [
    (["evaluate", "--memory", "sram", "--p", "0.7"], "p", "[0, 0.5]"),
    (["evaluate", "--memory", "sram", "--p", "-1"], "p", "[0, 0.5]"),
    (["evaluate", "--memory", "sram", "--p", "nan"], "p=nan", "[0, 0.5]"),
    (["evaluate", "--memory", "memristor", "--sigma-c", "2"], "sigma_c", "[0, 1]"),
    (["evaluate", "--memory", "memristor", "--g-u", "30"], "g_u", "(0, 25]"),
    (["evaluate", "--memory", "sram", "--draws", "0"], "draws", "[1, 100000]"),
    (["evaluate", "--memory", "sram", "--bits", "40"], "bits", "[1, 32]"),
    (["train", "--set", "lr=-1"], "lr", "(0, 10]"),
    (["train", "--set", "epochs=0"], "epochs", "[1, 1000]"),
    (["train", "--set", "nosuchknob=1"], "nosuchknob", "valid knobs: dataset, model"),
    (["train", "--preset", "nope"], "preset='nope' is not valid", "'digits-bc', 'digits-cnn'"),
    (["evaluate", "--sigma-c", "0.1"], "--sigma-c", "--memory"),
    (["curve", "--memory", "sram", "--knob", "p", "--values", "0.1", "0.9"], "p", "[0, 0.5]"),
]


@pytest.mark.parametrize("argv,knob,valid", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_out_of_range_knobs_fail_cleanly(argv, knob, valid, tmp_path, capsys):
    rc = main([*argv, "--json", "--cache-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("workbench: error:")
    assert knob in err and valid in err, err
    # refused before any work: nothing was trained or stored
    assert Store(tmp_path, read_only=[]).entries() == []


@pytest.mark.parametrize("argv,knob,valid", [BAD[0], BAD[7]], ids=["p 0.7", "lr=-1"])
def test_out_of_range_knobs_fail_cleanly_subprocess(argv, knob, valid, tmp_path):
    proc = run_cli(*argv, "--json", cache=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert knob in proc.stderr and valid in proc.stderr, proc.stderr


def test_a_non_finite_loss_stops_training_with_a_clear_error():
    """The real training loop on digits whose first training image holds an infinity: the loss is
    not finite at the first minibatch, and the error says so (not a NaN network stored)."""
    import dataclasses

    import torch

    from workbench.datasets import load_dataset
    from workbench.training import TrainConfig, train
    data = load_dataset("digits")
    x, y = (t.clone() for t in data.train.tensors)
    x[0, 0, 0, 0] = float("inf")
    bad = dataclasses.replace(data, train=torch.utils.data.TensorDataset(x, y))
    with pytest.raises(FloatingPointError, match=r"training diverged at epoch 1 \(loss=(nan|inf)\); lower lr=0.05"):
        train(TrainConfig(epochs=1), bad, device="cpu")


def test_diverged_training_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    """What the CLI does with the error above (the training loop's own message, raised by a
    stand-in so that the CLI's handling is what is tested): exit 2, one line, no traceback."""
    message = "training diverged at epoch 1 (loss=nan); lower lr=9.0"

    def diverge(cfg, **kw):
        raise FloatingPointError(message)

    monkeypatch.setattr(core, "train", diverge)
    rc = main(["train", "--set", "lr=9", "--json", "--cache-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.strip() == f"workbench: error: {message}" or err.strip().endswith(message), err
    assert "Traceback" not in err
    assert not list(Store(tmp_path, read_only=[]).entries())   # nothing stored for the diverged run


def test_unknown_argument_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--memory", "dram"])
    assert exc.value.code == 2
    assert "--memory" in capsys.readouterr().err


# --------------------------------------------------------------------------- cache

def test_cache_list_verify_clear(tmp_path, capsys):
    root = tmp_path / "store"
    trained = cli_json(capsys, "train", "--set", "epochs=1", "--cache-dir", str(root))
    cli_json(capsys, "evaluate", "--memory", "sram", "--p", "0.1", "--draws", "2", "--set", "epochs=1",
             "--cache-dir", str(root))

    def own(res):
        return [e for e in res["entries"] if not e["shipped"]]

    listed = cli_json(capsys, "cache", "list", "--cache-dir", str(root))
    assert listed["action"] == "list" and listed["root"] == str(root) and listed["bad"] == 0
    rows = own(listed)
    assert sorted(e["kind"] for e in rows) == ["evaluate", "weights", "weights"]   # digits-cnn and digits-bc
    assert all(e["ok"] and e["bytes"] > 0 and Path(e["path"]).is_file() for e in rows)
    assert trained["cache_key"] in {e["key"] for e in rows}

    weights = next(e for e in rows if e["key"] == trained["cache_key"])
    path = Path(weights["path"])
    path.write_bytes(path.read_bytes()[:100])                   # truncate
    listed = cli_json(capsys, "cache", "list", "--cache-dir", str(root))
    assert listed["bad"] == 1 and path.exists()                 # list reports, does not repair

    proc = run_cli("cache", "verify", "--json", cache=root)
    assert proc.returncode == 0, proc.stderr
    verified = one_json(proc.stdout)
    assert verified["action"] == "verify" and verified["bad"] == 1
    assert [e["key"] for e in own(verified) if not e["ok"]] == [trained["cache_key"]]
    assert not path.exists()
    assert cli_json(capsys, "cache", "list", "--cache-dir", str(root))["bad"] == 0

    again = cli_json(capsys, "train", "--set", "epochs=1", "--cache-dir", str(root))
    assert again["cached"] is False and again["test_accuracy"] == trained["test_accuracy"]

    cleared = cli_json(capsys, "cache", "clear", "--cache-dir", str(root))
    assert cleared["action"] == "clear" and cleared["removed"] == 3
    assert own(cli_json(capsys, "cache", "list", "--cache-dir", str(root))) == []
    assert main(["cache", "list", "--cache-dir", str(root)]) == 0        # human-readable form
    assert "bad: 0" in capsys.readouterr().out


# --------------------------------------------------------------------------- flags of the other memory

OTHER_MEMORY = [   # (argv, the flag named, the memory named)
    (["evaluate", "--memory", "memristor", "--p", "0.7", "--bits", "0"], "--p", "memristor"),
    (["evaluate", "--memory", "memristor", "--bits", "4"], "--bits", "memristor"),
    (["evaluate", "--memory", "sram", "--sigma-c", "5", "--g-u", "-1"], "--sigma-c", "sram"),
    (["evaluate", "--memory", "sram", "--g-u", "10"], "--g-u", "sram"),
    (["evaluate", "--memory", "sram", "--sigma", "1"], "--sigma", "sram"),
    (["evaluate", "--memory", "sram", "--noise", "additive"], "--noise", "sram"),
    (["evaluate", "--memory", "ideal", "--bits", "4"], "--bits", "ideal"),
    (["evaluate", "--memory", "ideal", "--noise", "additive"], "--noise", "ideal"),
    (["curve", "--memory", "sram", "--knob", "p", "--sigma-c", "0.1"], "--sigma-c", "sram"),
    (["curve", "--memory", "memristor", "--knob", "sigma_c", "--p", "0.1"], "--p", "memristor"),
    (["curve", "--memory", "memristor", "--knob", "p"], "knob=p", "memristor"),
    (["curve", "--memory", "sram", "--knob", "g_u"], "knob=g_u", "sram"),
]


@pytest.mark.parametrize("argv,flag,memory", OTHER_MEMORY, ids=[" ".join(a) for a, _, _ in OTHER_MEMORY])
def test_a_flag_of_the_other_memory_is_refused_not_dropped(argv, flag, memory, tmp_path, capsys):
    rc = main([*argv, "--json", "--quiet", "--cache-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert out == "" and "Traceback" not in err
    assert err.startswith("workbench: error:")
    assert flag in err and f"--memory {memory}" in err, err
    assert Store(tmp_path, read_only=[]).entries() == []       # refused before any training


# --------------------------------------------------------------------------- sweep spec / lanmax knobs

def test_sweep_spec_missing_a_key_names_the_experiment_and_its_required_keys(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "x", "experiments": {
        "uniform_ber": {"p_test": [0.0], "seeds": [0], "draws": 1}}}))
    rc = main(["sweep", str(spec), "--quiet", "--cache-dir", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "'uniform_ber'" in err and "'p_train'" in err, err
    assert "requires p_train, p_test, seeds, draws" in err, err
    from workbench.experiments.sweep import run_experiment
    from workbench.hardware import KnobError
    with pytest.raises(KnobError, match="'energy_accuracy' is missing the parameters 'widths', 'p_uniform'"):
        run_experiment("energy_accuracy", {"alphas": [0.0], "seeds": [0], "draws": 1}, Store(tmp_path / "s2"))


@pytest.mark.parametrize("knob", ["sam=sam", "sam=samson2", "clip_std=2"])
def test_lanmax_refuses_a_sharpness_aware_optimizer_and_clip_std(knob, tmp_path, capsys):
    rc = main(["lanmax", "--set", "epochs=1", "--set", knob, "--json", "--quiet", "--cache-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert out == "" and "Traceback" not in err and err.startswith("workbench: error:")
    assert knob.split("=")[0] + "=" in err and "LaNMax" in err and "SGD+Nesterov" in err, err
    assert Store(tmp_path, read_only=[]).entries() == []


@pytest.mark.parametrize("flags, knob", [(["--memory", "sram"], "p"), (["--memory", "memristor"], "sigma_c"),
                                         (["--memory", "memristor", "--noise", "additive"], "sigma")])
def test_curve_sweeps_the_memorys_own_knob_by_default(flags, knob, tmp_path, capsys):
    assert main(["curve", *flags, "--values", "0.0", "--draws", "2", "--json", "--quiet", "--cache-dir",
                 str(tmp_path)]) == 0
    out = one_json(capsys.readouterr().out)
    assert out["knob"] == knob and out["values"] == [0.0]


def test_curve_of_the_ideal_memory_is_refused(tmp_path, capsys):
    assert main(["curve", "--memory", "ideal", "--cache-dir", str(tmp_path)]) == 2
    assert "--memory ideal has no noise knob" in capsys.readouterr().err
