"""The training loop: SGD/Adam, schedules, weight decay, hardware-aware noise, clipping, seeds,
progress callback and cancellation."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..datasets import DataBundle, load_dataset
from ..device import resolve_device
from ..hardware import memory_map_from_dict
from ..nn import build_model, clip_weights_, set_generator, set_memory
from ..rng import seeded
from .config import TrainConfig


class Cancelled(RuntimeError):
    """Raised inside a run when its cancel event is set."""


ProgressFn = Callable[[dict], None]


@dataclass
class TrainResult:
    model: nn.Module
    history: dict[str, list[float]] = field(default_factory=dict)
    test_accuracy: float = float("nan")
    train_seconds: float = 0.0
    device: str = "cpu"


def make_model(cfg: TrainConfig, data: DataBundle) -> nn.Module:
    """The network of ``cfg`` for ``data``'s shape: a built-in ``model``, or the user's ``user_model``."""
    if cfg.user_model:
        from ..nn.external import build_user_model
        return build_user_model(cfg.user_model, cfg.model_args, in_channels=data.in_channels,
                                num_classes=data.num_classes, image_size=data.image_size, binary=cfg.binary,
                                digital=tuple(cfg.digital))
    return build_model(cfg.model, in_channels=data.in_channels, num_classes=data.num_classes,
                       image_size=data.image_size, width=cfg.width, binary=cfg.binary, depth=cfg.depth, k=cfg.k)


def data_for(cfg: TrainConfig, data_root: str | None = None, augment: bool | None = None) -> DataBundle:
    """The data of ``cfg``: the user's ``data`` (its split seeded 0, whatever the training seed) or
    the named ``dataset`` (from ``data_root``)."""
    if cfg.data:
        from ..userdata import load_user_data
        return load_user_data(cfg.data)
    return load_dataset(cfg.dataset, data_root, augment=cfg.augment if augment is None else augment)


class Batches:
    """Minibatches of a dataset on ``device``: in-memory tensors (fast path, shuffled by a seeded
    generator) or a DataLoader.  Shared by every training loop of the project."""

    def __init__(self, ds, batch_size: int, shuffle: bool, device: torch.device, seed: int):
        self.batch_size, self.shuffle, self.device = batch_size, shuffle, device
        self.gen = torch.Generator().manual_seed(seed)
        self.tensors = None
        if isinstance(ds, torch.utils.data.TensorDataset):
            self.tensors = tuple(t.to(device) for t in ds.tensors)
            self.n = len(self.tensors[0])
        else:
            self.loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=self.gen,
                                                      num_workers=0, pin_memory=device.type == "cuda")
            self.n = len(ds)

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        if self.tensors is None:
            for x, y in self.loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        idx = (
            torch.randperm(self.n, generator=self.gen).to(self.device)
            if self.shuffle
            else torch.arange(self.n, device=self.device)
        )
        for i in range(0, self.n, self.batch_size):
            j = idx[i:i + self.batch_size]
            yield self.tensors[0][j], self.tensors[1][j]


@torch.no_grad()
def accuracy(model: nn.Module, ds, device: torch.device, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``ds`` (one pass; noisy layers draw their own noise)."""
    model.eval()
    correct = total = 0
    for x, y in Batches(ds, batch_size, False, device, 0):
        correct += (model(x).argmax(1) == y).sum().item()
        total += y.numel()
    return correct / max(total, 1)


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """The base optimizer of ``cfg`` (SGD or Adam), wrapped in SAM/ASAM/SAMSON when ``cfg.sam``
    is set (pass the model itself then: ASAM and SAMSON need parameter names, and the wrapper
    freezes the batch-norm running statistics during its second pass)."""
    if cfg.sam != "none":
        if not isinstance(params, nn.Module):
            raise TypeError("a sharpness-aware optimizer needs the model (parameter names), not a parameter list")
        from .sam import make_sam_optimizer
        return make_sam_optimizer(cfg.sam, params, cfg.optimizer, rho=cfg.rho, lr=cfg.lr, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def cosine_schedule(opt: torch.optim.Optimizer, total_steps: int):
    """Learning rate ``lr · (1 + cos(π t / T)) / 2`` at step ``t`` of ``T = total_steps`` (0 after)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    if cfg.schedule == "cosine":
        return cosine_schedule(opt, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cfg.gamma ** ((s // steps_per_epoch) // cfg.step_every))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def load_initial_weights(model: nn.Module, path: str) -> None:
    """Load a local state-dict file (fine-tuning start point, ``init_weights``); never downloads
    anything, never unpickles anything but tensors (:func:`~workbench.nn.external.load_weights`)."""
    from ..nn.external import load_weights
    load_weights(model, path, knob="init_weights")


def setup_run(cfg: TrainConfig, data: DataBundle | None, device, data_root: str | None):
    """Device, data, a freshly initialised model (seeded by ``cfg.seed``) and the noise generator
    (seed ``cfg.seed + 1``) of a training run; shared by :func:`train` and LaNMax."""
    dev = resolve_device(device)
    data = data if data is not None else data_for(cfg, data_root)
    with seeded(cfg.seed):
        model = make_model(cfg, data)
    if cfg.init_weights:
        load_initial_weights(model, cfg.init_weights)
    model = model.to(dev)
    return dev, data, model, torch.Generator(device=dev).manual_seed(cfg.seed + 1)


def train_epochs(cfg: TrainConfig, data: DataBundle | None = None, *, device: str | torch.device = "auto",
                 cancel: threading.Event | None = None, data_root: str | None = None,
                 evaluate_every: int = 1):
    """The training loop of :func:`train`, one epoch at a time: a generator that yields
    ``{"epoch", "epochs", "loss", "train_accuracy", "test_accuracy", "history", "model", "device",
    "data"}`` after each epoch (the model on its device, still in training mode with the training
    memory attached), so a caller can pause between epochs and resume with ``next``.  The same
    seeds and the same steps as :func:`train`, which consumes it."""
    dev, data, model, noise_gen = setup_run(cfg, data, device, data_root)
    set_memory(model, memory_map_from_dict(cfg.train_memory))
    set_generator(model, noise_gen)
    batches = Batches(data.train, cfg.batch_size, True, dev, cfg.seed)
    sharpness_aware = cfg.sam != "none"
    opt = make_optimizer(cfg, model if sharpness_aware else model.parameters())
    sched = make_scheduler(cfg, opt, len(batches))
    hist: dict[str, list[float]] = {"loss": [], "train_accuracy": [], "test_accuracy": []}
    for epoch in range(cfg.epochs):
        model.train()
        tot_loss = tot_correct = seen = 0.0
        for x, y in batches:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"training cancelled at epoch {epoch + 1}/{cfg.epochs}")
            out = model(x)
            loss = F.cross_entropy(out, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1} (loss={loss.item()}); lower lr={cfg.lr}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if sharpness_aware:
                # second pass at W + ε* (fresh memory noise; batch-norm statistics frozen by step)
                def closure(x=x, y=y):
                    loss2 = F.cross_entropy(model(x), y)
                    loss2.backward()
                    return loss2
                opt.step(closure)
            else:
                opt.step()
            sched.step()
            clip_weights_(model, cfg.clip or None, cfg.clip_std or None)
            tot_loss += loss.item() * y.numel()
            tot_correct += (out.argmax(1) == y).sum().item()
            seen += y.numel()
        hist["loss"].append(tot_loss / seen)
        hist["train_accuracy"].append(tot_correct / seen)
        last = epoch == cfg.epochs - 1
        test_acc = (
            accuracy(model, data.test, dev)
            if (last or (evaluate_every and (epoch + 1) % evaluate_every == 0))
            else float("nan")
        )
        hist["test_accuracy"].append(test_acc)
        yield {"epoch": epoch + 1, "epochs": cfg.epochs, "loss": hist["loss"][-1],
               "train_accuracy": hist["train_accuracy"][-1], "test_accuracy": test_acc, "history": hist,
               "model": model, "device": dev, "data": data}


def train(cfg: TrainConfig, data: DataBundle | None = None, *, device: str | torch.device = "auto",
          progress: ProgressFn | None = None, cancel: threading.Event | None = None,
          data_root: str | None = None, evaluate_every: int = 1) -> TrainResult:
    """Train the network described by ``cfg`` and return it with its per-epoch history.

    Hardware-aware training (eq 3.13–3.16) when ``cfg.train_memory`` is set: every forward pass
    reads the weights through that memory map with fresh noise and straight-through gradients.
    ``progress`` receives ``{"epoch", "epochs", "loss", "train_accuracy", "test_accuracy"}`` after
    each epoch; setting ``cancel`` stops the run with :class:`Cancelled` at the next minibatch.
    The returned model is on the CPU, in eval mode, with an ideal memory attached.
    """
    start = time.perf_counter()
    info: dict = {}
    for info in train_epochs(cfg, data, device=device, cancel=cancel, data_root=data_root,
                             evaluate_every=evaluate_every):
        if progress is not None:
            progress({k: info[k] for k in ("epoch", "epochs", "loss", "train_accuracy", "test_accuracy")})
    if not info:
        raise ValueError(f"epochs={cfg.epochs} is out of range: epochs must be at least 1")
    model, hist, dev, data = info["model"], info["history"], info["device"], info["data"]
    seconds = time.perf_counter() - start
    # the reported accuracy is the clean one: stored weights read from an ideal memory
    set_memory(model, None)
    set_generator(model, None)
    test_accuracy = accuracy(model, data.test, dev)
    model = model.cpu().eval()
    return TrainResult(model, hist, test_accuracy, seconds, str(dev))
