"""The Sweeps page in a real headless Chromium against ``panel serve apps/``: it lists the demo
spec's cells as missing, runs them on a LocalCluster started by the server, streams them in and
reports the run (at 800 px wide, without sideways scrolling); an edited spec that does not parse
is refused on the page.  Its settings live in the URL: a link applies them one by one (a bad value
is refused by name, the rest applies), every change is a history entry that Back restores, and a
number field refuses an invalid value beside itself."""

from __future__ import annotations

import re

import pytest

from workbench.ui.sweep_explorer import CUSTOM, SweepExplorer, plain_reason

from helpers import assert_no_console_errors, wait_until, watch_console


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def address(page) -> str:
    """The address bar's query (read in the page: ``page.url`` is only refreshed by other calls)."""
    return page.evaluate("window.location.search")


def notice_items(page) -> list[str]:
    """The lines of the "settings not used" notice at the top of the app."""
    return [t.strip() for t in page.locator("li", has_text="was not used").all_inner_texts()]


def wait_listed(page, n_cells: int | None = None):
    status = page.locator("p", has_text="Status:")
    pattern = rf"{n_cells} cells: \d+ in the store" if n_cells else r"\d+ cells: \d+ in the store"
    wait_until(lambda: re.search(pattern, status.first.inner_text()), 120, message="the spec's cells listed")


@pytest.mark.browser
def test_sweep_page_runs_the_demo_spec_on_a_local_cluster(served_app, page, tmp_path):
    console = watch_console(page)
    page.set_viewport_size({"width": 800, "height": 1300})
    page.goto(f"{served_app}/apps?page=sweep")

    status = page.locator("p", has_text="Status:")
    wait_until(lambda: re.search(r"37 cells: 0 in the store, 37 to compute", status.first.inner_text()), 120,
               message="the demo spec's cells listed")
    page.get_by_role("button", name="Run the missing cells").click()
    wait_until(lambda: "done: 37 cells computed on 2 workers" in status.first.inner_text(), 300, 0.5,
               message="the sweep to finish")
    wait_until(
        lambda: page.get_by_text(re.compile(r"overhead wall ÷ ideal")).count() > 0, 30, message="the run summary"
    )
    wait_until(lambda: page.locator(".bk-Figure").count() >= 2, 30, message="timeline and state plots")
    assert page.get_by_text("train sgd seed=0").count() > 0          # the cells table names the cells
    # at 800 px the settings, the counts, both plots and the table fit without sideways scrolling
    page.mouse.move(790, 5)                          # no button tooltip over the page
    page.screenshot(path=tmp_path / "sweep-800-after-run.png", full_page=True)
    assert no_sideways_scroll(page)

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


