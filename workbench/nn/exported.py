"""A searched network, standalone: the residual bottleneck network a NAS subnet is exported to.

:func:`workbench.nas.export.export_subnet` writes a directory holding

* ``architecture.json`` — the layout below (plain JSON, rebuilt here without the supernet);
* ``weights.pt`` — a plain state dict of tensors, batch norm already folded into the convs
  (deployment, thesis §3.3.2: ``W' = W·γ/σ``, ``b' = β − γμ/σ``), so every conv has a bias and
  no batch norm is left;
* ``metadata.json`` — the per-layer ``g_u`` (µS) of the searched point, its measured accuracy and
  power with their confidence intervals, and where it came from.

The network (:class:`BottleneckNet`) is plain torch (``nn.Conv2d``, ``nn.Linear``): a 3×3 stem,
stages of bottleneck blocks ``1×1 → 3×3 (stride) → 1×1`` with a 1×1 projection shortcut on a
stage's first block, global average pooling and a linear head (the OFA-ResNet construction of
§6.2.1).  Its modules carry the supernet's layer names (``stem.conv``, ``stages.0.0.conv1.conv``,
…, ``head``), so the exported ``g_u`` map onto the layers by name and
:func:`~workbench.nn.models.to_noisy` makes its conv/linear layers noisy like any user network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..knobs import KnobError

__all__ = ["ARCHITECTURE_FILE", "EXPORT_FORMAT", "METADATA_FILE", "WEIGHTS_FILE", "BottleneckNet",
           "check_export_dir", "load_exported", "read_architecture", "read_metadata"]

EXPORT_FORMAT = "workbench-bottleneck-net"
EXPORT_VERSION = 1
ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "metadata.json"


class ConvUnit(nn.Module):
    """One conv (batch norm folded into its weight and bias); ``.conv`` keeps the supernet's names."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=True)

    def forward(self, x):
        return self.conv(x)


