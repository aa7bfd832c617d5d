"""Networks and data sets installed packages register (``importlib.metadata`` entry points).

A package adds names under two groups in its ``pyproject.toml``::

    [project.entry-points."workbench.models"]
    mynet = "mypkg.nets:mynet"          # a factory returning an nn.Module
    [project.entry-points."workbench.datasets"]
    mydata = "mypkg.data:mydata"        # a factory returning (train_dataset, test_dataset)

Registered names work wherever a preset or a data set name works: the CLI's ``--model`` /
``--data``, sweep specs and the playground's picker.  On a shared server they are the only networks
and data a visitor can name (the administrator installed that code; a visitor never sends any).
Bottom layer: importable by every other.
"""

from __future__ import annotations

import importlib.metadata

__all__ = ["DATA_GROUP", "MODEL_GROUP", "registered"]

MODEL_GROUP = "workbench.models"
DATA_GROUP = "workbench.datasets"


def registered(group: str = MODEL_GROUP) -> dict[str, str]:
    """Names installed packages register under ``group``: name -> ``module:attribute``."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=group)}
