"""Option groups: a set of command-line options declared once and given to every command that takes it.

A group is a plain function whose parameters are typer options and whose result is what the
options mean (a :class:`~simplebits_audit.preprocessing.Preprocessing`, a
:class:`~simplebits_audit.jobs.ModelOptions`, ...); it checks them and raises
``typer.BadParameter`` naming the option. :func:`uses` gives a command the options of its
groups: typer sees the group's options among the command's own, and the command receives the
group's result instead::

    def preprocessing(size: Optional[int] = SIZE, crop: Optional[int] = CROP, ...) -> Preprocessing: ...

    @uses(prep=preprocessing)
    def explain(images: list[Path] = IMAGES, *, prep: Preprocessing, ...) -> None: ...   # --size, --crop, ... on explain

A group may itself use groups (it is then a command-like function of the same kind), and the
groups are built in the order given, before the command runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def uses(**groups: Callable[..., Any]) -> Callable[[F], F]:
    """Give the decorated command the options of ``groups``; its keyword ``name`` receives ``groups[name](**its options)``.

    The command's signature (what typer reads) is its own parameters with each group keyword
    replaced by the group's options. ``TypeError`` if two of them share a name.
    """

    def decorate(command: F) -> F:
        missing = set(groups) - set(inspect.signature(command).parameters)
        if missing:
            raise TypeError(f"{command.__name__}: no parameter for the group(s) {sorted(missing)}")
        members = {name: [p.name for p in _parameters(group)] for name, group in groups.items()}
        # A group's options stand where its keyword stands (the order --help lists them in).
        parameters = [q.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                      for p in inspect.signature(command).parameters.values()
                      for q in (_parameters(groups[p.name]) if p.name in groups else _parameters(command, only=p.name))]
        names = [p.name for p in parameters]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise TypeError(f"{command.__name__}: options {clash} are declared twice (by the command and a group, or by two groups)")

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            built = {name: group(**{k: kwargs.pop(k) for k in members[name]}) for name, group in groups.items()}
            return command(**kwargs, **built)

        # typer reads the parameters off the signature and the types off the annotations: both resolved here.
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters if p.annotation is not inspect.Parameter.empty}
        return run  # type: ignore[return-value]

    return decorate


def _parameters(function: Callable[..., Any], only: str | None = None) -> list[inspect.Parameter]:
    """``function``'s parameters (or the one named ``only``), their annotations evaluated (``from __future__ import annotations``
    leaves strings).

    Only what typer reads is evaluated: a command's group keywords may name types its module
    imports only when it runs (the command line imports the library lazily, so that ``--help`` stays fast).
    """
    namespace = inspect.unwrap(function).__globals__
    return [p.replace(annotation=eval(p.annotation, namespace)) if isinstance(p.annotation, str) else p  # our own annotations
            for p in inspect.signature(function).parameters.values() if only in (None, p.name)]


__all__ = ["uses"]
