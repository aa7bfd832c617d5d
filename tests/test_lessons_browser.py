"""The Lessons page in a real headless Chromium: every step of every lesson walked with Next, the
live page showing each step's state; a step's link opening that step in a fresh context; the
presenter view."""

from __future__ import annotations

import math
import re
import time
from urllib.parse import parse_qsl

import pytest

from workbench.lessons import load_lessons

from helpers import assert_no_console_errors, settled_screenshot, wait_until, watch_console

pytestmark = pytest.mark.browser

LESSONS = load_lessons()


def _same(a: str, b: str | None) -> bool:
    if b is None:
        return False
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except ValueError:
        return False


def _page_state(page) -> dict[str, str]:
    """The live page's state as the Lessons page shows it (its link)."""
    href = page.locator("a.lesson-page-state").first.get_attribute("href") or ""
    return dict(parse_qsl(href.lstrip("?")))


def _shows_step(page, name: str, k: int) -> bool:
    step = LESSONS[name].steps[k - 1]
    if page.get_by_text(f"Step {k} of {len(LESSONS[name].steps)}: {step.title}").count() == 0:
        return False
    if page.locator("a.lesson-page-state").count() == 0:
        return False
    shown = _page_state(page)
    return shown.get("page") == step.page and all(_same(v, shown.get(key)) for key, v in step.state.items())


def _search(page) -> str:
    """The address bar's query (Playwright's ``page.url`` may lag behind ``history.pushState``)."""
    return page.evaluate("window.location.search")


def _url_names(page, name: str, k: int) -> bool:
    q = dict(parse_qsl(_search(page).lstrip("?")))
    return q.get("page") == "lessons" and q.get("lesson") == name and q.get("step") == str(k)


@pytest.mark.parametrize("name", list(LESSONS))
def test_walk_every_step_with_next(served_app, page, name):
    console = watch_console(page)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{served_app}/apps?page=lessons")
    start = page.locator(f".lesson-start-{name} button")
    wait_until(lambda: start.count() > 0, 120, message="the list of lessons")
    start.first.click()
    steps = LESSONS[name].steps
    for k in range(1, len(steps) + 1):
        wait_until(lambda k=k: _shows_step(page, name, k), 120, message=f"{name} step {k} and its page state")
        wait_until(lambda k=k: _url_names(page, name, k), 30, message=f"the URL to name {name} step {k}")
        if k < len(steps):
            page.locator(".lesson-next button").first.click()
    assert page.locator(".lesson-next button").first.is_disabled(), "Next is disabled on the last step"
    assert_no_console_errors(console)


def test_step_link_in_a_fresh_context(served_app, browser):
    name = next(iter(LESSONS))
    k = 3
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        console = watch_console(page)
        page.goto(f"{served_app}/apps?page=lessons&lesson={name}&step={k}")
        wait_until(lambda: _shows_step(page, name, k), 120, message="the linked step with its state")
        assert _url_names(page, name, k)
        # predict first: the answer is revealed on request
        page.locator(".lesson-reveal button").first.click()
        wait_until(lambda: page.get_by_text(re.compile(r"Answer:")).count() > 0, 30, message="the answer")
        assert_no_console_errors(console)
    finally:
        context.close()


def test_presenter_view_at_800_px(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 800, "height": 900})
    name = next(iter(LESSONS))
    page.goto(f"{served_app}/apps?page=lessons&lesson={name}&step=1&present=1")
    wait_until(lambda: _shows_step(page, name, 1), 120, message="the step in the presenter view")
    assert page.get_by_text("Deep learning on unreliable low-energy memory").count() == 0, "no header"
    wait_until(lambda: "present=1" in _search(page), 30, message="present=1 kept in the URL")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 820, f"the presenter view overflows 800 px: {width} px"
    assert_no_console_errors(console)


def test_step_play_and_pause_a_hardware_aware_training(served_app, page):
    """Two epochs stepped, each redrawing the accuracy-vs-p curve; Play runs the next epoch and
    Pause stops after it (the run has four epochs: the fourth never starts)."""
    console = watch_console(page)
    page.set_viewport_size({"width": 1400, "height": 1400})
    page.goto(f"{served_app}/apps?page=playground&p=0.05&draws=2&epochs=4")
    curve_done = page.locator(".curve-status", has_text=re.compile(r"\d+ points × 2 Monte-Carlo draws"))
    wait_until(lambda: curve_done.count() > 0, 240, message="the first accuracy-vs-p curve")
    figure = page.locator(".bk-Figure").nth(2)
    shots = [settled_screenshot(figure, message="the clean network's curve")]
    status = page.locator(".playground-status")
    for k in (1, 2):
        page.locator(".step-epoch button").first.click()
        wait_until(lambda k=k: status.filter(has_text=f"after {k} of 4 hardware-aware epochs").count() > 0
                   and curve_done.count() > 0, 240, message=f"epoch {k} and its curve")
        assert page.locator(".epoch-line", has_text=f"Epoch {k} of 4").count() > 0
        shots.append(settled_screenshot(figure, message=f"the curve after epoch {k}"))
        assert shots[-1] != shots[-2], f"the curve was not redrawn after epoch {k}"
    page.locator(".play button").first.click()
    page.locator(".pause button").first.click()
    wait_until(lambda: status.filter(has_text="after 3 of 4 hardware-aware epochs").count() > 0
               and curve_done.count() > 0, 240, message="the epoch that was running when paused")
    time.sleep(3)
    assert page.locator(".epoch-line", has_text="Epoch 3 of 4").count() > 0, "paused after epoch 3"
    assert page.locator(".epoch-line", has_text="playing").count() == 0
    assert not page.locator(".pause button").first.is_enabled()
    assert_no_console_errors(console)
