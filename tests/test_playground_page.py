"""The noise playground in a real headless Chromium: a bad link is refused by name and the page
stays usable, the page's whole state (the retrained network included) round-trips through the
URL and Back, the training plots draw their lines, a refused number keeps the last good one, and
at 800 px nothing scrolls sideways."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from helpers import assert_no_console_errors, wait_until, watch_console

pytestmark = pytest.mark.browser

DONE = re.compile(r"Monte-Carlo draws · (read from the results store|just computed)")


def _url(page) -> str:
    """The address bar now (``page.url`` is only refreshed while Playwright handles events, so a
    wait loop reading it alone never sees a change)."""
    return page.evaluate("window.location.href")


def _notice(page) -> str:
    return " ".join(page.get_by_text(re.compile("was not used|is not a setting of this page")).all_inner_texts())


def _status(page) -> str:
    return " ".join(page.locator(".playground-status p").all_inner_texts())


def _slider_value(page, label: str) -> float:
    """The value in a slider's title line ("label: value")."""
    title = page.get_by_text(re.compile(f"^{re.escape(label)}.*: ")).filter(visible=True).first.inner_text().strip()
    return float(title.rsplit(":", 1)[1])


def _finished(page) -> bool:
    status = _status(page)
    return bool(DONE.search(status)) and "evaluating" not in status


def _coloured_pixels(png: bytes, rgb: tuple[int, int, int], tol: int = 40) -> int:
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)[:, :-45]     # not the toolbar (logo)
    return int((np.abs(img - np.array(rgb)).max(axis=-1) <= tol).sum())


