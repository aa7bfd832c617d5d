"""The Lessons page: the list of lessons, and a step view beside the live page it drives.

``?page=lessons&lesson=NAME&step=K`` opens step K of lesson NAME: the step's state is applied to
the real page of this session (the same path a link takes, :meth:`Workbench.show_step`), that page
is shown beside the step, and the student can then change anything on it.  Back / Next move
through the steps and write ``lesson`` and ``step`` into the address bar, so a step's link opens
exactly that step for someone else.  The live page's own state is shown as a link under the step.
"""

from __future__ import annotations

from typing import Callable

import panel as pn
import param

from ..lessons import Lesson, LessonError, Question, load_lessons
from .urlstate import PageURL, URLKnob, URLValueError, make_search

#: the list of lessons (no lesson open)
CATALOGUE = ""


class LessonURL(PageURL):
    """``lesson`` and ``step`` applied together (one step shown, not the old step of a new lesson)."""

    def __init__(self, page: LessonsPage):
        super().__init__([URLKnob("lesson", page, "lesson", label="lesson", parse=page.parse_lesson,
                                  fmt=lambda v: v),
                          URLKnob("step", page, "step", label="step")])
        self.page = page

    def query(self) -> dict[str, str]:
        return {} if self.page.lesson == CATALOGUE else super().query()

    def apply(self, query: dict[str, str]) -> list[str]:
        refused = [f"`{k}` is not a setting of this page (its settings: lesson, step)"
                   for k in query if k not in self.knobs]
        values = {}
        if "lesson" in query:
            try:
                values["lesson"] = self.page.parse_lesson(query["lesson"])
            except URLValueError as exc:
                refused.append(f"`lesson={query['lesson']}` was not used: {exc}")
        if "step" in query:
            lesson = self.page.lessons.get(values.get("lesson", self.page.lesson))
            try:
                values["step"] = self.page.parse_step(query["step"], lesson)
            except URLValueError as exc:
                refused.append(f"`step={query['step']}` was not used: {exc}")
        if "lesson" in values and "step" not in values:
            values["step"] = 1
        self.page.param.update(**values)
        return refused


