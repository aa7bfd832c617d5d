"""Every page of the workbench in a real headless Chromium against ``panel serve apps/``: a link
to a page that does not exist is refused by name and opens the playground, which works; and each
page, opened alone at 800 px wide, fits the window (no sideways scrolling) once it has drawn its
first plot.  The 800 px screenshots are kept under the test's tmp_path for a look."""

from __future__ import annotations

import pytest

from workbench.ui.app import PAGES

from helpers import assert_no_console_errors, wait_until, watch_console

pytestmark = pytest.mark.browser


def address(page) -> str:
    """The address bar's query (read in the page: ``page.url`` is only refreshed by other calls)."""
    return page.evaluate("window.location.search")


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_an_unknown_page_is_named_and_the_playground_opens(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1000})
    page.goto(f"{served_app}/apps?page=nope&p=0.1")
    refused = page.locator("li", has_text="was not used")
    wait_until(lambda: refused.count() > 0, 90, message="the notice")
    wait_until(lambda: page.locator(".bk-tab.bk-active").count() > 0, 90, message="the tabs drawn")
    texts = refused.all_inner_texts()
    assert len(texts) == 1 and texts[0].startswith("page=nope was not used") and "playground" in texts[0], texts
    # (a page's own sub-tabs are .bk-tab too: look for the top tab by its title)
    assert page.locator(".bk-tab.bk-active", has_text="Noise playground").count() == 1
    # the rest of the link applied to the page that opened, and the URL says so
    wait_until(lambda: "page=playground" in address(page) and "p=0.1&" in address(page) + "&", 90,
               message="the playground's state with p=0.1 in the URL")
    # usable: a plot is drawn, a setting changes the page and its URL, the tabs switch
    wait_until(lambda: page.locator(".bk-Figure").filter(visible=True).count() > 0, 180, message="a playground plot")
    page.get_by_role("button", name="memristor crossbar").click()
    wait_until(lambda: "technology=memristor" in address(page), 60, message="the memory switched")
    page.locator(".bk-tab", has_text="Sweeps").click()
    wait_until(lambda: "page=sweep" in address(page), 90, message="the Sweeps tab")
    wait_until(lambda: refused.filter(visible=True).count() == 0, 30, message="the notice cleared on a new page")
    assert_no_console_errors(console)


@pytest.mark.parametrize("key", list(PAGES))
def test_every_page_fits_800_px(served_app, page, key, tmp_path):
    console = watch_console(page)
    page.set_viewport_size({"width": 800, "height": 1000})
    page.goto(f"{served_app}/apps?page={key}")
    # its tab is the open one (a page's own sub-tabs are .bk-tab too: find the top tab by its title)
    wait_until(lambda: page.locator(".bk-tab.bk-active", has_text=PAGES[key][0]).count() == 1, 90,
               message=f"the {key} tab open")
    # its first plot drawn: the page has laid itself out around real content
    wait_until(lambda: page.locator(".bk-Figure").filter(visible=True).count() > 0, 240,
               message=f"the first plot of the {key} page")
    page.screenshot(path=tmp_path / f"{key}-800.png", full_page=True)
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert no_sideways_scroll(page), f"the {key} page scrolls sideways at 800 px: {widths}"
    assert_no_console_errors(console)
