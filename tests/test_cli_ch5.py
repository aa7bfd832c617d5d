"""The chapter-5 command line: ``--method``, ``--adabs``, ``workbench sharpness`` and ``workbench drift``."""

from __future__ import annotations

import json

import pytest

from workbench.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = ["--preset", "digits-cnn-small", "--set", "epochs=3"]


def _json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


def test_method_applies_the_thesis_settings_and_set_overrides_them(tmp_path, capsys):
    assert main(["train", *SMALL, "--method", "samson2+clip", "--set", "rho=0.7", "--json", "--quiet",
                 "--cache-dir", str(tmp_path)]) == 0
    cfg = _json(capsys)["config"]
    assert (cfg["sam"], cfg["rho"], cfg["clip"], cfg["width"]) == ("samson2", 0.7, 0.2, 0.25)
    assert main(["train", *SMALL, "--method", "adamw", "--quiet", "--cache-dir", str(tmp_path)]) == 2
    assert "method='adamw'" in capsys.readouterr().err
    assert main(["train", *SMALL, "--method", "sgd", "--set", "rho=0.5", "--quiet", "--cache-dir", str(tmp_path)]) == 2
    assert "rho=0.5" in capsys.readouterr().err


def test_adabs_is_its_own_cached_evaluation(tmp_path, capsys):
    base = ["evaluate", *SMALL, "--memory", "memristor", "--sigma-c", "0.3", "--draws", "4", "--json", "--quiet",
            "--cache-dir", str(tmp_path)]
    assert main(base) == 0
    plain = _json(capsys)
    assert main([*base, "--adabs"]) == 0
    ada = _json(capsys)
    assert plain["cache_key"] != ada["cache_key"]
    assert plain["clean_accuracy"] == ada["clean_accuracy"]
    # same draws (same seed), batch-norm statistics re-estimated on the noisy network: a different,
    # and at σ_c = 0.3 better, accuracy (thesis §5.2: AdaBS recovers part of what noise costs)
    assert ada["accuracy_mean"] > plain["accuracy_mean"], (plain["accuracy_mean"], ada["accuracy_mean"])


def test_sharpness_command_reports_every_definition_and_the_robustness_gap(tmp_path, capsys):
    assert main(["sharpness", *SMALL, "--method", "sam", "--draws", "3", "--m", "256", "--json", "--quiet",
                 "--cache-dir", str(tmp_path)]) == 0
    out = _json(capsys)
    assert set(out["m_sharpness"]) == {"sam", "asam", "samson2", "samsoninf"}
    assert all(v > 0 for v in out["m_sharpness"].values())
    acc = out["accuracy"]
    assert out["robustness"] == pytest.approx(acc["sigma_c=0"] - acc["sigma_c=0.4"])
    assert main(["sharpness", *SMALL, "--rho", "-1", "--quiet", "--cache-dir", str(tmp_path)]) == 2
    assert "rho" in capsys.readouterr().err


def test_drift_command_reads_the_pcm_model_at_each_time(tmp_path, capsys):
    assert main(["drift", *SMALL, "--times", "1", "86400", "--draws", "2", "--json", "--quiet",
                 "--cache-dir", str(tmp_path)]) == 0
    out = _json(capsys)
    assert out["times_s"] == [1.0, 86400.0] and out["labels"] == ["1 s", "1 day"]
    assert all(0.0 <= a <= 1.0 for a in out["accuracy_mean"])
    assert main(["drift", *SMALL, "--times", "0", "--quiet", "--cache-dir", str(tmp_path)]) == 2
    assert "times" in capsys.readouterr().err


@pytest.mark.parametrize("level", ["0", "-0.1", "1.5", "nan"])
def test_sharpness_refuses_a_robustness_level_that_is_not_above_zero(level, tmp_path, capsys):
    # σ_c = 0 would compare the clean accuracy with itself: robustness 0.0 and a single dict key
    from workbench.experiments import Store
    assert main(["sharpness", *SMALL, "--sigma-c", level, "--draws", "2", "--json", "--quiet",
                 "--cache-dir", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and err.startswith("workbench: error:")
    assert "sigma_c=" in err and "(0, 1]" in err, err
    assert Store(tmp_path, read_only=[]).entries() == []


def test_make_sam_optimizer_refuses_momentum_outside_train_configs_range():
    # the optimizers of ch. 5 take TrainConfig.momentum's range [0, 1), for every method and base
    import torch

    from workbench.hardware import KnobError
    from workbench.training import make_sam_optimizer
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    for name in ("sgd", "sam", "asam"):
        for base in ("sgd", "adam"):
            for bad in (5, 1.0, -0.1, float("nan")):
                with pytest.raises(KnobError, match=r"momentum=.* momentum must be in \[0, 1\)"):
                    make_sam_optimizer(name, net, base, momentum=bad)
    assert make_sam_optimizer("sam", net, momentum=0.99).base_optimizer.param_groups[0]["momentum"] == 0.99
    assert make_sam_optimizer("sgd", net, momentum=0.0).param_groups[0]["momentum"] == 0.0