class LessonsPage(pn.viewable.Viewer):
    """The lessons of ``lessons/``: a list to start from, then one step at a time beside its page."""

    lesson = param.Selector(default=CATALOGUE, objects=[CATALOGUE], doc="the open lesson (empty: the list)")
    step = param.Integer(1, bounds=(1, None), doc="the step shown (1 is the first)")
    #: the live page's state as a link (``?page=sram&p_t=0.01``), kept current by the workbench
    page_state = param.String("", precedence=-1)
    #: refusals of the last step's state (a shared server's caps), one sentence each
    refused = param.List(default=[], precedence=-1)

    def __init__(self, lessons: dict[str, Lesson] | None = None, **params):
        super().__init__(**params)
        try:
            self.lessons = load_lessons() if lessons is None else lessons
            self.load_error = ""
        except LessonError as exc:          # one broken file: the page says so instead of failing
            self.lessons, self.load_error = {}, str(exc)
        self.param.lesson.objects = [CATALOGUE, *self.lessons]
        #: the live page of the open step goes here (placed by the workbench)
        self.live = pn.Column(sizing_mode="stretch_width", min_width=300, styles={"flex": "3 1 520px"},
                              css_classes=["lesson-live"])
        #: apply a step's state to its page and show it here; set by the workbench (returns refusals)
        self.show_step: Callable[[str, dict[str, str]], list[str]] = lambda page, state: []
        self.url = LessonURL(self)
        self._answers: dict[tuple[str, int], str] = {}
        self._panel: pn.Column | None = None
        self.param.watch(self._open_step, ["lesson", "step"])

    # ------------------------------------------------------------------ link values
    def parse_lesson(self, text: str) -> str:
        if text == CATALOGUE or text in self.lessons:
            return text
        raise URLValueError(f"lesson must be one of {', '.join(self.lessons) or '(none installed)'}")

    @staticmethod
    def parse_step(text: str, lesson: Lesson | None) -> int:
        n = len(lesson.steps) if lesson is not None else 1
        try:
            k = int(text)
        except ValueError:
            raise URLValueError(f"step must be a whole number between 1 and {n}") from None
        if not 1 <= k <= n:
            raise URLValueError(f"step must be between 1 and {n}" + (f" ({lesson.title!r} has {n} steps)"
                                                                     if lesson is not None else ""))
        return k

    # ------------------------------------------------------------------ navigation
    @property
    def current(self) -> Lesson | None:
        return self.lessons.get(self.lesson)

    def step_state(self) -> tuple[str, dict[str, str]] | None:
        """The open step's page and state (None on the list)."""
        lesson = self.current
        if lesson is None:
            return None
        s = lesson.steps[min(self.step, len(lesson.steps)) - 1]
        return s.page, dict(s.state)

    def _open_step(self, *_) -> None:
        lesson = self.current
        if lesson is None:
            self.refused = []
            return
        if self.step > len(lesson.steps):
            self.step = len(lesson.steps)           # re-enters with a valid step
            return
        page, state = self.step_state()
        self.refused = self.show_step(page, state)

    def go(self, delta: int) -> None:
        lesson = self.current
        if lesson is not None:
            self.step = max(1, min(len(lesson.steps), self.step + delta))

    def start(self, name: str) -> None:
        self.param.update(lesson=name, step=1)

    # ------------------------------------------------------------------ views
    def overview(self):
        """Which pages each lesson visits: steps per (lesson, page), for choosing a lesson."""
        import holoviews as hv
        rows = [(page, f"{i + 1}. {lesson.title[:38]}", sum(s.page == page for s in lesson.steps))
                for i, lesson in enumerate(self.lessons.values())
                for page in dict.fromkeys(s.page for s in lesson.steps)]
        return hv.HeatMap(rows, [hv.Dimension("page", label="page visited"), hv.Dimension("lesson")],
                          hv.Dimension("steps", label="steps on that page (count)")).opts(
            cmap="Blues", colorbar=True, tools=["hover"], responsive=True, height=260, invert_yaxis=True, xrotation=30,
            title="Which pages each lesson walks through", toolbar=None)

    def _catalogue(self):
        items = [pn.pane.Markdown("## Lessons\nGuided walks through the live pages for a course: each step sets a "
                                  "page, says what to notice, and asks you to predict before the result shows. "
                                  "Every step is a link you can share.", sizing_mode="stretch_width")]
        if self.load_error:
            items.append(pn.pane.Alert(f"**A lesson file could not be read:** {self.load_error}", alert_type="danger"))
        if self.lessons:
            items.append(pn.pane.HoloViews(self.overview(), sizing_mode="stretch_width", min_height=240,
                                           linked_axes=False, css_classes=["lesson-overview"]))
        for name, lesson in self.lessons.items():
            button = pn.widgets.Button(label="Start", color="primary", width=90,
                                       css_classes=["lesson-start", f"lesson-start-{name}"])
            button.on_click(lambda _e, name=name: self.start(name))
            link = make_search({"page": "lessons", "lesson": name, "step": "1"})
            items.append(pn.Card(
                pn.pane.Markdown(f"*{lesson.level} · about {lesson.minutes} min · {len(lesson.steps)} steps* — "
                                 f"[link]({link})\n\n{lesson.summary}", sizing_mode="stretch_width"),
                button, title=lesson.title, collapsible=False, sizing_mode="stretch_width",
                css_classes=["lesson-card"]))
        return pn.Column(*items, sizing_mode="stretch_width", css_classes=["lesson-catalogue"])

    def _question(self, q: Question, key: tuple[str, int]):
        if q.choices:
            guess = pn.widgets.RadioBoxGroup(options=q.choices, value=None, inline=False, css_classes=["lesson-guess"])
        else:
            guess = pn.widgets.FloatInput(label="your prediction", value=None, width=160, css_classes=["lesson-guess"])
        check = pn.widgets.Button(label="Check my prediction", color="primary", css_classes=["lesson-check"])
        reveal = pn.widgets.Button(label="Show the answer", color="light", css_classes=["lesson-reveal"])
        verdict = pn.pane.Markdown(self._answers.get(key, ""), css_classes=["lesson-answer"],
                                   sizing_mode="stretch_width")

        def answer_text(prefix: str) -> str:
            shown = q.answer if q.choices else f"{q.answer:g}" + (f" (± {q.tolerance:g})" if q.tolerance else "")
            return f"{prefix} **Answer: {shown}.** {q.explain}"

        def on_check(_e):
            if guess.value is None:
                verdict.object = "*Choose or type a prediction first.*"
                return
            right = q.is_right(guess.value)
            verdict.object = self._answers[key] = answer_text("✔ Right." if right else "✘ Not quite.")

        def on_reveal(_e):
            verdict.object = self._answers[key] = answer_text("")

        check.on_click(on_check)
        reveal.on_click(on_reveal)
        return pn.Column(pn.pane.Markdown(f"**Predict first:** {q.prompt}", sizing_mode="stretch_width"), guess,
                         pn.Row(check, reveal), verdict, sizing_mode="stretch_width", css_classes=["lesson-question"])

    @param.depends("lesson", "step", "refused")
    def _step_view(self):
        lesson = self.current
        if lesson is None:
            return self._catalogue()
        k = min(self.step, len(lesson.steps))
        s = lesson.steps[k - 1]
        back = pn.widgets.Button(label="◀ Back", disabled=k == 1, width=90, css_classes=["lesson-back"])
        nxt = pn.widgets.Button(label="Next ▶", color="primary", disabled=k == len(lesson.steps), width=90,
                                css_classes=["lesson-next"])
        done = pn.widgets.Button(label="All lessons", color="light", width=110, css_classes=["lesson-list"])
        back.on_click(lambda _e: self.go(-1))
        nxt.on_click(lambda _e: self.go(+1))
        done.on_click(lambda _e: self.param.update(lesson=CATALOGUE, step=1))
        items = [
            pn.pane.Markdown(f"### {lesson.title}\n*{lesson.level} · about {lesson.minutes} min*",
                             sizing_mode="stretch_width"),
            pn.indicators.Progress(value=int(100 * k / len(lesson.steps)), max=100, bar_color="primary",
                                   sizing_mode="stretch_width", css_classes=["lesson-progress"]),
            pn.pane.Markdown(f"**Step {k} of {len(lesson.steps)}: {s.title}**", css_classes=["lesson-step-title"],
                             sizing_mode="stretch_width"),
            pn.pane.Markdown(s.text, sizing_mode="stretch_width", css_classes=["lesson-text"]),
        ]
        if s.action:
            items.append(pn.pane.Markdown(f"**Do:** {s.action}", sizing_mode="stretch_width",
                                          css_classes=["lesson-action"]))
        if s.question is not None:
            items.append(self._question(s.question, (lesson.name, k)))
        if self.refused:
            items.append(pn.pane.Alert("Some of this step's settings were not used:\n\n"
                                       + "\n".join(f"- {r}" for r in self.refused), alert_type="warning"))
        items += [pn.Row(back, nxt, done), self._state_line]
        return pn.Column(*items, sizing_mode="stretch_width", css_classes=["lesson-step"])

    @param.depends("page_state")
    def _state_line(self):
        if not self.page_state:
            return pn.pane.Markdown("", margin=0)
        link = (f"<a class='lesson-page-state' href='{self.page_state}' target='_blank' "
                f"style='word-break: break-all'>{self.page_state}</a>")
        return pn.pane.HTML(f"<small>The page now: {link}</small>", sizing_mode="stretch_width")

    #: the step column beside the live page, and the list of lessons (no page beside it)
    STEP_STYLES = {"flex": "1 1 300px", "max-width": "460px"}
    LIST_STYLES = {"flex": "1 1 100%", "max-width": "1100px"}

    @param.depends("lesson", watch=True)
    def _widths(self):
        if self._panel is not None:
            self._panel.styles = self.STEP_STYLES if self.current is not None else self.LIST_STYLES

    def __panel__(self):
        styles = self.STEP_STYLES if self.current is not None else self.LIST_STYLES
        self._panel = pn.Column(self._step_view, sizing_mode="stretch_width", min_width=280,
                                css_classes=["lesson-panel"], styles=styles)
        return pn.FlexBox(self._panel, self.live, flex_wrap="wrap", sizing_mode="stretch_width",
                          css_classes=["lessons-page"])


__all__ = ["CATALOGUE", "LessonURL", "LessonsPage"]
