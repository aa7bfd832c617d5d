"""A package that registers a network and a data set under the ``workbench.models`` /
``workbench.datasets`` entry points (pip-installed into a temporary folder): its names are in the
CLI's help, train and evaluate there, and the playground's network picker offers the network."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from helpers import PLUGIN_DATA, PLUGIN_NETWORK, ROOT, assert_no_console_errors, wait_until, watch_console


def workbench(plugin_path, *argv):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_path), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "workbench", *argv], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def test_the_cli_help_names_the_plugin_and_trains_and_evaluates_it(plugin_path, tmp_path):
    out = workbench(plugin_path, "train", "--help")
    assert out.returncode == 0, out.stderr
    assert f"registered name ({PLUGIN_NETWORK})" in " ".join(out.stdout.split())
    store = str(tmp_path / "store")
    common = ["--model", PLUGIN_NETWORK, "--set", "epochs=2", "--cache-dir", store, "--json", "--quiet"]
    trained = workbench(plugin_path, "train", *common)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["test_accuracy"] > 0.3            # digits: chance is 0.1
    ev = workbench(plugin_path, "evaluate", *common, "--memory", "memristor", "--sigma-c", "0.1", "--draws", "3")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["cache"] == "computed"
    # the registered data set: the plug-in network learns its two classes of stripes
    on_data = workbench(plugin_path, "train", *common, "--data", PLUGIN_DATA, "--set", "epochs=6")
    assert on_data.returncode == 0, on_data.stderr
    assert json.loads(on_data.stdout)["test_accuracy"] > 0.8                  # chance is 0.5
    assert f"registered name ({PLUGIN_DATA})" in " ".join(out.stdout.split())
    # without the package the name is unknown, and the refusal says what a model spec is
    bare = subprocess.run([sys.executable, "-m", "workbench", "train", "--model", PLUGIN_NETWORK, "--cache-dir", store],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bare.returncode == 2 and "path/to/file.py:factory" in bare.stderr


@pytest.mark.browser
def test_the_playground_picker_offers_the_plugin_network(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=playground&technology=memristor&draws=4")
    picker = page.get_by_label("network")
    wait_until(lambda: PLUGIN_NETWORK in picker.locator("option").all_inner_texts(), 90,
               message="the plug-in network in the picker")
    picker.select_option(PLUGIN_NETWORK)
    status = page.locator(".playground-status p")
    wait_until(lambda: re.search(f"plug-in network “{PLUGIN_NETWORK}”.*Monte-Carlo draws · (read from the results "
                                 "store|just computed)", " ".join(status.all_inner_texts())), 240,
               message="the plug-in network's evaluation")
    assert f"network={PLUGIN_NETWORK}" in page.evaluate("window.location.href")
    # the layer picker lists the plug-in's layers (a Sequential: 0, 5)
    layers = page.get_by_label("override one layer").locator("option").all_inner_texts()
    assert "0" in layers and "5" in layers
    assert_no_console_errors(console)
