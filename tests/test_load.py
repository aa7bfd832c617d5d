"""A classroom on one shared server: 20 concurrent browser sessions of ``panel serve apps/`` in
shared mode (``WORKBENCH_SHARED=1``; loopback only, bounded in time) that open the playground on
their own settings, move the p slider and start background jobs (Monte-Carlo evaluations and
curves; four hardware-aware trainings, two of them of the same network), while a probe keeps
asking the server's ``/liveness`` — and one abusive session among them, which asks for more than
the operator's caps (a link with too many epochs and draws, Train clicked again and again, a
second training on another page, a sweep) and sees each of those refused.

Checks: the abusive session sees its refusals; every other session shows its own state (its p in
the URL, the energy of its p, its draws, its own network — a training in one session never
switches another's); the server answered every probe; no cache file is lost, corrupt or half-
written, the shipped store is untouched, and a new session reads the results the others
computed.
"""

from __future__ import annotations

import math
import re
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Error as PlaywrightError

from workbench.experiments import Store
from workbench.hardware.sram import eta
from workbench.ui.explorer import P_CHOICES

from helpers import serve_apps, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSIONS = 20
ENERGY = re.compile(r"^0\.\d{4}$")


def setting(i: int) -> dict:
    """Session i: its starting p, its p after one notch of the slider, its draws, whether it trains.
    Sessions i and i + 10 share a setting, so they race for the same cache entries."""
    k = i % 10
    return {"p0": P_CHOICES[3 + k], "p1": P_CHOICES[4 + k], "draws": 20 if k < 3 else 3 + k % 3,
            "train": k in (0, 5)}


def expected_energy(p: float) -> str:
    """The playground's readout: memory energy of 1-bit weights at BER p relative to the same network
    read reliably, η(p) (eq 3.27/3.30, thesis §4.4)."""
    return f"{float(eta(p)):.4f}"


def _text_now(loc) -> str:
    """The first match's text, or "" while there is none.  A pane may replace the element between
    the count and the read (the page re-renders its status under load): that read is "" too, and
    the caller polls again (its own deadline decides)."""
    try:
        return loc.first.inner_text(timeout=2000) if loc.count() else ""
    except PlaywrightError:
        return ""


def status(page) -> str:
    return _text_now(page.locator("p", has_text="Status:"))


def energy(page) -> str:
    return _text_now(page.get_by_text(ENERGY))


def url_p(page) -> float | None:
    # the address bar as the page wrote it (history.pushState): Playwright's page.url is not
    # refreshed while a test polls
    q = parse_qs(urlparse(page.evaluate("location.href")).query)
    return float(q["p"][0]) if "p" in q else None


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*") if p.is_file()}


def unexpected_tracebacks(log: str) -> list[str]:
    """The server log's records holding a traceback, except a write to a websocket whose browser
    tab had just been closed (tornado logs those when the test closes its twenty pages)."""
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ )", log)
    return [r for r in records if "Traceback" in r and not re.search(r"WebSocketClosedError|StreamClosedError", r)]


