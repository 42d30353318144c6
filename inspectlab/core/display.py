"""How a result object shows itself in a notebook (`_repr_html_`) and to rich (`__rich__`): a hook turned around.

The result classes live in analysis/, runtime/ and workflows/ (a `Report`, a `LatencyReport`, a `Capture`, a
`FieldResult`); drawing them is formatting, which lives in render/, a layer those may not import. So each result
class derives from `Displayable`, whose two methods look up the view registered for its class (or a base class)
by the class's qualified name, and `inspectlab.render.notebook` registers the views when it is imported. Any
workflow-backed entry point imports it first: `inspectlab.api` imports `inspectlab.workflows.display`, which
imports it. An object whose class has no view shows its plain repr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class View:
    """The two pictures of a result: an HTML fragment for a notebook, and a rich renderable."""

    html: Callable[[Any], str]
    rich: Callable[[Any], Any]


VIEWS: dict[str, View] = {}


def register_view(qualified_name: str, html: Callable[[Any], str], rich: Callable[[Any], Any]) -> None:
    """Show instances of the class named `qualified_name` ("inspectlab.runtime.latency.LatencyReport") so."""
    VIEWS[qualified_name] = View(html, rich)


def view_of(obj: object) -> View | None:
    """The view registered for the object's class or the nearest base class that has one."""
    for cls in type(obj).__mro__:
        view = VIEWS.get(f"{cls.__module__}.{cls.__qualname__}")
        if view is not None:
            return view
    return None


class Displayable:
    """Base of a result class: Jupyter calls `_repr_html_`, rich (`rich.print(result)`) calls `__rich__`."""

    __slots__ = ()

    def _repr_html_(self) -> str | None:
        view = view_of(self)
        return None if view is None else view.html(self)  # None: the notebook falls back to the repr

    def __rich__(self) -> Any:
        view = view_of(self)
        return repr(self) if view is None else view.rich(self)
