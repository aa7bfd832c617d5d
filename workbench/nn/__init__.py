"""Noisy layers and the model zoo."""

from .layers import (NoisyConv2d, NoisyLinear, clip_weights_, layer_param_counts, noisy_layers,
                     set_generator, set_memory, weights_as_given)
from .models import MODELS, ResNet18, SmallCNN, VGG, WideResNet, build_model

__all__ = ["MODELS", "NoisyConv2d", "NoisyLinear", "ResNet18", "SmallCNN", "VGG", "WideResNet", "build_model",
           "clip_weights_", "layer_param_counts", "noisy_layers", 
           "set_generator", "set_memory", "weights_as_given"]
