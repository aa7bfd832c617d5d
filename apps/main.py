"""Entry point of ``panel serve apps/``: the multi-page workbench.

Operator settings come from ``WORKBENCH_*`` environment variables and from ``--args`` (e.g.
``panel serve apps/ --args --shared --schedulers tcp://10.0.0.5:8786``); see the README.
"""

import sys

from workbench.ui.app import Workbench, extension
from workbench.ui.settings import configure

configure(sys.argv[1:])
extension()
Workbench().servable(title="Unreliable-memory workbench")
