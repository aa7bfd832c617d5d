"""The results shipped in ``data/store``: the playground opens on them with no computation.

Regenerate with ``workbench precompute`` (writes ``data/store``); the app names this command.
"""

from __future__ import annotations

from typing import Callable

from .core import CURVE_GRIDS, PRESET_FOR_TECHNOLOGY, noise_curve, preset_config, train_model
from .store import Store

REGENERATE_COMMAND = "workbench precompute"
PLAYGROUND_DRAWS = 20
#: (technology, swept knob, base memory) of every curve the playground shows
PLAYGROUND_CURVES = [
    ("sram", "p", {"technology": "sram", "p": 0.0, "bits": 1}),
    ("memristor", "sigma_c", {"technology": "memristor", "noise": "multiplicative", "sigma_c": 0.0}),
    ("memristor", "sigma", {"technology": "memristor", "noise": "additive", "sigma": 0.0}),
    ("memristor", "g_u", {"technology": "memristor", "noise": "additive", "sigma": 0.94}),
]


def precompute(store: Store, device: str = "auto", progress: Callable[[dict], None] | None = None) -> dict:
    """Train the default networks and compute the playground's curves into ``store``."""
    done = {}
    for i, (tech, knob, base) in enumerate(PLAYGROUND_CURVES):
        cfg = preset_config(PRESET_FOR_TECHNOLOGY[tech])
        tr = train_model(cfg, store, device=device)
        from ..hardware import memory_from_dict
        mem = {"default": memory_from_dict(base).knobs(), "overrides": {}}
        ds = noise_curve(cfg, mem, knob, CURVE_GRIDS[knob], draws=PLAYGROUND_DRAWS, store=store, device=device)
        done[f"{tech}:{knob}"] = {
            "clean_accuracy": tr.test_accuracy,
            "accuracy_mean": ds.accuracy_mean.values.round(4).tolist(),
        }
        if progress:
            progress({"cell": i + 1, "cells": len(PLAYGROUND_CURVES)})
    return {"store": str(store.root), "curves": done, "command": REGENERATE_COMMAND}