class Liveness(threading.Thread):
    """Asks ``/liveness`` every 0.25 s until stopped; keeps every answer and its latency.  Bokeh
    serves every session from one event loop, so twenty pages opened at once queue their builds
    and a probe can wait seconds; "answering" means within 30 s (the latencies are printed)."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base, self.stop, self.answers, self.failures = base, threading.Event(), [], []

    def run(self):
        while not self.stop.wait(0.25):
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{self.base}/liveness", timeout=30) as r:
                    self.answers.append((r.status, time.perf_counter() - t0))
            except Exception as exc:
                self.failures.append(repr(exc))


ABUSER_P = P_CHOICES[2]


def refusals(page) -> str:
    """The text of the page's refusals (alerts and the link's notice)."""
    try:
        return " ".join(page.locator("p, li").all_inner_texts())
    except PlaywrightError:
        return ""


def abuse(page, base: str) -> None:
    """One session asks for more than the operator allows; each ask is refused by name."""
    wait_until(lambda: "WORKBENCH_MAX_EPOCHS" in refusals(page) and "WORKBENCH_MAX_DRAWS" in refusals(page),
               300, 0.5, "the abuser's link to be refused by its caps")
    page.goto(f"{base}/apps?page=playground&p={ABUSER_P}&epochs=50", wait_until="commit")
    train = page.get_by_role("button", name="Train with this noise")
    train.wait_for(timeout=300_000)
    wait_until(lambda: energy(page) == expected_energy(ABUSER_P), 300, 0.25, "the abuser's page")
    train.click()
    wait_until(lambda: "training" in status(page), 120, 0.25, "the abuser's training to start")
    for _ in range(10):               # spam: the button is disabled while its training runs
        train.click(force=True, timeout=5000)
    assert train.is_disabled()
    page.locator(".bk-tab", has_text="Sharpness").click()
    page.get_by_role("button", name="Train", exact=True).click(timeout=300_000)
    wait_until(lambda: "WORKBENCH_MAX_TRAININGS=1" in refusals(page), 300, 0.5,
               "the abuser's second training to be refused")
    page.locator(".bk-tab", has_text="Sweeps").click()
    page.get_by_role("button", name="Sweeps are off on this server").wait_for(timeout=300_000)
    assert page.get_by_role("button", name="Sweeps are off on this server").is_disabled()


def test_twenty_sessions_keep_their_own_state_and_the_cache_intact(browser, tmp_path):
    shipped = Store().read_only[0]
    shipped_before = snapshot(shipped)
    cache = tmp_path / "served-cache"
    log = tmp_path / "panel.log"
    with serve_apps(cache, log, env={"WORKBENCH_SHARED": "1"}) as (base, proc):
        probe = Liveness(base)
        probe.start()
        contexts, pages = [], []
        try:
            t0 = time.monotonic()
            abuser_ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
            contexts.append(abuser_ctx)
            abuser = abuser_ctx.new_page()
            abuser.goto(f"{base}/apps?page=playground&p={ABUSER_P}&epochs=150&draws=400", wait_until="commit")
            for i in range(SESSIONS):
                s = setting(i)
                ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
                page = ctx.new_page()
                errors = []
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.errors = errors
                page.goto(f"{base}/apps?page=playground&p={s['p0']}&draws={s['draws']}&epochs=1", wait_until="commit")
                contexts.append(ctx)
                pages.append(page)
            opened = time.monotonic() - t0

            # every session opens on its own p and draws
            for i, page in enumerate(pages):
                s = setting(i)
                wait_until(
                    lambda page=page, s=s: (
                        energy(page) == expected_energy(s["p0"])
                        and f"· {s['draws']} Monte-Carlo draws ·" in status(page)
                    ),
                    300,
                    0.25,
                    f"session {i} to show p={s['p0']:g} with {s['draws']} draws",
                )

            # each moves its p slider one notch right (a new evaluation and curve in the background)
            for page in pages:
                handle = page.locator(".noUi-handle").first
                handle.focus()
                handle.press("ArrowRight")
                page.mouse.click(5, 5)
            abuse(abuser, base)
            # four sessions start a hardware-aware training at their new p (two of the same network)
            for i, page in enumerate(pages):
                s = setting(i)
                if s["train"]:
                    wait_until(
                        lambda page=page, s=s: energy(page) == expected_energy(s["p1"]), 300, 0.25, f"session {i} at p1"
                    )
                    page.get_by_role("button", name="Train with this noise").click()

            def settled(i, page):
                s = setting(i)
                st = status(page)
                label = (
                    f"trained with under-volted SRAM noise (p = {s['p1']:g})" if s["train"] else "trained without noise"
                )
                return (
                    energy(page) == expected_energy(s["p1"])
                    and f"· {s['draws']} Monte-Carlo draws ·" in st
                    and label in st
                    and url_p(page) is not None
                    and math.isclose(url_p(page), s["p1"])
                )

            deadline = time.monotonic() + 420
            pending = set(range(SESSIONS))
            while pending and time.monotonic() < deadline:
                pending = {i for i in pending if not settled(i, pages[i])}
                time.sleep(0.5)
            assert not pending, {i: (status(pages[i]), energy(pages[i]), pages[i].url) for i in sorted(pending)}
            driven = time.monotonic() - t0
            page_errors = {i: p.errors for i, p in enumerate(pages) if p.errors}
            assert not page_errors, page_errors
        finally:
            for ctx in contexts:
                ctx.close()

        # a new session reads what the others computed (an uncached setting of the run, now stored)
        s = setting(3)
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(f"{base}/apps?page=playground&p={s['p1']}&draws={s['draws']}")
        wait_until(
            lambda: f"· {s['draws']} Monte-Carlo draws · read from the results store" in status(page),
            180,
            0.25,
            "a cached result in a new session",
        )
        ctx.close()

        probe.stop.set()
        probe.join(15)
        assert proc.poll() is None, "the server died"
    bad = unexpected_tracebacks(log.read_text())
    assert not bad, "\n".join(bad)[-4000:]

    # the server answered every liveness probe, each within 30 s
    assert not probe.failures, probe.failures[:5]
    assert len(probe.answers) > 50 and all(code == 200 for code, _ in probe.answers)
    lat = sorted(t for _, t in probe.answers)
    slowest = f"median {lat[len(lat) // 2]:.2f} s, 95 % {lat[int(0.95 * (len(lat) - 1))]:.2f} s, max {lat[-1]:.2f} s"

    # nothing lost, corrupt or half-written; the shipped results untouched
    store = Store(cache, read_only=[])
    entries = store.verify(repair=False)
    assert all(e.ok for e in entries), [e.path.name for e in entries if not e.ok]
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    kinds = {e.kind for e in entries}
    assert {"evaluate", "weights"} <= kinds
    trained = {setting(i)["p1"] for i in range(SESSIONS) if setting(i)["train"]}
    # the shared training ran once; the abuser's one training (cancelled when its tab closed) may have ended
    assert sum(e.kind == "weights" for e in entries) in (len(trained), len(trained) + 1)
    uncached = {(setting(i)["p1"], setting(i)["draws"]) for i in range(SESSIONS) if setting(i)["draws"] != 20}
    assert sum(e.kind == "evaluate" for e in entries) >= len(uncached)
    assert snapshot(shipped) == shipped_before
    print(f"\n{SESSIONS} sessions opened in {opened:.1f} s, driven to their final state in {driven:.1f} s; "
          f"{len(probe.answers)} liveness answers ({slowest}); {len(entries)} cache entries verified")
