"""Workbench for deep learning on unreliable, low-energy memory.

Layers (each imports only those below it): ``hardware`` → ``nn`` → ``training`` →
``analysis`` → ``nas`` → ``experiments`` → ``plots`` → ``ui``; ``datasets`` sits beside ``nn``.
"""

__version__ = "0.1.0"
