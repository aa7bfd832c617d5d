"""Cache keys: one hash of a complete spec, shared by the store and every cached computation.

A key is the sha256 of the canonical JSON of ``{kind, spec, code}`` (STYLE §9): keys sorted, no
whitespace, so two equal specs give one key whatever their order.  This module sits at the bottom
of the layers (it imports only the package version), so ``nas`` and ``experiments`` share it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import __version__

__all__ = ["CODE_VERSION", "canonical", "spec_key"]

#: bump when a change alters computed results, so old cache entries are not reused
CODE_VERSION = f"{__version__}+r2"


def canonical(obj: Any) -> str:
    """The JSON text a key hashes: sorted keys, no whitespace, ``str`` for anything else."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def spec_key(kind: str, spec: dict, code_version: str | None = None) -> str:
    """Hash of the complete spec plus the code version (STYLE §9; default: the current ``CODE_VERSION``)."""
    code = CODE_VERSION if code_version is None else code_version
    return hashlib.sha256(canonical({"kind": kind, "spec": spec, "code": code}).encode()).hexdigest()[:24]
