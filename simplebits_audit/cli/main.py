"""The ``simplebits`` command line: one typer app, assembled from the command modules.

Every command parses arguments, calls one library function and prints its result. Errors are one
line and exit code 2; ``--debug`` shows the traceback.

Where things are: the options, each declared once, and the option groups several commands share
in :mod:`~simplebits_audit.cli.options` (the mechanism in :mod:`~simplebits_audit.cli.groups`);
help texts that state the library's defaults in :mod:`~simplebits_audit.cli.defaults`; the
commands in :mod:`~simplebits_audit.cli.explaining` (explain, compare, audit),
:mod:`~simplebits_audit.cli.train` (train-estimator, train-simplifier, train, condense) and
:mod:`~simplebits_audit.cli.tools` (report, estimators, bits, demo).
"""

from __future__ import annotations

import sys
import traceback
import warnings
from typing import Any

import typer

from . import explaining, tools, train
from .defaults import LIBRARY_DEFAULTS, LibraryDefaultsCommand, resolve_help
from .options import GLOBAL_OPTIONS, err_console, global_options, session

app = typer.Typer(
    name="simplebits",
    help="Explain and audit PyTorch image classifiers by simplification (SimpleBits).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(global_options)

#: the commands, in the order ``--help`` lists them
COMMANDS = {
    "explain": explaining.explain,
    "compare": explaining.compare,
    "audit": explaining.audit,
    "report": tools.report,
    "estimators": tools.estimators,
    "bits": tools.bits,
    "train-estimator": train.train_estimator,
    "train-simplifier": train.train_simplifier,
    "train": train.train,
    "condense": train.condense,
    "demo": tools.demo,
}
for _name, _command in COMMANDS.items():
    app.command(_name, cls=LibraryDefaultsCommand)(_command)


def hoist_global_options(args: list[str]) -> list[str]:
    """Move global options written after the command (``simplebits audit ... --seed 0``) in front of it.

    Typer only reads the callback's options before the command; users write them anywhere.
    Everything after a ``--`` stays where it is.
    """
    command = next((i for i, a in enumerate(args) if a in COMMANDS), None)
    if command is None:
        return list(args)
    head, rest, moved = list(args[:command]), [], []
    tail = args[command:]
    i = 0
    while i < len(tail):
        arg = tail[i]
        if arg == "--":
            rest += tail[i:]
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            takes_value = GLOBAL_OPTIONS[name] and "=" not in arg
            moved += tail[i : i + 2] if takes_value else [arg]
            i += 2 if takes_value else 1
            continue
        rest.append(arg)
        i += 1
    return head + moved + rest


def _asked_for_debug(argv: list[str]) -> bool:
    """Whether the last of ``--debug`` / ``--no-debug`` on the command line is ``--debug`` (read off the line: an error
    can come before the options are parsed)."""
    flags = [a for a in argv if a in ("--debug", "--no-debug")]
    return bool(flags) and flags[-1] == "--debug"


#: library parameters whose command-line option has another name
LIBRARY_NAMES = {"name_or_path": "estimator", "parameterization": "engine", "class_names": "labels", "layer": "gradcam_layer",
                 "forward_func": "model", "method_options": "gradcam_layer"}

#: options a message may name without being about their flag (class names from the data's folders;
#: ``method_options`` also carries ``--engine``): written as the flag only when the user typed it
FROM_ELSEWHERE = {"labels", "gradcam_layer"}


def flag_message(message: str, argv: list[str]) -> str:
    """``message`` with its leading library parameter names (``batch_size: ...``, ``mean and std: ...``) written as
    the command's flags (``--batch-size: ...``, ``--mean and --std: ...``).

    The library's errors name its parameters; on the command line the user typed a flag, or should
    have (``weights: ...`` for a missing ``--weights``). A message naming anything that is not an
    option of the command (a positional argument such as ``data``), or class names that came from
    the data's folders rather than ``--labels``, stays as it is.
    """
    names, sep, rest = message.partition(": ")
    command = next((a for a in argv if a in COMMANDS), None)
    parts = names.split(" and ")
    if not sep or not all(p.isidentifier() for p in parts) or command is None:
        return message
    flags: dict[str, str] = {}
    typed = {a.split("=", 1)[0] for a in argv if a.startswith("-")}
    for param in typer.main.get_command(app).commands[command].params:
        if param.param_type_name == "option" and (typed & set(param.opts) or param.name not in FROM_ELSEWHERE):
            flag = max(param.opts, key=len)
            flags |= {opt.lstrip("-").replace("-", "_"): flag for opt in param.opts} | {param.name: flag}
    written = [flags.get(LIBRARY_NAMES.get(p, p), flags.get(p)) for p in parts]
    return f"{' and '.join(written)}: {rest}" if None not in written else message


def main() -> None:
    """Console-script entry point: one-line errors unless ``--debug``."""
    sys.argv[1:] = hoist_global_options(sys.argv[1:])
    with warnings.catch_warnings():  # restores Python's own display afterwards (a caller in the same process)
        warnings.showwarning = _one_line_warning
        _run()


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                      line: str | None = None) -> None:
    """A library warning on the command line: ``warning: ...`` on stderr, its parameter names as flags, no source line."""
    if session.debug:  # where it came from, as Python shows it
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", file=sys.stderr)
        return
    print(f"warning: {flag_message(str(message), sys.argv[1:])}", file=sys.stderr)


#: The exit code of an interrupted command (128 + SIGINT, as shells report Ctrl-C).
INTERRUPTED = 130


def _run() -> None:
    try:
        code = app(standalone_mode=False, prog_name="simplebits")
    except (typer.Exit, SystemExit) as stop:
        code = getattr(stop, "exit_code", getattr(stop, "code", 0))
        sys.exit(code or 0)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except Exception as err:  # noqa: BLE001 -- the one place errors become messages
        if session.debug or _asked_for_debug(sys.argv[1:]):
            traceback.print_exc()  # then the same one line and exit code as without --debug
        if hasattr(err, "show") and hasattr(err, "exit_code"):  # a usage error from typer's click
            if type(err).__name__ == "NoArgsIsHelpError":  # a command without arguments: its help
                err.show()
                sys.exit(err.exit_code)
            # one line, as every other error (click's own format takes four)
            ctx = getattr(err, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            print(f"error: {err.format_message()}{hint}", file=sys.stderr)
            sys.exit(err.exit_code)
        print(f"error: {flag_message(str(err), sys.argv[1:])}", file=sys.stderr)  # one line, never wrapped
        sys.exit(2)
    # Outside standalone mode typer turns Ctrl-C (and a job's KeyboardInterrupt after SIGTERM) into a returned 130,
    # and any Exit into its returned code: the command exited 0 after an interruption, silently.
    if code == INTERRUPTED:
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


def _interrupted() -> None:
    # Resumable jobs (audit, train-simplifier, train, condense) have saved their progress.
    err_console.print("interrupted (audit, train-simplifier, train and condense continue where they stopped when rerun)")
    sys.exit(INTERRUPTED)


__all__ = ["COMMANDS", "LIBRARY_DEFAULTS", "LIBRARY_NAMES", "app", "flag_message", "hoist_global_options", "main", "resolve_help"]

if __name__ == "__main__":
    main()
