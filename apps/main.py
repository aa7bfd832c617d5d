"""Entry point of ``panel serve apps/``: the multi-page workbench."""

from workbench.ui.app import Workbench, extension

extension()
Workbench().servable(title="Unreliable-memory workbench")
