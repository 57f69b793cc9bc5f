"""The Typer application: global options, option hoisting and the one error boundary."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mxd_cli import __version__
from mxd_cli.console import Output, data_only_stdout
from mxd_cli.errors import Interrupted, MxdError, UsageError

# Global flags and options that may stand anywhere on the command line, so that both
# `mxd --json list` and `mxd list --json` work as scripts expect.
_GLOBAL_FLAGS = {"--json", "--quiet", "-q", "--verbose", "-v", "--no-color", "--debug"}
_GLOBAL_VALUED = {"--config", "-c", "--store", "-s"}


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI systems send on cancel and timeout), handled like Ctrl-C."""


EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as the default handler would end


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` where the program is, so transactions roll back,
    runs are recorded and locks released exactly as on Ctrl-C (main thread only)."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class MxdGroup(TyperGroup):
    """Hoists global options before the subcommand and turns MxdError into exit codes."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's main, with usage errors rendered like every other error: exit 2 and, under
        ``--json``, one ``{"error", "message", "hint"}`` document on stdout."""
        argv = list(sys.argv[1:] if args is None else args)
        options = argv[: argv.index("--")] if "--" in argv else argv
        try:
            code = super().main(
                args=argv,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except typer.TyperException as exc:  # click's usage errors derive from it
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]  # plain `mxd`: the help text
            else:
                usage = UsageError(exc.format_message(), hint=_usage_hint(exc))
                color = "NO_COLOR" not in os.environ
                Output(json_mode="--json" in options, color=color).error(usage)
            code = exc.exit_code
        except typer.Abort:
            code = 1
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self._hoist(args))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is None or getattr(command, "_mxd_ready", False):
            return command
        for param in command.params:
            if getattr(param, "param_type_name", "") == "argument" and param.metavar:
                # Arguments read as their metavar (SELECT...), not as a Python type.
                param.display_type_rich = lambda ctx: None  # type: ignore[attr-defined]
        if command.callback is not None:
            # The command's own work (not parsing or --help) runs with stdout kept for data.
            command.callback = _data_only(command.callback)
        command._mxd_ready = True  # type: ignore[attr-defined]
        return command

    def _hoist(self, args: list[str]) -> list[str]:
        # Find the subcommand, then move global options that follow it to the front. Values
        # of the subcommand's own options are skipped, so `--filter -q` stays a filter.
        idx = next((i for i, a in enumerate(args) if a in self.commands), None)
        if idx is None:
            return args
        command = self.commands[args[idx]]
        valued = {
            opt
            for p in command.params
            if getattr(p, "param_type_name", "") == "option"
            and not getattr(p, "is_flag", False)
            and not getattr(p, "count", False)
            for opt in p.opts
        }
        front, rest = list(args[:idx]), [args[idx]]
        i = idx + 1
        while i < len(args):
            arg = args[i]
            if arg == "--":
                rest.extend(args[i:])
                break
            name = arg.split("=", 1)[0]
            if arg in _GLOBAL_FLAGS or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
                front.append(arg)
            elif name in _GLOBAL_VALUED:
                front.append(arg)
                if "=" not in arg and i + 1 < len(args):
                    front.append(args[i + 1])
                    i += 1
            elif arg in valued:
                rest.extend(args[i : i + 2])
                i += 1
            else:
                rest.append(arg)
            i += 1
        return front + rest

    def invoke(self, ctx: Any) -> Any:
        with _sigterm_as_interrupt():
            return self._invoke(ctx)

    def _invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MxdError as err:
            state = ctx.find_object(State) or State()
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            state.output.error(err)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt as exc:
            state = ctx.find_object(State) or State()
            stopped = Interrupted(terminated=isinstance(exc, Terminated))
            state.output.error(stopped)
            raise typer.Exit(stopped.exit_code) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            state = ctx.find_object(State) or State()
            if state.debug:
                raise
            state.output.unexpected(exc)
            raise typer.Exit(1) from None


def _data_only(callback: Any) -> Any:
    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        with data_only_stdout():
            return callback(*args, **kwargs)

    return guarded


def _usage_hint(exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "mxd"
    return f"see '{command} --help'"


class _ToOutput(logging.Handler):
    """Log records (asset ``ctx.log``, mxd's own warnings) as stderr messages."""

    def __init__(self, out: Output) -> None:
        super().__init__()
        self.out = out
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.WARNING:
            self.out.warn(text)
        elif record.levelno >= logging.INFO:
            self.out.info(text)
        else:
            self.out.debug(text)


def route_logging(out: Output, verbose: int) -> None:
    """Route the ``mxd`` loggers to this invocation's output (replacing earlier ones)."""
    logger = logging.getLogger("mxd")
    for old in [h for h in logger.handlers if isinstance(h, _ToOutput)]:
        logger.removeHandler(old)
    logger.addHandler(_ToOutput(out))
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


@dataclass
class State:
    """Global options of this invocation."""

    config: Path | None = None
    store: str | None = None
    json: bool = False
    quiet: bool = False
    verbose: int = 0
    color: bool = True
    debug: bool = False

    @property
    def output(self) -> Output:
        return Output(json_mode=self.json, quiet=self.quiet, verbose=self.verbose, color=self.color)


app = typer.Typer(
    cls=MxdGroup,
    name="mxd",
    help="Incremental, versioned feature pipelines from the command line (Metaxy-compatible).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mxd {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="Config file (default: METAXY_CONFIG, then "
            "metaxy.toml in this folder or a parent, then pyproject.toml).",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", "-s", metavar="NAME", help="Store name from the config."),
    ] = None,
    json: Annotated[
        bool, typer.Option("--json", metavar="", help="Print one JSON document on stdout.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", metavar="", help="Only errors on stderr.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", metavar="", count=True, help="More detail.")
    ] = 0,
    no_color: Annotated[
        bool, typer.Option("--no-color", metavar="", help="No colours (also NO_COLOR).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", metavar="", help="Show tracebacks.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", metavar="", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """mxd: run only what changed, per sample and per field, and keep Metaxy's store format."""
    ctx.obj = State(
        config=config,
        store=store,
        json=json,
        quiet=quiet,
        verbose=verbose,
        color=not no_color and "NO_COLOR" not in os.environ,
        debug=debug,
    )
    route_logging(ctx.obj.output, verbose)


Selectors = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[SELECT]...",  # (shown as is: optional, repeatable)
        help="Keys, globs (demo/*), +key (with upstream), key+ (with downstream), "
        "tag:NAME. None: all features.",
        show_default=False,
    ),
]
"""The SELECT... argument of the commands that work on features."""


def examples(*lines: str) -> str:
    """A command's epilog: an "Examples:" block whose lines are kept as written."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def state_of(ctx: typer.Context) -> State:
    found = ctx.find_object(State)
    return found if found is not None else State()