@pytest.mark.browser
def test_a_bad_link_is_refused_by_name_and_the_rest_applies(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})

    # bad spec and workers; good retries and experiments (of the default spec)
    page.goto(f"{served_app}/apps?page=sweep&spec=nope&workers=0&retries=3&experiments=robustness")
    wait_until(lambda: len(notice_items(page)) == 2, 60, message="two refusals in the notice")
    items = notice_items(page)
    assert any(i.startswith("spec=nope was not used") and "dask_demo" in i for i in items), items
    assert any(i.startswith("workers=0 was not used") and "between 1 and 64" in i for i in items), items
    wait_until(lambda: "spec=dask_demo" in address(page), 30, message="the applied link written back")
    assert "spec=dask_demo" in address(page) and "workers=2" in address(page) and "retries=3" in address(page), address(
        page
    )
    assert page.get_by_label("retries per cell").input_value() == "3"
    assert page.get_by_label("worker processes on this machine").input_value() == "2"   # the old value stays
    wait_listed(page, 37)

    # good spec; bad workers (not a number), retries (out of range) and experiments (not in that spec)
    page.goto(f"{served_app}/apps?page=sweep&spec=sram_digits&workers=abc&retries=99&experiments=nope")
    wait_until(lambda: len(notice_items(page)) == 3, 60, message="three refusals in the notice")
    items = notice_items(page)
    assert any(i.startswith("workers=abc was not used") and "whole number" in i for i in items), items
    assert any(i.startswith("retries=99 was not used") and "between 0 and 10" in i for i in items), items
    assert any(i.startswith("experiments=nope was not used") and "uniform_ber" in i for i in items), items
    wait_until(lambda: "spec=sram_digits" in address(page), 30, message="the spec from the link")
    assert page.get_by_label("sweep spec").input_value() == "sram_digits"
    wait_listed(page)

    # an edited spec cannot come from a link; the rest of the link still applies
    page.goto(f"{served_app}/apps?page=sweep&spec=(edited)&workers=4")
    wait_until(lambda: len(notice_items(page)) == 1, 60, message="the edited spec refused")
    assert "an edited spec cannot travel in a link" in notice_items(page)[0]
    wait_until(lambda: "spec=dask_demo&workers=4" in address(page), 30, message="the link written back")
    assert page.get_by_label("worker processes on this machine").input_value() == "4"

    # the page still works: the top tabs switch both ways
    page.locator(".bk-tab", has_text="Noise playground").click()
    wait_until(lambda: "page=playground" in address(page), 60, message="the playground's URL")
    wait_until(lambda: page.get_by_text("Monte-Carlo draws").count() > 0, 60, message="the playground's widgets")
    page.locator(".bk-tab", has_text="Sweeps").click()
    wait_until(
        lambda: "page=sweep" in address(page) and "workers=4" in address(page), 60, message="back on the Sweeps tab"
    )
    assert_no_console_errors(console)


