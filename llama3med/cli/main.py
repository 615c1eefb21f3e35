"""The `llama3med` command.

Each area of the package owns a small CLI module with a `register(app)` function; this file only
assembles them. Command modules import heavy libraries (torch, transformers) inside the command
functions so that `llama3med --help` stays fast.
"""

from __future__ import annotations

import importlib

import typer

from llama3med.cli.common import DEBUG_ENV, ErrorReportingGroup, set_debug
from llama3med.runtime import tune_cpu_allocator

app = typer.Typer(
    name="llama3med",
    help="Llama3-Med: high-resolution biomedical vision-language models — build, train, evaluate, serve.",
    cls=ErrorReportingGroup,  # failures are one `error:` line; the traceback only with --debug
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def global_options(
    debug: bool = typer.Option(False, "--debug", envvar=DEBUG_ENV, help="Show the full traceback when a command fails."),
) -> None:
    """Llama3-Med: high-resolution biomedical vision-language models — build, train, evaluate, serve."""
    set_debug(debug)
    tune_cpu_allocator()

# One line per area; order is the order of `--help`.
COMMAND_MODULES = [
    "llama3med.cli.demo_commands",
    "llama3med.cli.model_commands",
    "llama3med.cli.instruct_commands",
    "llama3med.cli.serve_commands",
    "llama3med.cli.eval_commands",
    "llama3med.cli.train_commands",
    "llama3med.cli.image_commands",
    "llama3med.cli.probe_commands",
]

for _module_name in COMMAND_MODULES:
    importlib.import_module(_module_name).register(app)


def main() -> None:
    """Entry point used by `python -m llama3med`."""
    app()
