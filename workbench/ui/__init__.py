"""Pages and explorers (param state + Panel views)."""

from .explorer import NoiseExplorer
from .resources import extension
from .tasks import TaskRunner

__all__ = ["NoiseExplorer", "TaskRunner", "extension"]
