"""The page state in the URL: every page names its settings as query keys (``?page=sram&p_t=0.01``).

A link is applied key by key: a value that does not parse or is out of range is refused with a
message naming the setting and what it allows, and every other value still applies, so a slightly
wrong link never breaks a page.  Every change of a setting is written back to the address bar
(one browser history entry per change, values written as the widget shows them), and the
browser's Back / Forward re-apply the state of that entry.

Panel's own ``Location.sync`` is not used: it applies a link's values as one batch (one bad value
drops them all) and never hears the browser's Back button.  :class:`URLBar` is the small
browser-side half: it pushes the server's query string into the history and reports Back/Forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode

import param
from panel.custom import JSComponent

from ..knobs import knob_error_from_param, range_words


class URLValueError(ValueError):
    """A query value refused; the message names the setting and what it allows."""


def fmt_number(value: float, digits: int = 4) -> str:
    """A number as a widget shows it: ``20`` not ``20.000000000000004``, ``1e-05`` for small p."""
    if value is None:
        return ""
    v = float(value)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.{digits}g}"


def _range(p: param.Parameter) -> str:
    return range_words(*(p.bounds or (None, None)), getattr(p, "inclusive_bounds", (True, True)), fmt_number)


def _choice_text(value) -> str:
    return fmt_number(value) if isinstance(value, float) else str(value)


@dataclass
class URLKnob:
    """One query key bound to a setting.

    By default the key reads and writes ``obj.<name>``, parsed and formatted from the kind of
    ``param`` it is; ``parse`` / ``fmt`` replace that (``parse`` raises :class:`URLValueError` or
    ``ValueError`` with a plain message), ``apply`` replaces the assignment (e.g. a validated
    setter of a dict entry) and ``read`` the read-back."""

    key: str
    obj: param.Parameterized
    name: str
    label: str = ""
    parse: Callable[[str], Any] | None = None
    fmt: Callable[[Any], str] | None = None
    apply: Callable[[Any], None] | None = None
    read: Callable[[], Any] | None = None

    @property
    def parameter(self) -> param.Parameter:
        return self.obj.param[self.name]

    def describe(self) -> str:
        return self.label or (self.parameter.doc or self.name).split("(")[0].strip()

    # ------------------------------------------------------------------ str <-> value
    def to_text(self) -> str:
        value = self.read() if self.read else getattr(self.obj, self.name)
        if self.fmt is not None:
            return self.fmt(value)
        if value is None:
            return ""
        p = self.parameter
        if isinstance(p, param.Boolean):
            return "true" if value else "false"
        if isinstance(p, (param.ListSelector, param.List, param.Tuple)):
            return ",".join(_choice_text(v) for v in value)
        if isinstance(p, param.Integer):
            return str(int(value))
        if isinstance(value, float):
            return fmt_number(value)
        return str(value)

    def from_text(self, text: str) -> Any:
        """The value ``text`` stands for, checked against the setting's range (URLValueError)."""
        if self.parse is not None:
            return self.parse(text)
        p, what = self.parameter, self.describe()
        if isinstance(p, param.Boolean):
            low = text.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise URLValueError(f"{what} is on or off: write true or false")
        if isinstance(p, param.ListSelector):
            items = [t for t in text.split(",") if t]
            return [self._choice(t, p.objects) for t in items]
        if isinstance(p, param.Selector):
            return self._choice(text, p.objects)
        if isinstance(p, param.Number):
            integer = isinstance(p, param.Integer)
            try:
                value = int(text) if integer else float(text)
            except ValueError:
                raise URLValueError(f"{what} must be {'a whole number' if integer else 'a number'} "
                                    f"{_range(p)}") from None
            if not math.isfinite(value):
                raise URLValueError(f"{what} must be a finite number {_range(p)}")
            lo, hi = p.bounds or (None, None)
            inc_lo, inc_hi = getattr(p, "inclusive_bounds", (True, True))
            if (lo is not None and (value < lo or (value == lo and not inc_lo))) or \
               (hi is not None and (value > hi or (value == hi and not inc_hi))):
                raise URLValueError(f"{what} must be {_range(p)}")
            return value
        if isinstance(p, param.String):
            return text
        raise URLValueError(f"{what} cannot be set from a link")

    def _choice(self, text: str, objects) -> Any:
        objects = list(objects.values() if isinstance(objects, dict) else objects)
        for o in objects:
            if str(o) == text or _choice_text(o) == text:
                return o
            if isinstance(o, (int, float)) and not isinstance(o, bool):
                try:
                    if math.isclose(float(text), float(o), rel_tol=1e-9):
                        return o
                except ValueError:
                    pass
        shown = ", ".join(_choice_text(o) for o in objects[:12]) + (", …" if len(objects) > 12 else "")
        raise URLValueError(f"{self.describe()} must be one of {shown}")

    def set_text(self, text: str) -> None:
        value = self.from_text(text)
        try:
            if self.apply is not None:
                self.apply(value)
            else:
                setattr(self.obj, self.name, value)
        except URLValueError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise URLValueError(str(knob_error_from_param(self.key, value, exc, self.parameter))) from None


