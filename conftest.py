"""Root conftest: every test, notebook kernel and subprocess of the suite writes to a throw-away
result store (``$WORKBENCH_CACHE``); the results shipped in ``data/store`` stay readable."""

import os
import tempfile

os.environ["WORKBENCH_CACHE"] = tempfile.mkdtemp(prefix="workbench-test-cache-")
