"""Your own network: a factory named on the command line or registered by a package, its weights
from a state-dict file, converted to noisy layers like every built-in model.

A model spec is one of

* ``path/to/file.py:factory`` — a Python file of the user's, imported from its path;
* ``package.module:factory`` — an importable callable;
* a name registered by an installed package under the entry-point group ``workbench.models``
  (``[project.entry-points."workbench.models"] mynet = "mypkg.nets:mynet"``);
* ``exported:DIR`` — a network searched by ``workbench nas --export DIR`` (architecture.json,
  weights.pt with batch norm folded, metadata.json with its per-layer ``g_u``): rebuilt by
  :mod:`workbench.nn.exported` from plain JSON and tensors, with its exported weights, without
  the supernet.  Its per-layer ``g_u`` (µS) are the crossbar mapping it was searched for
  (eq 3.33–3.36, one ``g_u`` per layer): :func:`exported_memory_overrides` turns them into the
  ``overrides`` of a memristor memory map.

The factory is called with the data's shape where its signature names it (``in_channels``,
``num_classes``, ``image_size``; a factory taking only ``**kwargs``, as torchvision's do, gets
``num_classes``) and the user's ``model_args``; it returns an ``nn.Module``.  Running a
factory runs the user's code: only the CLI, notebooks and sweep specs on the user's own machine
name one; a served page offers registered names only, and never a path (``WORKBENCH_SHARED``).

Weights load with ``torch.load(weights_only=True)``: a file that is not a plain state dict (a
pickled object, a whole model) is refused, never unpickled; a key mismatch names the missing and
unexpected keys.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import pickle
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from ..knobs import KnobError
from ..plugins import MODEL_GROUP, registered
from ..rng import GLOBAL_RNG

__all__ = ["EXPORTED_PREFIX", "build_user_model", "exported_dir",
           "exported_memory_overrides", "load_factory", "load_weights", "model_digest", "registered"]

#: a model spec ``exported:DIR`` names a network written by ``workbench nas --export DIR``
EXPORTED_PREFIX = "exported:"


def exported_dir(spec: str | None) -> Path | None:
    """The directory of an ``exported:DIR`` spec (checked to hold the exported files), else None."""
    if not isinstance(spec, str) or not spec.strip().startswith(EXPORTED_PREFIX):
        return None
    from .exported import check_export_dir
    where = spec.strip()[len(EXPORTED_PREFIX):]
    if not where:
        raise KnobError("model='exported:' names no directory: use exported:DIR (written by workbench nas "
                        "--export DIR)")
    return check_export_dir(where)


def _exported_factory(directory: Path) -> Callable[..., nn.Module]:
    """A factory returning the exported network with its weights; the data's shape must fit it."""
    from .exported import load_exported

    def exported(in_channels: int | None = None, num_classes: int | None = None, image_size: int | None = None):
        net, _ = load_exported(directory)
        arch = net.architecture
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes)):
            if value is not None and value != arch[name]:
                raise KnobError(f"model=exported:{directory} takes {name}={arch[name]}, the data has {value}")
        return net

    return exported


