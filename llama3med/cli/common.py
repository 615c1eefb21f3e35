"""What every command shares: the one way a command fails (`error: ...` on stderr and a non-zero exit, the
traceback only with the global `--debug`), the boundary that turns any other exception into such a line, and
`--threads`. Nothing here imports torch or transformers at import time."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit, TyperException

from llama3med.extras import install_hint, missing_package_message

DEBUG_ENV = "LLAMA3MED_DEBUG"
_debug = {"on": False}  # set by the main command's --debug; read when a command fails


def set_debug(on: bool) -> None:
    """Show full tracebacks for failures from now on (the global `--debug`)."""
    _debug["on"] = on


def debug_enabled() -> bool:
    return _debug["on"] or os.environ.get(DEBUG_ENV, "") not in ("", "0")


# Exit codes, one per kind of failure. Bad input (a missing or malformed file, recipe, option value) exits
# with 2, the code click gives its own usage errors, so a script can tell "fix the command" from "it broke";
# anything that failed while running (including a file the command could not read as an image) exits with 1.
RUNTIME_FAILURE = 1
BAD_INPUT = 2


def fail(message: str, code: int = RUNTIME_FAILURE) -> typer.Exit:
    """Print `error: message` to stderr and return the `typer.Exit` to raise (`raise fail(...) from error`):
    `code` is `RUNTIME_FAILURE` or `BAD_INPUT`. With `--debug`, the traceback of the exception being handled
    is printed first."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    if debug_enabled() and sys.exc_info()[1] is not None:
        console.print_exception(show_locals=False)
    console.print(f"[bold red]error:[/bold red] {escape(message)}")
    return typer.Exit(code)


# Exceptions whose message is meant for the user as it is: bad paths and files, bad values, missing packages.
USER_ERRORS = (OSError, ValueError, ImportError, RuntimeError)


def describe_exception(error: BaseException) -> str:
    """One line for an exception no command handled: missing optional packages name the extra to install."""
    if isinstance(error, ModuleNotFoundError) and error.name and install_hint(error.name):
        return missing_package_message(error.name.split(".")[0])
    if isinstance(error, metadata.PackageNotFoundError) and error.args and install_hint(str(error.args[0])):
        return missing_package_message(str(error.args[0]))
    text = str(error).strip() or type(error).__name__
    if isinstance(error, USER_ERRORS):
        return text
    return f"{type(error).__name__}: {text} (unexpected: rerun with --debug for the traceback)"


class ErrorReportingGroup(TyperGroup):
    """The main command group: a command's unhandled exception becomes one `error:` line and exit code 1,
    unless `--debug` is on (then the traceback is shown as usual)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (TyperException, Exit, Abort):  # usage errors, deliberate exits: already reported
            raise
        except Exception as error:
            if debug_enabled():
                raise
            raise fail(describe_exception(error)) from error


Result = TypeVar("Result")


def option_groups(**groups: Callable[..., Any]) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Options that several commands share, declared once. `@option_groups(settings=settings_from_options)` on a
    command with a parameter `settings` shows `settings_from_options`'s parameters (typer options with their
    defaults) in that parameter's place, in `--help` and on the command line, and calls the command with
    `settings_from_options(...)` of the values given. A group is any callable typer could read as a command,
    e.g. a function or a dataclass whose fields carry `typer.Option` annotations."""

    def share(command: Callable[..., Result]) -> Callable[..., Result]:
        # eval_str: typer reads the annotations as objects, and a replaced signature is not evaluated again
        own = inspect.signature(command, eval_str=True)
        members = {name: list(inspect.signature(group, eval_str=True).parameters.values()) for name, group in groups.items()}
        if unknown := sorted(set(groups) - set(own.parameters)):
            raise TypeError(f"{command.__name__} has no parameter {', '.join(unknown)} to put option groups in")
        # keyword-only: a group's defaulted options may then stand before the command's required ones
        parameters = [member.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                      for parameter in own.parameters.values() for member in members.get(parameter.name, [parameter])]

        @functools.wraps(command)
        def run(**values: Any) -> Result:
            for name, group in groups.items():
                values[name] = group(**{member.name: values.pop(member.name) for member in members[name]})
            return command(**values)

        run.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        annotations = {parameter.name: parameter.annotation for parameter in parameters} | {"return": own.return_annotation}
        run.__annotations__ = {name: value for name, value in annotations.items() if value is not inspect.Parameter.empty}
        return run

    return share


Threads = Annotated[
    int | None,
    typer.Option(min=1, help="CPU threads for torch (default: torch's choice). 1 is fastest on a machine shared with other jobs."),
]


def set_threads(threads: int | None) -> None:
    """Bound torch's intra-op threads: on an oversubscribed CPU its spinning worker threads slow every step."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
