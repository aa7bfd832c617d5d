"""Lessons: guided walks over the live pages, written as YAML files in ``lessons/``.

A lesson is a title, a level, a duration (minutes) and a sequence of steps; a step names a page,
the state to show on it (the same keys and values as that page's link, ``?page=sram&p_t=0.01``),
a short text, optionally an action for the student and a "predict first" question (multiple
choice or a number) whose answer the step's live result reveals.  ``lessons/README.md`` is the
author's guide.

This module reads and checks the format; it imports nothing of the pages.  Checking a step's
state against its page (:func:`check_lesson`) takes the pages as ``page key -> factory of an
object with .apply(query) and .query()`` (the pages' :class:`~workbench.ui.urlstate.PageURL`),
so a lesson's values are refused exactly as a link's are, with the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import yaml

from .knobs import KnobError

#: where the shipped lessons live (the repository's ``lessons/``)
LESSONS_DIR = Path(__file__).resolve().parent.parent / "lessons"
LEVELS = ("introductory", "intermediate", "advanced")
#: a lesson's bounds: the issue asks for 5-10 steps; the format allows 1-20 (a short demo, a long lab)
MAX_STEPS = 20
MAX_MINUTES = 240


class LessonError(KnobError):
    """A lesson file that cannot be used; the message names the lesson, the step and the field."""


class StateTarget(Protocol):
    """What a step's state is checked against: a page's link keys (``PageURL``)."""

    def apply(self, query: dict[str, str]) -> list[str]: ...

    def query(self) -> dict[str, str]: ...


@dataclass
class Question:
    """A "predict first" question: ``choices`` (multiple choice, ``answer`` one of them) or none
    (a number, ``answer`` a number and ``tolerance`` how far a prediction may be to count as right)."""

    prompt: str
    answer: Any
    choices: list[str] = field(default_factory=list)
    tolerance: float = 0.0
    explain: str = ""

    def is_right(self, guess: Any) -> bool:
        """Whether ``guess`` (a choice, or a number) is the answer."""
        if self.choices:
            return str(guess) == str(self.answer)
        try:
            return abs(float(guess) - float(self.answer)) <= self.tolerance
        except (TypeError, ValueError):
            return False


@dataclass
class Step:
    title: str
    page: str
    state: dict[str, str]
    text: str = ""
    action: str = ""
    question: Question | None = None


@dataclass
class Lesson:
    name: str
    title: str
    level: str
    minutes: int
    summary: str
    steps: list[Step]
    path: Path | None = None


def state_text(value: Any) -> str:
    """A YAML value as the text a link carries: ``true``/``false``, ``0.01``, lists comma-joined."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(state_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:.12g}"
    return "" if value is None else str(value)