class Block(nn.Module):
    """Residual bottleneck ``1×1 → 3×3 (stride) → 1×1`` plus the identity or a 1×1 projection."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, shortcut: bool):
        super().__init__()
        self.conv1 = ConvUnit(cin, mid, 1)
        self.conv2 = ConvUnit(mid, mid, 3, stride)
        self.conv3 = ConvUnit(mid, cout, 1)
        self.shortcut = ConvUnit(cin, cout, 1, stride) if shortcut else None

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        h = self.conv3(h)
        return F.relu(h + (self.shortcut(x) if self.shortcut is not None else x))


class BottleneckNet(nn.Module):
    """The standalone network described by an ``architecture.json`` dict (see :func:`read_architecture`)."""

    def __init__(self, architecture: dict[str, Any]):
        super().__init__()
        a = check_architecture(architecture)
        self.architecture = a
        stem = a["stem"]
        self.stem = ConvUnit(a["in_channels"], stem["out"], stem["kernel"], stem["stride"])
        self.stages = nn.ModuleList([
            nn.ModuleList([Block(b["in"], b["mid"], b["out"], b["stride"], b["shortcut"]) for b in blocks])
            for blocks in a["stages"]])
        self.head = nn.Linear(a["head"]["in"], a["num_classes"])

    def forward(self, x):
        h = F.relu(self.stem(x))
        for blocks in self.stages:
            for blk in blocks:
                h = blk(h)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def _bad(what: str) -> KnobError:
    return KnobError(f"{ARCHITECTURE_FILE}: {what}")


def _pos_int(d: dict, key: str, where: str) -> int:
    v = d.get(key) if isinstance(d, dict) else None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _bad(f"{where}.{key} must be a positive integer, got {v!r}")
    return v


def check_architecture(a: Any) -> dict[str, Any]:
    """``a`` if it describes a :class:`BottleneckNet` whose channels chain up, else a :class:`KnobError`
    naming the entry that does not fit."""
    if not isinstance(a, dict):
        raise _bad(f"must be a JSON object, got {type(a).__name__}")
    if a.get("format") != EXPORT_FORMAT:
        raise _bad(f"format={a.get('format')!r} is not {EXPORT_FORMAT!r} (not a network exported by workbench nas "
                   "--export)")
    if a.get("version") != EXPORT_VERSION:
        raise _bad(f"version={a.get('version')!r}: this workbench reads version {EXPORT_VERSION}")
    _pos_int(a, "in_channels", "architecture")
    _pos_int(a, "num_classes", "architecture")
    stem = a.get("stem")
    c = _pos_int(stem, "out", "stem")
    _pos_int(stem, "kernel", "stem")
    _pos_int(stem, "stride", "stem")
    stages = a.get("stages")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, list) and s for s in stages):
        raise _bad("stages must be a non-empty list of non-empty lists of blocks")
    for i, blocks in enumerate(stages):
        for j, b in enumerate(blocks):
            where = f"stages[{i}][{j}]"
            if _pos_int(b, "in", where) != c:
                raise _bad(f"{where}.in={b['in']} does not match the {c} channels before it")
            _pos_int(b, "mid", where)
            out = _pos_int(b, "out", where)
            _pos_int(b, "stride", where)
            if not isinstance(b.get("shortcut"), bool):
                raise _bad(f"{where}.shortcut must be true or false")
            if not b["shortcut"] and (b["in"] != out or b["stride"] != 1):
                raise _bad(f"{where} changes shape (in {b['in']}, out {out}, stride {b['stride']}) without a shortcut")
            c = out
    if _pos_int(a.get("head"), "in", "head") != c:
        raise _bad(f"head.in={a['head']['in']} does not match the {c} channels of the last block")
    return a


def check_export_dir(path: str | Path) -> Path:
    """``path`` as a directory holding the three exported files, else a :class:`KnobError` naming what is missing."""
    d = Path(path).expanduser()
    if not d.is_dir():
        raise KnobError(f"model=exported:{path}: no such directory (write one with workbench nas --export DIR)")
    missing = [n for n in (ARCHITECTURE_FILE, WEIGHTS_FILE, METADATA_FILE) if not (d / n).is_file()]
    if missing:
        raise KnobError(f"model=exported:{path} lacks {', '.join(missing)}: an exported network holds "
                        f"{ARCHITECTURE_FILE}, {WEIGHTS_FILE} and {METADATA_FILE}")
    return d


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KnobError(f"{path} is not valid JSON: {exc}") from None


def read_architecture(path: str | Path) -> dict[str, Any]:
    """The checked ``architecture.json`` of the exported directory ``path``."""
    d = check_export_dir(path)
    return check_architecture(_read_json(d / ARCHITECTURE_FILE))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``metadata.json`` of the exported directory ``path``; its ``g_u`` (µS, one positive
    number per crossbar layer) checked."""
    d = check_export_dir(path)
    meta = _read_json(d / METADATA_FILE)
    g_u = meta.get("g_u") if isinstance(meta, dict) else None
    if not isinstance(g_u, dict) or not g_u or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in g_u.values()):
        raise KnobError(f"{d / METADATA_FILE}: g_u must map every crossbar layer to a positive conductance (µS)")
    return meta


def load_exported(path: str | Path) -> tuple[nn.Module, dict[str, float]]:
    """The exported network of directory ``path`` (plain torch layers, eval mode, weights read with
    ``weights_only=True``) and its per-layer ``g_u`` (µS).  The supernet is never imported."""
    from .external import load_weights
    from .layers import noisy_layers
    from .models import to_noisy
    d = check_export_dir(path)
    net = BottleneckNet(read_architecture(d))
    load_weights(net, d / WEIGHTS_FILE, knob="exported weights")
    g_u = {str(k): float(v) for k, v in read_metadata(d)["g_u"].items()}
    # the g_u must name exactly the crossbar layers of the rebuilt network
    layers = set(noisy_layers(to_noisy(BottleneckNet(net.architecture))))
    if set(g_u) != layers:
        raise KnobError(f"{d / METADATA_FILE}: g_u names layers {sorted(set(g_u) - layers)} not in the network and "
                        f"lacks {sorted(layers - set(g_u))}")
    return net.eval(), g_u
