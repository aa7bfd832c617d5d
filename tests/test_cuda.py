"""CUDA-only checks (skipped without a GPU; ``scripts/gpu_check.sh`` runs them on one): a
hardware-aware training and a Monte-Carlo evaluation on the GPU agree with the CPU's in law."""

from __future__ import annotations

import pytest
import torch

from workbench.experiments.core import preset_config
from workbench.experiments.core import test_tensors as digits_tensors
from workbench.hardware import SRAMMemory
from workbench.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_hardware_aware_training_learns_and_returns_a_cpu_model():
    mem = {"default": SRAMMemory(p=1e-3, bits=1).knobs(), "overrides": {}}
    res = train(preset_config("digits-cnn", epochs=3, seed=0, train_memory=mem), device="cuda")
    assert next(res.model.parameters()).device.type == "cpu"
    assert res.test_accuracy > 0.8


def test_cuda_monte_carlo_matches_the_cpu_within_its_confidence_interval():
    from workbench.analysis.montecarlo import mc_evaluate
    cfg = preset_config("digits-cnn", epochs=3, seed=0)
    model = train(cfg, device="cpu").model
    x, y = digits_tensors(cfg)
    runs = {dev: mc_evaluate(model, x, y, SRAMMemory(p=0.02, bits=1), draws=200, seed=0, device=dev)
            for dev in ("cpu", "cuda")}
    cpu, gpu = (runs[d].accuracy.values for d in ("cpu", "cuda"))
    # different generators, same law: the two means differ by less than 4 standard errors
    se = (cpu.var(ddof=1) / len(cpu) + gpu.var(ddof=1) / len(gpu)) ** 0.5
    assert abs(cpu.mean() - gpu.mean()) < 4 * se + 1e-9
