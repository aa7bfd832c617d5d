"""The served app in a real headless Chromium: it loads, the p slider drives the plots, the
browser console stays clean, and the page makes no request outside the machine."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from helpers import assert_no_console_errors, settled_screenshot, wait_until, watch_console

pytestmark = pytest.mark.browser

ENERGY = re.compile(r"^0\.\d{4}$")


def _energy_text(page) -> str:
    return page.get_by_text(ENERGY).first.inner_text()


def test_playground_p_slider_changes_plots(served_app, page):
    console, requests = watch_console(page), []
    page.on("request", lambda r: requests.append(r.url))
    page.set_viewport_size({"width": 1400, "height": 1200})
    page.goto(f"{served_app}/apps")

    # the page opens on the shipped/cached results: status line, energy readout and plots appear
    wait_until(
        lambda: page.get_by_text(re.compile(r"draws · (read from the results store|just computed)")).count() > 0,
        120,
        message="first evaluation",
    )
    before_energy = wait_until(lambda: _energy_text(page), 60, message="energy readout")
    canvases = page.locator("canvas")
    wait_until(lambda: canvases.count() >= 2, 60, message="plots rendered")
    plot = page.locator(".bk-Figure").first
    before_img = settled_screenshot(plot, message="the first plot to settle")

    # move the (log-scale) p slider three notches to the right with the keyboard
    handle = page.locator(".noUi-handle").first
    handle.focus()
    for _ in range(3):
        handle.press("ArrowRight")
    page.mouse.click(5, 5)   # release focus; the throttled value is sent on change

    after_energy = wait_until(lambda: (t := _energy_text(page)) != before_energy and t, 120, message="energy to change")
    assert float(after_energy) < float(before_energy), "a higher bit error rate must lower the memory energy"
    wait_until(lambda: settled_screenshot(plot, 20) != before_img, 120, message="accuracy plot to change")
    # the URL carries the state (a lesson is a link)
    wait_until(lambda: "p=" in page.url, 30, message="p in the URL")

    assert_no_console_errors(console)
    outside = [
        u
        for u in requests
        if urlparse(u).hostname not in ("127.0.0.1", "localhost", None) and not u.startswith("data:")
    ]
    assert not outside, f"the page requested resources outside the machine: {outside[:5]}"
