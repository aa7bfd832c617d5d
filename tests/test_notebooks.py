"""The notebooks as a user meets them: stored as JupyterLab writes them (so opening one changes
nothing), without outputs, and run in a real JupyterLab in Chromium with every request that
would leave the machine blocked — their plots must still draw."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import CHROMIUM, ROOT, free_port, running, wait_until

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_stored_as_jupyterlab_writes_it_without_outputs(path):
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    # JupyterLab saves through nbformat: same JSON layout, cell ids (nbformat 4.5), a final newline
    assert nbformat.writes(nb) + "\n" == text or nbformat.writes(nb) == text, \
        f"{path.name} is not in the layout JupyterLab writes: rewrite it with nbformat.write"
    assert (nb.nbformat, nb.nbformat_minor) >= (4, 5) and all("id" in c for c in nb.cells)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), f"{path.name} holds outputs"
    # every notebook loads the extensions through the workbench's own offline helper
    assert any("extension()" in c.source and "from workbench.ui import extension" in c.source for c in code)
    assert not any("hv.extension(" in c.source or "pn.extension(" in c.source for c in code), \
        "hv.extension/pn.extension load their scripts from a CDN in a notebook: use workbench.ui.extension()"


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """JupyterLab 4 on a loopback port, rooted at a copy of notebooks/ (the tracked files are never
    opened, so nothing a run writes reaches the repository); yields (base URL, root)."""
    root = tmp_path_factory.mktemp("lab")
    for p in NOTEBOOKS:
        shutil.copy(p, root / p.name)
    # every cell stays in the page (JupyterLab otherwise drops the cells scrolled out of view, and
    # the test counts the run cells' prompts)
    settings = root / ".jupyter-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port = free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTER_DATA_DIR": str(root / ".jupyter-data"),
           "JUPYTER_RUNTIME_DIR": str(root / ".jupyter-runtime"), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--ServerApp.root_dir={root}", "--IdentityProvider.token=", "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
            f"--LabApp.user_settings_dir={root / '.jupyter-settings'}",
            *(["--allow-root"] if os.geteuid() == 0 else [])]
    base = f"http://127.0.0.1:{port}"
    with running(argv, f"{base}/api/status", root / "lab.log", cwd=root, env=env, timeout=120, grace=15):
        yield base, root


@pytest.mark.browser
@pytest.mark.slow
def test_notebook_01_runs_offline_in_jupyterlab(jupyterlab, page):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the README test command installs Debian's chromium")
    base, root = jupyterlab
    name = "01_noise_playground.ipynb"
    before = (root / name).read_bytes()
    outside, errors = [], []

    def route(r):
        host = r.request.url.split("/")[2].split(":")[0] if "://" in r.request.url else ""
        if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()
    page.route("**/*", route)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{base}/lab/tree/{name}")

    # the kernel starts and is idle; opening the notebook left it unmodified
    wait_until(lambda: page.locator(".jp-Notebook .jp-Cell").count() > 5, 180, message="the notebook to open")
    wait_until(
        lambda: (
            "Idle" in page.locator(".jp-StatusBar-Widget, .jp-Toolbar-kernelStatus").all_inner_texts().__str__()
            or page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0
        ),
        180,
        message="the kernel to be idle",
    )
    page.wait_for_timeout(2000)      # JupyterLab updates the model's metadata once the kernel is connected
    stored = json.loads(before)["metadata"]["language_info"]["version"]
    assert page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 0, (
        "opening the notebook marked it as modified (JupyterLab rewrites metadata.language_info with the kernel's: "
        f"stored Python {stored}, kernel Python {platform.python_version()}; re-save the notebooks with nbformat)")
    assert (root / name).read_bytes() == before

    # Run All, from the menu as a user does
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    n_code = sum(c.cell_type == "code" for c in nbformat.reads(before.decode(), as_version=4).cells)

    def all_ran():
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        done = [t for t in prompts if t.strip().startswith("[") and t.strip()[1:-2].strip().isdigit()]
        return len(prompts) == n_code and len(done) == n_code
    wait_until(all_ran, 900, interval=1.0, message="every cell to run")

    out = page.locator(".jp-OutputArea")
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count() == 0, \
        "a cell failed: " + " | ".join(out.all_inner_texts())[-2000:]
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    assert not stderr, f"warnings shown to the reader: {stderr}"
    # the plots and the embedded page draw (BokehJS and Panel came inline, not from a CDN)
    wait_until(lambda: page.locator(".jp-OutputArea canvas").count() >= 4, 120, message="plots to draw in the outputs")
    assert not outside, f"requests that would have left the machine: {outside[:5]} ({len(outside)} in all)"
    assert not errors, f"page errors: {errors[:3]}"
    text = " ".join(out.all_inner_texts())
    assert "np.float64(" not in text and "np.str_(" not in text, "raw numpy reprs in the outputs"
    json.loads((root / name).read_text())      # still a valid notebook on disk
