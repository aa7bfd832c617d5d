"""The URL state of the pages, without a browser: a link applies key by key, a bad value is refused
by name with what it allows, values are written as the widgets show them, and Back re-applies."""

from __future__ import annotations

import param
import pytest

from workbench.ui.urlstate import PageURL, URLKnob, fmt_number, make_search, parse_search


class State(param.Parameterized):
    kind = param.Selector(default="a", objects=["a", "b"], doc="kind of thing")
    level = param.Selector(default=0.01, objects=[0.0, 0.01, 0.1], doc="level")
    p = param.Number(0.01, bounds=(0.0, 0.5), doc="bit error rate p")
    rho = param.Number(0.2, bounds=(0.0, 10.0), inclusive_bounds=(False, True), doc="ρ")
    draws = param.Integer(20, bounds=(2, 500), doc="Monte-Carlo draws")
    adabs = param.Boolean(True, doc="AdaBS")
    shown = param.ListSelector(default=["a"], objects=["a", "b", "c"], doc="methods shown")


@pytest.fixture
def state_url():
    s = State()
    return s, PageURL([URLKnob(k, s, k) for k in ("kind", "level", "p", "rho", "draws", "adabs", "shown")])


def test_link_applies_key_by_key_and_names_each_refusal(state_url):
    s, url = state_url
    refused = url.apply({"p": "7", "draws": "-3", "rho": "0", "kind": "b", "level": "0.1", "adabs": "maybe",
                         "shown": "a,c", "nope": "1"})
    text = " | ".join(refused)
    assert len(refused) == 5, refused
    assert "`p=7`" in text and "between 0 and 0.5" in text
    assert "`draws=-3`" in text and "between 2 and 500" in text
    assert "`rho=0`" in text and "(0, 10]" in text
    assert "`adabs=maybe`" in text and "true or false" in text
    assert "`nope`" in text and "not a setting" in text
    # the good values applied, the refused ones left their setting as it was
    assert (s.kind, s.level, s.shown) == ("b", 0.1, ["a", "c"])
    assert (s.p, s.draws, s.rho, s.adabs) == (0.01, 20, 0.2, True)


@pytest.mark.parametrize("text", ["abc", "nan", "inf", "", "1e400"])
def test_non_numbers_are_refused(state_url, text):
    s, url = state_url
    refused = url.apply({"p": text})
    assert len(refused) == 1 and "bit error rate p must be" in refused[0]
    assert s.p == 0.01


def test_whole_numbers_only_for_integer_knobs(state_url):
    s, url = state_url
    assert "whole number" in url.apply({"draws": "3.5"})[0]
    assert url.apply({"draws": "40"}) == [] and s.draws == 40


def test_values_are_written_as_the_widgets_show_them(state_url):
    s, url = state_url
    s.p = 0.1 + 0.2 - 0.25           # 0.05000000000000002
    s.rho = 20.000000000000004 / 4
    q = url.query()
    assert q["p"] == "0.05" and q["rho"] == "5" and q["adabs"] == "true" and q["shown"] == "a"
    assert fmt_number(1e-5) == "1e-05" and fmt_number(25.0) == "25" and fmt_number(0.123456) == "0.1235"


def test_query_round_trip(state_url):
    s, url = state_url
    s.param.update(kind="b", p=0.2, shown=["b", "c"], adabs=False)
    search = make_search(url.query())
    other = State()
    assert PageURL([URLKnob(k, other, k) for k in url.knobs]).apply(parse_search(search)) == []
    assert other.param.values() | {"name": None} == s.param.values() | {"name": None}


def test_a_page_check_is_shown_as_its_own_plain_message():
    s = State()

    def only_small(v):
        if v > 0.1:
            raise ValueError("p of that layer must be at most 0.1 for this demo")
        s.p = v
    url = PageURL([URLKnob("p", s, "p", apply=only_small)])
    assert url.apply({"p": "0.3"}) == ["`p=0.3` was not used: p of that layer must be at most 0.1 for this demo"]


def test_workbench_refuses_an_unknown_page_and_steps_back():
    import holoviews.plotting.bokeh  # noqa: F401  (the pages' plots need a backend)

    from workbench.ui.app import Workbench
    wb = Workbench()
    assert wb.page == "playground" and wb.query()["page"] == "playground"
    # Back to an entry of another page with a bad and a good value
    wb._popped("?page=sram&p_t=7&alpha=0.05")
    assert wb.page == "sram"
    assert any("p_t=7" in line for line in wb.notice), wb.notice
    assert wb.query()["alpha"] == "0.05"
    wb._popped("?page=nowhere")
    assert any("page=nowhere" in line for line in wb.notice) and wb.page == "sram"
