"""Shared fixtures: an isolated result store, a served app, and the system Chromium (the helpers
tests import live in ``helpers.py``)."""

from __future__ import annotations

import os

import pytest

from helpers import CHROMIUM, install_plugin, serve_apps


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's tensor code on one intra-op thread (restored afterwards): its tensors are
    tiny, and on a busy 2-core machine torch's 2-thread parallel regions are much slower."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright: use Debian's Chromium, never a downloaded browser."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "headless": True,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run"]}


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory):
    """A tiny plug-in package (a network under ``workbench.models``, a data set under
    ``workbench.datasets``) pip-installed into a temporary folder; put it on ``PYTHONPATH`` to use it."""
    return install_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="session")
def served_app(tmp_path_factory, plugin_path):
    """``panel serve apps/`` on a free loopback port, with the plug-in package installed; yields the base URL."""
    with serve_apps(tmp_path_factory.mktemp("served-cache"), tmp_path_factory.mktemp("serve") / "panel.log",
                    env={"PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_path), os.environ.get("PYTHONPATH")]))}
                    ) as (base, _):
        yield base


@pytest.fixture(scope="session")
def trained():
    """A digits-cnn trained 3 epochs (about a second), with the digits test tensors: ``(model, x, y)``.
    Tests must not modify the model in place."""
    from workbench.experiments.core import preset_config, test_tensors, train_model
    cfg = preset_config("digits-cnn", epochs=3)
    x, y = test_tensors(cfg)
    return train_model(cfg).model, x, y