class PageURL:
    """The query keys of one page, in the order they apply (a key whose choices depend on another
    comes after it, e.g. a layer after the network)."""

    def __init__(self, knobs: list[URLKnob]):
        self.knobs = {k.key: k for k in knobs}

    def query(self) -> dict[str, str]:
        out = {}
        for key, knob in self.knobs.items():
            text = knob.to_text()
            if text != "":
                out[key] = text
        return out

    def apply(self, query: dict[str, str]) -> list[str]:
        """Apply ``query`` key by key (unknown keys and bad values are refused, the rest applies);
        the refusals, each a sentence naming the key, its value and what it allows."""
        refused = []
        for key in query:
            if key not in self.knobs:
                refused.append(f"`{key}` is not a setting of this page (its settings: {', '.join(self.knobs)})")
        for key, knob in self.knobs.items():
            if key not in query:
                continue
            text = query[key]
            try:
                if text != knob.to_text():
                    knob.set_text(text)
            except URLValueError as exc:
                refused.append(f"`{key}={text}` was not used: {exc}")
        return refused

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after any bound setting changes."""
        by_obj: dict[int, tuple[param.Parameterized, list[str]]] = {}
        for knob in self.knobs.values():
            obj, names = by_obj.setdefault(id(knob.obj), (knob.obj, []))
            if knob.name not in names:
                names.append(knob.name)
        for obj, names in by_obj.values():
            obj.param.watch(lambda *_: callback(), names)


def parse_search(search: str) -> dict[str, str]:
    """``?a=1&b=x`` -> ``{"a": "1", "b": "x"}`` (the last value of a repeated key wins)."""
    return dict(parse_qsl(search.lstrip("?"), keep_blank_values=True))


def make_search(query: dict[str, str]) -> str:
    return "?" + urlencode(query, safe=",:()")


class URLBar(JSComponent):
    """The browser side of the URL state: writes ``search`` into the address bar (a new history
    entry, or replacing the current one when it starts with ``replace:``), and reports
    Back/Forward to Python as a message ``{"search": ...}`` (:attr:`on_pop`)."""

    search = param.String(default="")

    _esm = """
    export function render({ model }) {
      const write = () => {
        let s = model.search || "";
        const replace = s.startsWith("replace:");
        if (replace) { s = s.slice(8); }
        if (s === window.location.search) { return; }
        const url = window.location.pathname + s + window.location.hash;
        if (replace) { window.history.replaceState({}, "", url); } else { window.history.pushState({}, "", url); }
      };
      model.on("search", write);
      const popped = () => model.send_msg({ search: window.location.search });
      window.addEventListener("popstate", popped);
      model.on("remove", () => window.removeEventListener("popstate", popped));
      write();
      const el = document.createElement("span");
      el.style.display = "none";
      return el;
    }
    """

    def __init__(self, **params):
        super().__init__(**params)
        self.on_pop: Callable[[str], None] = lambda search: None

    def _handle_msg(self, msg: Any) -> None:
        if isinstance(msg, dict) and isinstance(msg.get("search"), str):
            self.on_pop(msg["search"])


__all__ = ["PageURL", "URLBar", "URLKnob", "URLValueError", "fmt_number", "make_search", "parse_search"]
