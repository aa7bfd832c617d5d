"""Torch's and numpy's global random generators, shared by every thread of a process.

A served workbench runs several sessions' jobs in one process.  Code that draws from the global
generators — a seeded network initialisation (its weights are cached under the seed), the
throw-away initialisation of a layer built only to be overwritten, aihwkit's tiles — holds
:data:`GLOBAL_RNG` while it does, so no other thread's draws land between a ``manual_seed`` and
the draws it fixes.  Everything else in the workbench draws from its own ``torch.Generator``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import torch

#: held while the global generators are seeded and drawn from (re-entrant: a seeded block may
#: build layers that take it again)
GLOBAL_RNG = threading.RLock()


@contextmanager
def seeded(seed: int):
    """Seed torch's and numpy's global generators with ``seed`` and hold them for the block: a
    network built inside gets the initial weights of ``seed`` whatever other threads do.  The
    generators stay seeded afterwards, as ``torch.manual_seed`` leaves them."""
    with GLOBAL_RNG:
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        yield


@contextmanager
def private_draws():
    """Hold the global generators for draws whose values do not matter (layers initialised only to
    be overwritten) or that are seeded inside: torch's state is restored afterwards
    (``torch.random.fork_rng``), so the caller's random state is untouched."""
    with GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        yield


__all__ = ["GLOBAL_RNG", "private_draws", "seeded"]
