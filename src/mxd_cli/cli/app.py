"""The Typer application: global options, option hoisting and the one error boundary."""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mxd_cli import __version__
from mxd_cli.console import Output
from mxd_cli.errors import MxdError

# Global flags and options that may stand anywhere on the command line, so that both
# `mxd --json list` and `mxd list --json` work as scripts expect.
_GLOBAL_FLAGS = {"--json", "--quiet", "-q", "--verbose", "-v", "--no-color", "--debug"}
_GLOBAL_VALUED = {"--config", "-c", "--store", "-s"}


class MxdGroup(TyperGroup):
    """Hoists global options before the subcommand and turns MxdError into exit codes."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self._hoist(args))

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
        try:
            return super().invoke(ctx)
        except MxdError as err:
            state = ctx.find_object(State) or State()
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            state.output.error(err)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            state = ctx.find_object(State) or State()
            state.output.info("Interrupted.")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            state = ctx.find_object(State) or State()
            if state.debug:
                raise
            state.output.unexpected(exc)
            raise typer.Exit(1) from None


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
    add_completion=False,
    pretty_exceptions_enable=False,
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
            help="Config file (default: METAXY_CONFIG, then "
            "metaxy.toml in this folder or a parent, then pyproject.toml).",
        ),
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", "-s", help="Store name from the config.")
    ] = None,
    json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail.")] = 0,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colours (also NO_COLOR).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """mxd: run only what changed, per sample and per field, and keep Metaxy's store format."""
    if "POLARS_ENGINE_AFFINITY" not in os.environ:
        # mxd's plans are joins and hashes over frames already in memory; Polars' streaming
        # engine ran them 2-3x slower with 1.5x the peak memory (benchmarks/, N = 1M).
        import polars as pl

        pl.Config.set_engine_affinity("in-memory")
    ctx.obj = State(
        config=config,
        store=store,
        json=json,
        quiet=quiet,
        verbose=verbose,
        color=not no_color and "NO_COLOR" not in os.environ,
        debug=debug,
    )


Selectors = Annotated[
    list[str] | None,
    typer.Argument(
        help="Keys, globs (demo/*), +key (with upstream), key+ (with downstream), "
        "tag:NAME. None: all features.",
        show_default=False,
    ),
]
"""The SELECT... argument of the commands that work on features."""


def state_of(ctx: typer.Context) -> State:
    found = ctx.find_object(State)
    return found if found is not None else State()
