"""The `bench` command: one Typer app; each command lives in its own module, imported only when
that command runs, so `bench compare`, `bench report` and `bench export` read JSON without
loading torch (the run and device commands import it when they run)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from harness.errors import BenchError

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("harness.cli.run_cmd", "run_command"),
    "doctor": ("harness.cli.doctor_cmd", "doctor"),
    "check-backend": ("harness.cli.check_cmd", "check_backend"),
    "compare": ("harness.cli.compare_cmd", "compare_command"),
    "plot": ("harness.cli.plot_cmd", "plot_command"),
    "export": ("harness.cli.export_cmd", "export_command"),
    "report": ("harness.cli.report_cmd", "report_command"),
    "list": ("harness.cli.list_cmd", "app"),
}
"""Command name -> (module, attribute): a command function, or a Typer app of subcommands."""


def load_command(name: str) -> Any:
    """The click command of `name`, importing its module."""
    module, attr = COMMANDS[name]
    target = getattr(importlib.import_module(module), attr)
    holder = typer.Typer(add_completion=False)
    holder.callback()(_holder)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    group = typer.main.get_command(holder)
    assert isinstance(group, TyperGroup)
    return group.commands[name]


def _holder() -> None:
    """Makes the Typer that `load_command` builds a group, as `bench` is."""


def command_help(name: str) -> str:
    """The help text of command `name` read from its module's source (the function's
    docstring, or a Typer app's `help=`), without importing the module."""
    module, attr = COMMANDS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ""
    with open(spec.origin, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == attr:
            return inspect.cleandoc(ast.get_docstring(node) or "")
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == attr for t in node.targets
        ):
            call = node.value
            for keyword in call.keywords if isinstance(call, ast.Call) else []:
                if keyword.arg == "help" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return ""


class LazyGroup(TyperGroup):
    """A group whose commands are imported when one is invoked; listing them (`bench --help`)
    shows each one's help read from its source (`command_help`)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        return TyperCommand(cmd_name, help=command_help(cmd_name))

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in COMMANDS and args[0] not in self.commands:
            self.add_command(load_command(args[0]), args[0])
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="bench",
    cls=LazyGroup,
    help="accelbench: is training as good as inference on this accelerator?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _bench() -> None:
    """Makes `bench` a group of commands (the help text is the Typer app's `help`)."""


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a user can cause: BenchError, and the backend and workload registries'
    errors where those modules were loaded (only then can they have been raised)."""
    found: list[type[Exception]] = [BenchError]
    for module, name in (
        ("backends.registry", "BackendError"),
        ("workloads.base", "WorkloadError"),
    ):
        loaded: Any = sys.modules.get(module)
        if loaded is not None:
            found.append(getattr(loaded, name))
    return tuple(found)


def main() -> None:
    """Entry point: user errors print one paragraph on stderr and exit 2, never a traceback."""
    try:
        app()
    except Exception as exc:
        if not isinstance(exc, user_errors()):
            raise
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