def exported_memory_overrides(spec: str, default: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-layer memories of an ``exported:DIR`` network: the memristor memory ``default`` (a
    :meth:`~workbench.hardware.base.Memory.knobs` dict: noise, σ, g_min, …) with each layer's
    exported ``g_u`` (µS), ``g_max`` raised where that ``g_u`` needs it (``g_u ≤ g_max``, the
    domain of eq 6.2 reaches 1.5·g_u^d).  The conductance mapping stays eq 3.33–3.36.  Returns
    the ``overrides`` of a :meth:`~workbench.hardware.base.MemoryMap.to_dict`."""
    from .exported import read_metadata
    d = exported_dir(spec)
    if d is None:
        raise KnobError(f"model={spec!r} is not an exported network (exported:DIR)")
    if default.get("technology") != "memristor":
        raise KnobError(f"the exported per-layer g_u are memristor conductances: use a memristor memory, "
                        f"not {default.get('technology')!r}")
    meta = read_metadata(d)
    layers = meta.get("memory") or {}
    out = {}
    for name, g_u in meta["g_u"].items():
        g_max = max(float(default.get("g_max", g_u)), float(g_u), float((layers.get(name) or {}).get("g_max", 0.0)))
        out[name] = {**default, "g_u": float(g_u), "g_max": g_max}
    return out


def load_factory(spec: str, group: str = MODEL_GROUP) -> Callable[..., Any]:
    """The callable ``spec`` names (a registered name, ``file.py:factory``, ``module:factory`` or
    ``exported:DIR``)."""
    spec = str(spec).strip()
    directory = exported_dir(spec) if group == MODEL_GROUP else None
    if directory is not None:
        return _exported_factory(directory)
    names = registered(group)
    if spec in names:
        spec = names[spec]
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        known = f" (registered: {', '.join(sorted(names))})" if names else ""
        raise KnobError(f"model={spec!r} is not valid: a model is a built-in name, a registered name{known}, "
                        "path/to/file.py:factory, package.module:factory or exported:DIR")
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise KnobError(f"model={spec!r}: no such file {path}")
        mod_name = f"workbench_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        loader = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[mod_name] = module
        loader.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise KnobError(f"model={spec!r}: cannot import {where!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise KnobError(f"model={spec!r}: {where} has no callable {attr!r}")
    return factory


def build_user_model(spec: str, model_args: Mapping[str, Any] | None = None, *, in_channels: int | None = None,
                     num_classes: int | None = None, image_size: int | None = None, binary: bool = False,
                     digital: tuple[str, ...] = ()) -> nn.Module:
    """The network ``spec`` builds, its conv/linear layers made noisy (:func:`~.models.to_noisy`).
    An ``exported:DIR`` network comes with its exported weights (batch norm folded)."""
    from .models import to_noisy
    factory = load_factory(spec)
    args = dict(model_args or {})
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("image_size", image_size)):
        # a factory taking **kwargs (torchvision's, timm's) gets num_classes only: the one they all take
        if value is not None and name not in args and (name in accepted or (takes_any and name == "num_classes")):
            args[name] = value
    try:
        with GLOBAL_RNG:    # its initialisation draws from torch's global generator (workbench.rng)
            model = factory(**args)
    except TypeError as exc:
        raise KnobError(f"model={spec!r} does not take these arguments {sorted(args)}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise KnobError(f"model={spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    with GLOBAL_RNG:
        return to_noisy(model, binary=binary, digital=digital)


def load_weights(model: nn.Module, path: str | Path, knob: str = "--weights") -> nn.Module:
    """Load the state dict in ``path`` into ``model`` (strict), never unpickling anything else;
    a plain state dict or one under ``"state_dict"`` (the store's weight files).  ``knob`` is how
    the refusals name the file's setting (``--weights``, ``init_weights``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise KnobError(f"{knob} {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KnobError(f"{knob} {path} is not a plain state dict of tensors (it is read with "
                        f"weights_only=True, so nothing else is unpickled): {first}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise KnobError(f"{knob} {path} holds a {type(state).__name__}, not a state dict (name -> tensor)")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        def words(keys):
            return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        shaped = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
        parts = (f"missing keys: {words(missing)}" if missing else "",
                 f"unexpected keys: {words(unexpected)}" if unexpected else "",
                 f"other shapes: {words(shaped)}" if shaped else "")
        raise KnobError(f"{knob} {path} does not fit the model: " + "; ".join(p for p in parts if p))
    try:
        model.load_state_dict(state)
    except ValueError as exc:             # a model's own pre-hook naming the mismatched tensors
        raise KnobError(f"{knob} {path}: {exc}") from None
    except RuntimeError:
        shapes = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
        k = shapes[0]
        raise KnobError(f"{knob} {path} does not fit the model: {k} has shape {tuple(state[k].shape)}, the "
                        f"model's {tuple(own[k].shape)}" + (f" ({len(shapes) - 1} more)" if len(shapes) > 1 else "")
                        ) from None
    return model


def model_digest(spec: str, weights: str | Path | None = None) -> str:
    """SHA-256 of what defines a user's model: the spec, the factory's file when it is one (the
    three exported files of ``exported:DIR``), and the weights file; part of its results' cache
    key (provenance, as a preset's name is)."""
    h = hashlib.sha256(str(spec).encode())
    where = str(spec).rpartition(":")[0]
    directory = exported_dir(spec)
    if directory is not None:
        from .exported import ARCHITECTURE_FILE, METADATA_FILE, WEIGHTS_FILE
        for name in (ARCHITECTURE_FILE, WEIGHTS_FILE, METADATA_FILE):
            h.update(name.encode())
            h.update((directory / name).read_bytes())
    elif where.endswith(".py") and Path(where).expanduser().is_file():
        h.update(Path(where).expanduser().read_bytes())
    if weights is not None:
        h.update(Path(weights).expanduser().read_bytes())
    return h.hexdigest()
