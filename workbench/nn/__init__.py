"""Noisy layers and the model zoo."""

from .layers import (
    NoisyConv1d,
    NoisyConv2d,
    NoisyLinear,
    capture_layer_inputs,
    clip_weights_,
    layer_param_counts,
    noisy_layers,
    set_generator,
    set_memory,
    weights_as_given,
)
from .models import (
    MODELS,
    VGG,
    ResNet18,
    SmallCNN,
    WideResNet,
    build_model,
    mobilenet_v2,
    resnet18_imagenet,
    to_noisy,
    unsupported_layers,
)

__all__ = ["MODELS", "NoisyConv1d", "NoisyConv2d", "NoisyLinear", "ResNet18", "SmallCNN", "VGG", "WideResNet",
           "build_model",
           "capture_layer_inputs", "clip_weights_", "layer_param_counts", "mobilenet_v2", "noisy_layers",
           "resnet18_imagenet", "to_noisy", "unsupported_layers",
           "set_generator", "set_memory", "weights_as_given"]