def test_a_bad_link_is_refused_by_name_and_the_page_stays_usable(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=playground&p=7&draws=-3&g_u=100&layer=nope&seed=3&foo=1")
    wait_until(lambda: all(k in _notice(page) for k in ("p=7", "draws=-3", "g_u=100", "layer=nope", "foo")), 90,
               message="the notice naming p, draws, g_u, layer and foo")
    assert "seed=3" not in _notice(page)
    seed = page.get_by_label("seed")
    wait_until(lambda: seed.input_value() == "3", 60, message="seed 3 from the link in its field")
    wait_until(lambda: _finished(page), 180, message="the evaluation to finish")
    assert "seed=3" in _url(page) and "draws=20" in _url(page) and "p=0.01" in _url(page)
    # the refused values did not reach the widgets
    assert page.get_by_label("Monte-Carlo draws").input_value() == "20"
    page.locator(".bk-tab", has_text="Under-volted SRAM").click()
    wait_until(lambda: "page=sram" in _url(page), 60, message="the SRAM page to open")
    assert_no_console_errors(console)


def test_a_link_sets_the_widgets_a_change_goes_to_the_url_and_back_restores(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=playground&technology=memristor&sigma_c=0.2&draws=10")
    draws = page.get_by_label("Monte-Carlo draws")
    wait_until(lambda: draws.input_value() == "10", 90, message="draws 10 from the link")
    wait_until(
        lambda: _slider_value(page, "σ_c (multiplicative)") == pytest.approx(0.2), 60, message="σ_c 0.2 in its slider"
    )
    wait_until(lambda: _finished(page) and "10 Monte-Carlo draws" in _status(page), 180, message="the evaluation")
    assert "the small CNN on handwritten digits, trained without noise" in _status(page)
    assert _notice(page) == ""
    assert "technology=memristor" in _url(page) and "sigma_c=0.2&" in _url(page)

    # a slider moved one step writes the rounded value (0.21, not 0.21000000000000002)
    handle = page.locator(".noUi-handle").filter(visible=True).first       # the σ_c slider
    handle.focus()
    handle.press("ArrowRight")
    page.mouse.click(5, 5)
    wait_until(lambda: "sigma_c=0.21&" in _url(page), 30, message="σ_c 0.21 in the URL")
    seed = page.get_by_label("seed")
    seed.fill("4")
    seed.press("Enter")
    wait_until(lambda: "seed=4" in _url(page), 30, message="seed 4 in the URL")

    page.go_back()
    wait_until(lambda: seed.input_value() == "0" and "seed=0" in _url(page), 60, message="Back to seed 0")
    page.go_back()
    wait_until(
        lambda: "sigma_c=0.2&" in _url(page) and _slider_value(page, "σ_c (multiplicative)") == pytest.approx(0.2),
        60,
        message="Back to σ_c 0.2",
    )
    assert_no_console_errors(console)


def test_training_draws_its_plots_and_a_link_reopens_the_trained_network(served_app, page, browser):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=playground&p=0.02&draws=5&epochs=3")
    wait_until(lambda: _finished(page) and "5 Monte-Carlo draws" in _status(page), 180, message="the first evaluation")
    page.get_by_role("button", name="Train with this noise").click()
    wait_until(lambda: "trained with under-volted SRAM noise (p = 0.02)" in _status(page), 240,
               message="the retrained network evaluated")
    plots = page.locator(".training-plot")
    wait_until(lambda: plots.count() == 2, 60, message="two training plots")
    loss, acc = (plots.nth(i) for i in range(2))
    for fig, colour, what in ((loss, (31, 119, 180), "loss"), (acc, (44, 160, 44), "accuracy")):
        box = fig.bounding_box()
        assert box["height"] >= 200 and box["width"] >= 250, (what, box)
        # the line and its three epoch markers: hundreds of pixels of the line's colour (an empty
        # panel, the old failure, has none)
        wait_until(
            lambda fig=fig, colour=colour: _coloured_pixels(fig.screenshot(), colour) > 150,
            60,
            message=f"the {what} line drawn",
        )
    wait_until(
        lambda: "trained=sram,p:0.02,epochs:3,seed:0" in _url(page), 30, message="the trained network in the URL"
    )
    link = _url(page)

    # the link opens that network (read from the store, no training)
    other = browser.new_page()
    other_console = watch_console(other)
    other.set_viewport_size({"width": 1200, "height": 1100})
    other.goto(link)
    wait_until(lambda: _finished(other) and "trained with under-volted SRAM noise (p = 0.02)" in _status(other), 180,
               message="the linked trained network")
    assert _notice(other) == "" and other.get_by_text("No training run in this session yet").count() == 1
    # a trained network the store does not hold is refused by name, not retrained
    other.goto(link.replace("epochs:3", "epochs:7"))
    wait_until(
        lambda: "trained=sram,p:0.02,epochs:7,seed:0" in _notice(other) and "not in this server" in _notice(other),
        90,
        message="the notice refusing an untrained network",
    )
    wait_until(lambda: _finished(other) and "trained without noise" in _status(other), 180, message="the clean network")
    other.close()
    assert_no_console_errors(console)
    assert_no_console_errors(other_console)


def test_an_invalid_draws_value_is_refused_beside_the_field(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=playground")
    wait_until(lambda: _finished(page), 180, message="the first evaluation")
    before = _status(page)
    assert "20 Monte-Carlo draws" in before
    draws = page.get_by_label("Monte-Carlo draws")
    draws.fill("0")
    draws.press("Enter")
    messages = page.locator(".field-error p")            # the text inside the message pane's shadow root
    wait_until(lambda: "must be between 2 and 500 — still using 20" in " ".join(messages.all_inner_texts()), 30,
               message="the draws field's message")
    assert "draws=20" in _url(page) and _status(page) == before
    draws.fill("12")
    draws.press("Enter")
    wait_until(lambda: "12 Monte-Carlo draws" in _status(page), 120, message="a good value used")
    assert "draws=12" in _url(page) and not messages.filter(visible=True).count()
    assert_no_console_errors(console)


def test_at_800_px_nothing_scrolls_sideways(served_app, page, tmp_path):
    console = watch_console(page)
    page.set_viewport_size({"width": 800, "height": 1000})
    page.goto(f"{served_app}/apps?page=playground")
    wait_until(lambda: _finished(page) and page.locator(".bk-Figure").count() >= 3, 180, message="the plots")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    title = page.get_by_text("Noise playground", exact=True).filter(visible=True).last.bounding_box()
    assert title["x"] >= 0 and title["x"] + title["width"] <= 800
    for i in range(page.locator(".bk-Figure").count()):
        box = page.locator(".bk-Figure").nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 800, box
    page.screenshot(path=str(tmp_path / "playground-800.png"), full_page=True)
    assert (tmp_path / "playground-800.png").stat().st_size > 0
    assert_no_console_errors(console)
