"""Lessons: the format, the shipped lessons, ``workbench lesson check`` and the Lessons page's
navigation over the real pages (no browser)."""

from __future__ import annotations

import textwrap

import pytest

from workbench.cli import main
from workbench.lessons import LESSONS_DIR, LessonError, load_lesson, load_lessons, parse_lesson, state_text

GOOD_STEP = {"title": "t", "page": "playground", "state": {"technology": "sram", "p": 0.01}}


def _write(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_lessons_are_five_or_more_with_5_to_10_steps_and_answered_questions():
    lessons = load_lessons()
    assert len(lessons) >= 5
    for lesson in lessons.values():
        assert 5 <= len(lesson.steps) <= 10, (lesson.name, len(lesson.steps))
        questions = [s.question for s in lesson.steps if s.question is not None]
        assert len(questions) >= 3, f"{lesson.name}: predict-first questions on most steps"
        for q in questions:
            assert q.is_right(q.answer)
            assert q.explain, f"{lesson.name}: every answer says why"


def test_thesis_numbers_in_the_answers():
    """The energy answers are η(p) = −ln(p)/a, a = 12.8 (eq 3.27): checked against the formula."""
    from workbench.hardware.sram import eta
    lesson = load_lessons()["01_sram_energy"]
    by_p = {float(s.state["p"]): s.question for s in lesson.steps if s.page == "playground" and s.question
            and not s.question.choices and float(s.state["p"]) > 0}
    assert set(by_p) == {1e-4, 0.01}
    for p, q in by_p.items():
        assert q.is_right(float(eta(p))), (p, float(eta(p)), q.answer)


def test_lesson_check_passes_on_the_shipped_lessons(capsys):
    files = [str(p) for p in sorted(LESSONS_DIR.glob("*"))]          # as `lesson check lessons/*`
    assert main(["lesson", "check", *files]) == 0
    out = capsys.readouterr().out
    assert f"lessons: {len(load_lessons())}" in out and "ok: True" in out and "README.md" in out


def test_lesson_check_refuses_unknown_knob_and_out_of_range_value(tmp_path, capsys):
    path = _write(tmp_path, "broken", """\
        title: Broken
        level: introductory
        minutes: 5
        steps:
          - title: fine
            page: playground
            state: {technology: sram, p: 0.01}
          - title: wrong key
            page: playground
            state: {voltage: 0.4}
          - title: too large
            page: playground
            state: {p: 0.7}
          - title: no page
            page: oscilloscope
            state: {}
        """)
    assert main(["lesson", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "lesson 'broken', step 2 (wrong key)" in err and "`voltage`" in err
    assert "lesson 'broken', step 3 (too large)" in err and "`p=0.7`" in err and "between 0 and 0.5" in err
    assert "step 4 (no page)" in err and "oscilloscope" in err
    assert "step 1" not in err


def test_lesson_check_refuses_a_value_the_page_would_show_differently(tmp_path, capsys):
    path = _write(tmp_path, "notch", """\
        title: Notch
        level: introductory
        minutes: 5
        steps:
          - {title: off the grid, page: sram, state: {p_t: 0.02}}
        """)
    assert main(["lesson", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "lesson 'notch', step 1" in err and "p_t" in err and "must be one of" in err


@pytest.mark.parametrize("question, words", [
    ({"prompt": "how much?"}, "has no `answer`"),
    ({"prompt": "which?", "choices": ["a", "b"], "answer": "c"}, "not one of the choices"),
    ({"prompt": "how much?", "answer": "lots"}, "finite number"),
    ({"prompt": "how much?", "answer": 1, "tolerance": -1}, "`tolerance` must be"),
])
def test_a_question_needs_a_valid_answer(question, words):
    data = {"title": "T", "level": "advanced", "minutes": 10, "steps": [{**GOOD_STEP, "question": question}]}
    with pytest.raises(LessonError, match="lesson 'q', step 1, question") as info:
        parse_lesson(data, "q")
    assert words in str(info.value)


@pytest.mark.parametrize("change, words", [
    ({"level": "expert"}, "`level` must be one of"),
    ({"minutes": 0}, "minutes must be in [1, 240]"),
    ({"steps": []}, "0 steps is out of range"),
    ({"colour": "red"}, "unknown field"),
])
def test_a_lesson_names_what_is_wrong(change, words):
    data = {"title": "T", "level": "advanced", "minutes": 10, "steps": [GOOD_STEP], **change}
    with pytest.raises(LessonError) as info:
        parse_lesson(data, "x")
    assert words in str(info.value) and "lesson 'x'" in str(info.value)


def test_not_a_yaml_file_is_refused(tmp_path):
    path = tmp_path / "l.md"
    path.write_text("# not a lesson")
    with pytest.raises(LessonError, match=r"\.yaml"):
        load_lesson(path)


def test_state_text_is_a_links_text():
    assert state_text(True) == "true"
    assert state_text(0.01) == "0.01"
    assert state_text([0.5, 1]) == "0.5,1"
    assert state_text("(none)") == "(none)"


def test_number_question_tolerance():
    q = parse_lesson({"title": "T", "level": "advanced", "minutes": 10, "steps": [
        {**GOOD_STEP, "question": {"prompt": "η(0.01)?", "answer": 0.36, "tolerance": 0.02}}]}, "n").steps[0].question
    assert q.is_right(0.37) and q.is_right("0.35") and not q.is_right(0.4) and not q.is_right("lots")


def test_lessons_page_walks_a_lesson_on_the_real_page():
    """Next applies each step's state to the live SRAM page of this session, the workbench's link
    names lesson and step, and the page goes back to its own tab when another tab is opened."""
    import holoviews as hv
    hv.extension("bokeh")
    from workbench.ui.app import Workbench
    from workbench.ui.urlstate import parse_search

    wb = Workbench(page="lessons")
    lessons = wb.page_object("lessons")
    name = "02_layer_sensitivity"
    lessons.start(name)
    lesson = lessons.current
    for k in range(1, len(lesson.steps) + 1):
        step = lesson.steps[k - 1]
        assert wb.query() == {"page": "lessons", "lesson": name, "step": str(k)}
        shown = parse_search(lessons.page_state)
        assert shown["page"] == step.page
        for key, value in step.state.items():
            assert shown[key] == value or float(shown[key]) == float(value), (k, key)
        assert list(lessons.live.objects) and lessons.refused == []
        lessons.go(+1)
    assert lessons.step == len(lesson.steps), "Next stops at the last step"
    # the student changes something: the lesson's link stays, the state line follows the page
    wb.page_object("sram").explorer.p_train = 0.1
    assert parse_search(lessons.page_state)["p_t"] == "0.1"
    wb.page = "sram"
    assert not lessons.live.objects and wb.query()["p_t"] == "0.1"
    wb.page = "lessons"
    assert lessons.live.objects


def test_a_step_link_is_refused_by_name_when_out_of_range():
    from workbench.ui.lessons import LessonsPage
    page = LessonsPage()
    shown = []
    page.show_step = lambda key, state: shown.append(key) or []
    refused = page.url.apply({"lesson": "01_sram_energy", "step": "99"})
    assert page.lesson == "01_sram_energy" and page.step == 1 and shown == ["playground"]
    assert refused and "step must be between 1 and 7" in refused[0]
    refused = page.url.apply({"lesson": "nope"})
    assert "lesson must be one of" in refused[0]


def test_train_epochs_is_train_one_epoch_at_a_time():
    """``train`` consumes ``train_epochs``: the same seeds and steps give the same history."""
    from workbench.experiments import preset_config
    from workbench.hardware import SRAMMemory
    from workbench.training.trainer import train, train_epochs
    cfg = preset_config("digits-bc", epochs=2, train_memory={"default": SRAMMemory(p=0.05, bits=1).knobs(),
                                                              "overrides": {}})
    whole = train(cfg, device="cpu")
    steps = list(train_epochs(cfg, device="cpu"))
    assert [s["epoch"] for s in steps] == [1, 2]
    assert steps[-1]["history"]["loss"] == whole.history["loss"]
    assert steps[-1]["history"]["test_accuracy"] == whole.history["test_accuracy"]


def test_playground_steps_a_training_and_redraws_the_curve(tmp_path):
    """Step one epoch twice: the network shown is the one trained so far (its curve recomputed
    after each epoch); Pause stops a Play after the running epoch."""
    from workbench.experiments import Store
    from workbench.ui.explorer import NoiseExplorer
    ex = NoiseExplorer(store=Store(tmp_path), autorun=False, draws=2, epochs=3, p=0.05)
    ex.refresh()
    ex.wait()
    curves = [ex.curve]
    for k in (1, 2):
        ex.param.trigger("step_epoch")
        ex.wait(kinds=("train",))
        ex.wait()
        assert ex.stepped == k and len(ex.history["loss"]) == k and not ex.error
        assert f"after {k} of 3 hardware-aware epochs" in ex.status
        assert ex.curve is not curves[-1], f"the curve is recomputed after epoch {k}"
        curves.append(ex.curve)
    assert float(curves[2].accuracy.sel(p=0.05).mean()) != float(curves[0].accuracy.sel(p=0.05).mean())
    ex.param.trigger("play")
    ex.param.trigger("pause")
    ex.wait(kinds=("train",))
    ex.wait()
    assert ex.stepped == 3 and not ex.playing
