"""Helpers the tests share: the repository root, the system Chromium, a free port, a retrying
``wait_until``, browser-console checks, processes released together, a served app and a
page-state object opened on a spec."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# (the root conftest.py points $WORKBENCH_CACHE at a throw-away store for the whole session)
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout: float = 60.0, interval: float = 0.2, message: str = "condition"):
    """Retry ``fn`` until it returns a truthy value (returned) or ``timeout`` (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # keep retrying; report the last failure
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {message}" + (f" (last error: {last_exc!r})" if last_exc else "")
    )


def watch_console(page) -> list[tuple[str, str]]:
    """Record the page's console messages and uncaught errors as ``(type, text)``."""
    console: list[tuple[str, str]] = []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: console.append(("error", str(e))))
    return console


def assert_no_console_errors(console: list[tuple[str, str]]) -> None:
    errors = [m for m in console if m[0] == "error"]
    assert not errors, f"browser console errors: {errors}"


def settled_screenshot(locator, timeout: float = 60.0, message: str = "the element to settle") -> bytes:
    """A screenshot of ``locator`` once the page has stopped redrawing it: two shots in a row are
    equal.  A figure that a pane replaces while the shot is taken ("not attached to the DOM") is
    retried, so a "before" image is never one of a render still in progress."""
    last = None

    def same_twice():
        nonlocal last
        shot = locator.screenshot()
        if shot == last:
            return shot
        last = shot
        return None

    return wait_until(same_twice, timeout, interval=0.3, message=message)


def release_together(argvs: list[list[str]], sync: Path, tags: list[str], env: dict, timeout: float = 180.0):
    """Start one child process per ``argv``; each touches ``sync/ready-<tag>`` when set up and then
    waits for ``sync/go``, which is touched once all are ready (so they start their work at the
    same instant).  Returns ``[(returncode, stdout, stderr)]``; children are killed on failure."""
    procs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    try:
        deadline = time.monotonic() + timeout
        while not all((sync / f"ready-{t}").exists() for t in tags):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            assert time.monotonic() < deadline, "children did not start"
            time.sleep(0.01)
        (sync / "go").touch()
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


@contextlib.contextmanager
def serve_apps(cache: Path, log: Path, env: dict | None = None, serve_args: list[str] = (),
               app_args: list[str] = ()):
    """``panel serve apps/`` on a free loopback port with its own result store ``cache`` (then
    ``serve_args`` for panel, ``--args app_args`` for the workbench); yields ``(base URL, process)``
    once ``/liveness`` answers; stops the server afterwards."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the README test command installs Debian's chromium")
    port = free_port()
    argv = [sys.executable, "-m", "panel", "serve", str(ROOT / "apps"), "--port", str(port), "--address", "127.0.0.1",
            "--allow-websocket-origin", f"127.0.0.1:{port}", "--liveness", *serve_args,
            *(["--args", *app_args] if app_args else [])]
    env = {**os.environ, "WORKBENCH_CACHE": str(cache), **(env or {})}
    base = f"http://127.0.0.1:{port}"
    with running(argv, f"{base}/liveness", log, cwd=ROOT, env=env, timeout=90) as proc:
        yield base, proc


@contextlib.contextmanager
def running(argv: list[str], url: str, log: Path, *, cwd: Path, env: dict, timeout: float, grace: float = 10.0):
    """A server process (output in ``log``) that is up once ``GET url`` answers 200; yields the
    process, terminates it afterwards (killed when it does not stop within ``grace`` seconds).
    A server that exits while starting fails the test with the end of its log."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)

    def up():
        if proc.poll() is not None:
            pytest.fail(f"{argv[2]} exited: {log.read_text()[-2000:]}")
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    try:
        wait_until(up, timeout=timeout, message=f"{url} to answer")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()


def spec_explorer(cls, spec: dict, root, **params):
    """A page-state object of class ``cls`` opened on ``spec`` (written to ``root``) with its own
    store under ``root``, after its spec's results are loaded; shut its runner down when done."""
    import json

    from workbench.experiments import Store
    path = root / "spec.json"
    path.write_text(json.dumps(spec))
    ex = cls(store=Store(root / "store"), spec_path=path, device="cpu", autorun=False, **params)
    ex.load()
    ex.wait()
    return ex


PLUGIN_NETWORK = "ringnet"
PLUGIN_DATA = "stripes"
PLUGIN_FILES = {
    "pyproject.toml": f"""
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "workbench-test-plugin"
version = "0.1"

[project.entry-points."workbench.models"]
{PLUGIN_NETWORK} = "wbplugin.nets:ringnet"

[project.entry-points."workbench.datasets"]
{PLUGIN_DATA} = "wbplugin.data:stripes"
""",
    "wbplugin/__init__.py": "",
    "wbplugin/nets.py": """
import torch.nn as nn


def ringnet(in_channels=1, num_classes=10):
    return nn.Sequential(nn.Conv2d(in_channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, num_classes))
""",
    "wbplugin/data.py": """
import torch
from torch.utils.data import TensorDataset


def stripes(n_train=120, n_test=40):
    # 8x8 images of horizontal (class 0) or vertical (class 1) stripes with noise, seeded
    g = torch.Generator().manual_seed(0)

    def make(n):
        y = torch.arange(n) % 2
        x = 0.2 * torch.randn(n, 1, 8, 8, generator=g)
        x[y == 0, :, ::2, :] += 1.5
        x[y == 1, :, :, ::2] += 1.5
        return TensorDataset(x, y)
    return make(n_train), make(n_test)
""",
}


def install_plugin(target: Path) -> Path:
    """Build and pip-install the test plug-in package (:data:`PLUGIN_FILES`) into ``target/site``:
    a real distribution whose entry points ``importlib.metadata`` finds once that folder is on the path."""
    src = target / "src"
    for name, text in PLUGIN_FILES.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text.lstrip())
    site = target / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--disable-pip-version-check", "--target", str(site), str(src)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode:
        pytest.fail(f"installing the test plug-in failed: {out.stderr[-2000:]}")
    return site
