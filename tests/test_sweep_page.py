"""The Sweeps page in a real headless Chromium against ``panel serve apps/``: it lists the demo
spec's cells as missing, runs them on a LocalCluster started by the server, streams them in and
reports the run; an edited spec that does not parse is refused on the page."""

from __future__ import annotations

import re

import pytest

from conftest import assert_no_console_errors, wait_until, watch_console

pytestmark = pytest.mark.browser


def test_sweep_page_runs_the_demo_spec_on_a_local_cluster(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1400, "height": 1300})
    page.goto(f"{served_app}/apps?page=sweep")

    status = page.locator("p", has_text="Status:")
    wait_until(lambda: re.search(r"37 cells: 0 in the store, 37 to compute", status.first.inner_text()), 120,
               message="the demo spec's cells listed")
    page.get_by_role("button", name="Run the missing cells").click()
    wait_until(lambda: "done: 37 cells computed on 2 workers" in status.first.inner_text(), 300, 0.5,
               message="the sweep to finish")
    wait_until(lambda: page.get_by_text(re.compile(r"overhead wall ÷ ideal")).count() > 0, 30, message="the run summary")
    wait_until(lambda: page.locator(".bk-Figure").count() >= 2, 30, message="timeline and state plots")
    assert page.get_by_text("train sgd seed=0").count() > 0          # the cells table names the cells

    # run again: everything is stored now
    page.get_by_role("button", name="Run the missing cells").click()
    wait_until(lambda: "every cell was already in the store" in status.first.inner_text(), 120,
               message="a second run reading the store")

    # an edited spec that is not JSON is refused with its error; the cells stay
    area = page.locator("textarea").first
    area.fill("{ not json")
    area.blur()
    wait_until(lambda: page.get_by_text(re.compile(r"not valid JSON")).count() > 0, 60, message="the JSON error")
    assert "spec refused" in status.first.inner_text()

    assert_no_console_errors(console)