@pytest.mark.browser
def test_sweep_settings_round_trip_through_the_url_and_back(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    link = "page=sweep&spec=sram_digits&experiments=uniform_ber,sensitivity&workers=3&retries=1"
    page.goto(f"{served_app}/apps?{link}")
    wait_listed(page)
    wait_until(lambda: address(page) == "?" + link, 30, message="the link written back unchanged")
    assert notice_items(page) == []
    assert page.get_by_label("sweep spec").input_value() == "sram_digits"
    assert page.get_by_label("worker processes on this machine").input_value() == "3"
    assert page.get_by_label("retries per cell").input_value() == "1"
    chosen = page.locator(".choices__list--multiple .choices__item")
    assert sorted(t.split("Remove")[0].strip() for t in chosen.all_inner_texts()) == ["sensitivity", "uniform_ber"]

    # each change is written to the URL
    workers = page.get_by_label("worker processes on this machine")
    workers.fill("5")
    workers.press("Enter")
    wait_until(lambda: "workers=5" in address(page), 30, message="workers=5 in the URL")
    page.get_by_label("sweep spec").select_option("dask_demo")
    wait_until(lambda: "spec=dask_demo" in address(page), 30, message="the new spec in the URL")
    assert "experiments=" not in address(page)            # the old spec's experiments are not in this one
    wait_listed(page, 37)

    # Back restores the previous state, step by step
    page.go_back()
    wait_until(
        lambda: "spec=sram_digits" in address(page) and page.get_by_label("sweep spec").input_value() == "sram_digits",
        60,
        message="Back to the first spec",
    )
    assert "experiments=uniform_ber,sensitivity" in address(page) and "workers=5" in address(page), address(page)
    wait_until(lambda: len(chosen.all_inner_texts()) == 2, 30, message="the experiments restored")
    page.go_back()
    wait_until(lambda: page.get_by_label("worker processes on this machine").input_value() == "3", 60,
               message="Back to workers=3")
    assert "workers=3" in address(page)

    # an edited spec is named, not carried
    area = page.locator("textarea").first
    area.fill(area.input_value().replace('"draws": 10', '"draws": 11').replace('"draws": 5', '"draws": 6'))
    area.blur()
    wait_until(lambda: "spec=(edited)" in address(page), 30, message="spec=(edited) in the URL")
    assert '"' not in address(page) and "{" not in address(page)
    assert notice_items(page) == []
    assert_no_console_errors(console)


@pytest.mark.browser
def test_number_fields_refuse_an_invalid_value_beside_the_field(served_app, page):
    console = watch_console(page)
    page.set_viewport_size({"width": 1200, "height": 1100})
    page.goto(f"{served_app}/apps?page=sweep&workers=3")
    wait_until(lambda: "retries=2" in address(page), 60, message="the page's state written to the URL")
    messages = page.locator(".field-error p")          # (a shadow host's inner text is empty: read its paragraph)

    workers = page.get_by_label("worker processes on this machine")
    workers.fill("0")
    workers.press("Enter")
    wait_until(
        lambda: "between 1 and 64 — still using 3" in " ".join(messages.filter(visible=True).all_inner_texts()),
        30,
        message="the workers field's message",
    )
    retries = page.get_by_label("retries per cell")
    retries.fill("11")
    retries.press("Enter")
    wait_until(
        lambda: "between 0 and 10 — still using 2" in " ".join(messages.filter(visible=True).all_inner_texts()),
        30,
        message="the retries field's message",
    )
    # the state (which the URL mirrors) kept the last good values
    assert "workers=3" in address(page) and "retries=2" in address(page), address(page)

    # a good value clears the message and is used
    workers.fill("6")
    workers.press("Enter")
    wait_until(lambda: "workers=6" in address(page), 30, message="workers=6 used")
    wait_until(lambda: not any("still using 3" in t for t in messages.filter(visible=True).all_inner_texts()), 30,
               message="the workers message gone")
    assert any("still using 2" in t for t in messages.filter(visible=True).all_inner_texts())
    assert_no_console_errors(console)


def test_the_url_keys_of_the_state_object_without_a_browser():
    ex = SweepExplorer(autorun=False)
    assert ex.url.query() == {"spec": "dask_demo", "workers": "2", "retries": "2"}
    refused = ex.url.apply({"spec": "sram_digits", "experiments": "uniform_ber,spectra", "workers": "0",
                            "retries": "3", "scheduler": "tcp://evil:1"})
    assert [r.split(" was not used")[0] for r in refused] == ["`workers=0`", "`scheduler=tcp://evil:1`"]
    assert "a link can name only a Dask scheduler this server's operator lists" in refused[1]
    assert (ex.spec_name, ex.experiments, ex.workers, ex.retries, ex.scheduler) == \
        ("sram_digits", ["uniform_ber", "spectra"], 2, 3, "")
    assert ex.url.query() == {
        "spec": "sram_digits",
        "experiments": "uniform_ber,spectra",
        "workers": "2",
        "retries": "3",
    }
    # an edited spec is named, never carried, and a link cannot bring one
    ex.spec_text = ex.spec_text.replace('"draws": 10', '"draws": 9')
    assert ex.spec_name == CUSTOM and ex.url.query()["spec"] == "(edited)"
    fresh = SweepExplorer(autorun=False)
    (msg,) = fresh.url.apply({"spec": "(edited)"})
    assert "an edited spec cannot travel in a link" in msg and fresh.spec_name == "dask_demo"


def test_failures_are_put_in_words():
    assert plain_reason("KnobError: sigma_c=7.0 is out of range [0, 1]") == "sigma_c=7.0 is out of range [0, 1]"
    assert plain_reason("FileNotFoundError: [Errno 2] No such file or directory: '/data/mnist/train.npz'") == \
        "a file it needs is missing: /data/mnist/train.npz"
    assert plain_reason("distributed.scheduler.KilledWorker: ('train-ab12', <WorkerState 'tcp://1.2.3.4:5'>)") == \
        "the worker process running it died each time it was tried"
    internal = plain_reason("ZeroDivisionError: float division by zero")
    assert "ZeroDivision" not in internal and "division" not in internal and "internal error" in internal
    assert plain_reason("no valid spec to run") == "no valid spec to run"
