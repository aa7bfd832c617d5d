"""The training recipe: every knob bounded, so the CLI, the UI and Python all validate the same way."""

from __future__ import annotations

import json
from typing import Any, Mapping

import param

from ..hardware.base import plain_values, set_knobs
from ..knobs import KnobError


class TrainConfig(param.Parameterized):
    """A complete, hashable description of one training run (data, model, recipe, noise, seed)."""

    dataset = param.Selector(default="digits",
                             objects=["digits", "cifar10", "cifar100", "mnist", "fashion_mnist", "imagenet"],
                             doc="dataset name (digits is embedded, no download)")
    model = param.Selector(default="small_cnn", objects=["small_cnn", "vgg11", "vgg13", "vgg16", "wrn", "resnet18",
                                                        "mobilenet_v2", "resnet18_imagenet"],
                           doc="network architecture")
    width = param.Number(1.0, bounds=(0.0625, 16.0), doc="channel-width multiplier")
    depth = param.Integer(28, bounds=(10, 100), doc="WideResNet depth (6n+4)")
    k = param.Number(10.0, bounds=(1.0, 20.0), doc="WideResNet widening factor")
    binary = param.Boolean(False, doc="BinaryConnect: sign-binarized conv/linear weights (ζ = 1)")
    epochs = param.Integer(40, bounds=(1, 1000), doc="training epochs")
    batch_size = param.Integer(64, bounds=(1, 65536), doc="minibatch size")
    optimizer = param.Selector(default="sgd", objects=["sgd", "adam"], doc="base optimizer")
    sam = param.Selector(default="none", objects=["none", "sam", "asam", "samson2", "samsoninf"],
                         doc="sharpness-aware wrapper of the base optimizer (eq 3.22-3.26, 5.1-5.3); none = plain")
    rho = param.Number(None, allow_None=True, bounds=(0.0, 10.0), inclusive_bounds=(False, True),
                       doc="neighbourhood size ρ of SAM/ASAM/SAMSON (None = the method's default)")
    lr = param.Number(0.05, bounds=(0.0, 10.0), inclusive_bounds=(False, True), doc="learning rate")
    momentum = param.Number(0.9, bounds=(0.0, 1.0), inclusive_bounds=(True, False), doc="SGD momentum")
    nesterov = param.Boolean(True, doc="Nesterov momentum (SGD)")
    weight_decay = param.Number(5e-4, bounds=(0.0, 1.0), doc="L2 weight decay")
    schedule = param.Selector(default="cosine", objects=["cosine", "step", "constant"], doc="learning-rate schedule")
    step_every = param.Integer(60, bounds=(1, 10000), doc="epochs between ÷gamma steps (schedule='step')")
    gamma = param.Number(0.1, bounds=(0.0, 1.0), inclusive_bounds=(False, True), doc="step-schedule factor")
    clip = param.Number(0.0, bounds=(0.0, 10.0), doc="aggressive weight clipping c after each step (0 = off, eq 3.18)")
    clip_std = param.Number(
        0.0,
        bounds=(0.0, 10.0),
        doc="clip each layer to ±α·std(W_l) after each step (α; 0 = off; noise-injection baseline, §5.4.1)",
    )
    augment = param.Boolean(False, doc="random crop + flip (CIFAR)")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="seed of initialisation, shuffling and noise")
    init_weights = param.String(None, allow_None=True,
                                doc="state-dict file to start from (fine-tuning); a local path, never downloaded")
    train_memory = param.Dict(default=None, allow_None=True,
                              doc="memory map used during training (hardware-aware noise), as MemoryMap.to_dict()")
    user_model = param.String(None, allow_None=True,
                              doc="your network instead of `model`: path/file.py:factory, package.module:factory or "
                                  "a name registered under workbench.models (workbench.nn.external)")
    model_args = param.Dict(default={}, doc="keyword arguments of the user_model factory")
    data = param.String(None, allow_None=True,
                        doc="your data instead of `dataset`: a .npz, a folder of class folders or module:factory "
                            "(workbench.userdata)")
    digital = param.List(default=[], item_type=str,
                         doc="layers of user_model kept in reliable digital memory on purpose (no energy, no power)")
    sources = param.Dict(default=None, allow_None=True, precedence=-1,
                         doc="SHA-256 of the user's model file, initial weights and data: part of the cache key")

    #: knobs a config leaves out of its dict (hence of its cache key) at their defaults, so that
    #: the keys of every network trained before they existed stay the same
    OPTIONAL = {"user_model": None, "model_args": {}, "data": None, "digital": [], "sources": None}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in plain_values(self).items() if not (k in self.OPTIONAL and v == self.OPTIONAL[k])}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        if not isinstance(d, Mapping):
            raise KnobError(f"a training config must be a mapping knob -> value, got {type(d).__name__} {d!r}")
        cfg = cls()
        set_knobs(cfg, **d)
        cfg.check()
        return cfg

    def check(self) -> "TrainConfig":
        """Cross-knob consistency (each knob's own range is checked when it is set)."""
        if self.sam == "none" and self.rho is not None:
            raise KnobError(f"rho={self.rho} only applies to a sharpness-aware optimizer: set sam to one of "
                            "'sam', 'asam', 'samson2', 'samsoninf' (or rho=None)")
        if self.model == "wrn" and (self.depth - 4) % 6:
            raise KnobError(f"depth={self.depth} is out of range: a WideResNet's depth must be 6n+4 in [10, 100] "
                            "(10, 16, 22, 28, ...)")
        if self.user_model or self.data:
            self._record_sources()
        elif self.model_args or self.digital:
            raise KnobError("model_args and digital apply to user_model: set user_model (or leave them empty)")
        if self.train_memory:
            from ..hardware import memory_map_from_dict
            try:
                memory_map_from_dict(self.train_memory)
            except KnobError as exc:
                raise KnobError(f"train_memory: {exc}") from None
            except (TypeError, AttributeError, ValueError) as exc:
                raise KnobError(
                    f"train_memory={self.train_memory!r} is not a memory map "
                    f"({{'default': {{'technology': ..., knob: value}}, 'overrides': {{layer: ...}}}}): {exc}"
                ) from None
        return self

    def _record_sources(self) -> None:
        """The digests of what the user's files hold (a changed file is another network)."""
        from ..nn.external import model_digest
        from ..userdata import data_digest
        sources = {}
        if self.user_model:
            sources["model"] = model_digest(self.user_model, self.init_weights)
        if self.data:
            sources["data"] = data_digest(self.data)
        with param.parameterized.discard_events(self):
            self.sources = sources

    def replace(self, **changes: Any) -> "TrainConfig":
        d = self.to_dict()
        d.update(changes)
        return type(self).from_dict(d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a CLI ``key=value`` (value as JSON when it parses, else a string)."""
    if "=" not in text:
        raise KnobError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value