def _need(data: Mapping, key: str, where: str, kind: type | tuple = str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise LessonError(f"{where}: `{key}` is missing")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise LessonError(f"{where}: `{key}` must be a {names}, not {value!r}")
    return value


def _question(data: Any, where: str) -> Question | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise LessonError(f"{where}: `question` must be a mapping (prompt, choices, answer)")
    where = f"{where}, question"
    prompt = _need(data, "prompt", where)
    if "answer" not in data or data["answer"] in (None, ""):
        raise LessonError(f"{where}: the question has no `answer` (a question must say what the live result shows)")
    choices = data.get("choices") or []
    if not isinstance(choices, list):
        raise LessonError(f"{where}: `choices` must be a list")
    choices = [str(c) for c in choices]
    answer = data["answer"]
    tolerance = data.get("tolerance", 0.0)
    if choices:
        if len(choices) < 2:
            raise LessonError(f"{where}: a multiple-choice question needs at least 2 choices")
        if str(answer) not in choices:
            raise LessonError(f"{where}: `answer` {answer!r} is not one of the choices ({', '.join(choices)})")
        answer = str(answer)
    else:
        if isinstance(answer, bool) or not isinstance(answer, (int, float)) or not math.isfinite(answer):
            raise LessonError(f"{where}: a question without choices needs a finite number as `answer`, "
                              f"not {answer!r}")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
            raise LessonError(f"{where}: `tolerance` must be a number at least 0, not {tolerance!r}")
    return Question(prompt=prompt, answer=answer, choices=choices, tolerance=float(tolerance),
                    explain=str(data.get("explain", "")))


def parse_lesson(data: Any, name: str, path: Path | None = None) -> Lesson:
    """A lesson from its YAML mapping (:class:`LessonError` naming the lesson and step otherwise)."""
    where = f"lesson {name!r}"
    if not isinstance(data, Mapping):
        raise LessonError(f"{where}: the file must be a YAML mapping (title, level, minutes, steps)")
    unknown = set(data) - {"title", "level", "minutes", "summary", "steps"}
    if unknown:
        raise LessonError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                          "(fields: title, level, minutes, summary, steps)")
    title = _need(data, "title", where)
    level = _need(data, "level", where)
    if level not in LEVELS:
        raise LessonError(f"{where}: `level` must be one of {', '.join(LEVELS)}, not {level!r}")
    minutes = _need(data, "minutes", where, int)
    if not 1 <= minutes <= MAX_MINUTES:
        raise LessonError(f"{where}: minutes={minutes} is out of range: minutes must be in [1, {MAX_MINUTES}]")
    steps_data = _need(data, "steps", where, list)
    if not 1 <= len(steps_data) <= MAX_STEPS:
        raise LessonError(f"{where}: {len(steps_data)} steps is out of range: a lesson has 1 to {MAX_STEPS} steps")
    steps = []
    for k, s in enumerate(steps_data, start=1):
        at = f"{where}, step {k}"
        if not isinstance(s, Mapping):
            raise LessonError(f"{at}: a step must be a mapping (title, page, state, text)")
        unknown = set(s) - {"title", "page", "state", "text", "action", "question"}
        if unknown:
            raise LessonError(f"{at}: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                              "(fields: title, page, state, text, action, question)")
        state = s.get("state") or {}
        if not isinstance(state, Mapping):
            raise LessonError(f"{at}: `state` must be a mapping of the page's link keys to values")
        steps.append(Step(title=_need(s, "title", at), page=_need(s, "page", at),
                          state={str(key): state_text(v) for key, v in state.items()},
                          text=str(s.get("text", "")), action=str(s.get("action", "")),
                          question=_question(s.get("question"), at)))
    return Lesson(name=name, title=title, level=level, minutes=minutes, summary=str(data.get("summary", "")),
                  steps=steps, path=path)


def load_lesson(path: str | Path) -> Lesson:
    """The lesson in ``path`` (its name is the file's stem)."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        raise LessonError(f"lesson file {path.name!r}: a lesson is a .yaml file (see lessons/README.md)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LessonError(f"lesson file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise LessonError(f"lesson {path.stem!r}: not valid YAML ({exc})") from None
    return parse_lesson(data, path.stem, path)


def lesson_files(directory: str | Path = LESSONS_DIR) -> list[Path]:
    """The lesson files of ``directory``, in order of their names (``01_...yaml`` first)."""
    directory = Path(directory)
    return sorted(p for p in directory.glob("*.y*ml") if p.is_file()) if directory.is_dir() else []


def load_lessons(directory: str | Path = LESSONS_DIR) -> dict[str, Lesson]:
    """Every lesson of ``directory`` by name (a broken file raises :class:`LessonError`)."""
    return {p.stem: load_lesson(p) for p in lesson_files(directory)}


def check_lesson(lesson: Lesson, pages: Mapping[str, Callable[[], StateTarget]]) -> list[str]:
    """The problems of ``lesson`` against the pages, one sentence each naming lesson, step and knob.

    The steps are applied in order to one fresh page per page key, as a student walking the lesson
    applies them; every value goes through the page's own link parsing (unknown key, value out of
    range or not a choice: refused with the allowed range), and a value the page reads back
    differently (e.g. rounded to a slider's notch) is reported too, since the page would not
    show the state the step names."""
    problems, built = [], {}
    for k, step in enumerate(lesson.steps, start=1):
        at = f"lesson {lesson.name!r}, step {k} ({step.title})"
        if step.page not in pages:
            problems.append(f"{at}: there is no page {step.page!r} (pages: {', '.join(pages)})")
            continue
        if step.page not in built:
            built[step.page] = pages[step.page]()
        target = built[step.page]
        for refusal in target.apply(dict(step.state)):
            problems.append(f"{at}: {refusal}")
        shown = target.query()
        for key, text in step.state.items():
            if key in shown and shown[key] != text and not _same_number(shown[key], text):
                problems.append(f"{at}: `{key}={text}` is shown by the page as `{key}={shown[key]}`: "
                                "write the value as the page shows it")
    return problems


def _same_number(a: str, b: str) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    except ValueError:
        return False


def check_files(paths: list[str | Path], pages: Mapping[str, Callable[[], StateTarget]]) -> list[str]:
    """The problems of every lesson file in ``paths`` (a file that does not parse: one problem)."""
    problems = []
    for path in paths:
        try:
            lesson = load_lesson(path)
        except LessonError as exc:
            problems.append(str(exc))
            continue
        problems.extend(check_lesson(lesson, pages))
    return problems


__all__ = ["LESSONS_DIR", "LEVELS", "Lesson", "LessonError", "Question", "StateTarget", "Step", "check_files",
           "check_lesson", "lesson_files", "load_lesson", "load_lessons", "parse_lesson", "state_text"]
