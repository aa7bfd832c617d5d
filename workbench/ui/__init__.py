"""Pages and explorers (param state + Panel views)."""

from .explorer import NoiseExplorer
from .tasks import TaskRunner

__all__ = ["NoiseExplorer", "TaskRunner"]
