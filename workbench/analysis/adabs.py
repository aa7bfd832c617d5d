"""AdaBS: batch-norm statistics re-estimated under simulated hardware noise (§5.4.1, [109]).

After programming, the activations a noisy crossbar produces no longer have the mean and variance
the batch-norm layers learned during training.  AdaBS forwards a calibration set through the
network *with the deployment noise* (a fresh draw per calibration minibatch, as the noise-injected
passes of [109]) and replaces every batch-norm layer's running mean and variance by the
cumulative average of the batch statistics seen; no gradient, no other parameter changes.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..hardware import Memory, MemoryMap
from ..knobs import KnobError, check_int, check_seed
from ..nn import noisy_layers, set_generator, set_memory

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batchnorm_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {n: m for n, m in model.named_modules() if isinstance(m, _BN) and m.track_running_stats}


@torch.no_grad()
def adabs(model: nn.Module, memory: MemoryMap | Memory, x_calib: torch.Tensor, *, batch_size: int = 128,
          max_batches: int | None = None, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose batch-norm running statistics are recomputed on ``x_calib`` while
    its weights are read through ``memory`` (AdaBS, §5.4.1).

    Each calibration minibatch sees a fresh noise draw (generator seeded by ``seed``); the new
    running mean/variance are the exact cumulative averages over the minibatches
    (``momentum=None``).  The copy keeps the model's original memories attached and is in eval
    mode; ``model`` itself is not modified.  A model without batch norm is returned as a copy
    unchanged.
    """
    check_int("batch_size", batch_size, 2, note="batch statistics")
    if max_batches is not None:
        check_int("max_batches", max_batches, 1, note="or None: all")
    check_seed("seed", seed)
    if not isinstance(memory, (Memory, MemoryMap)):
        raise KnobError(f"memory={memory!r} must be a Memory or a MemoryMap (build one with memory_from_dict "
                        "or memory_map_from_dict)")
    if len(x_calib) < 2:
        raise KnobError(f"x_calib has {len(x_calib)} samples; AdaBS needs at least 2")
    net = copy.deepcopy(model).eval()
    bns = batchnorm_layers(net)
    if not bns:
        return net
    previous = {name: layer.memory for name, layer in noisy_layers(net).items()}
    dev = next(net.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    set_memory(net, memory if isinstance(memory, MemoryMap) else MemoryMap(memory))
    set_generator(net, gen)
    saved = {}
    for name, bn in bns.items():
        saved[name] = bn.momentum
        bn.reset_running_stats()
        bn.momentum = None          # cumulative moving average = plain mean over the batches
        bn.train()
    try:
        n_batches = 0
        for i in range(0, len(x_calib), batch_size):
            xb = x_calib[i:i + batch_size]
            if len(xb) < 2:
                break
            net(xb.to(dev))
            n_batches += 1
            if max_batches is not None and n_batches >= max_batches:
                break
    finally:
        for name, bn in bns.items():
            bn.momentum = saved[name]
            bn.eval()
        for name, layer in noisy_layers(net).items():
            layer.memory = previous[name]
        set_generator(net, None)
    return net.eval()
