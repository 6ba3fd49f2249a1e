"""The `ragbit` command line (typer).

Each command group lives in its own module and registers on `app`; heavy libraries (torch, numba,
faiss) are imported inside the commands, never at module import, so `ragbit --help` stays instant.
"""
from __future__ import annotations

import functools

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ask questions about your codebase on a CPU, with 1-bit Bonsai models.")

@app.callback()
def _root() -> None:
    """Ask questions about your codebase on a CPU, with 1-bit Bonsai models."""
    # Present so typer keeps subcommands even while only one is registered.


# Command modules register themselves on `app` when imported.
from ragbit.cli import _registry  # noqa: E402,F401


@functools.cache
def _command():
    """typer rebuilds the whole click command tree (every command's parameters) on each `app(...)` call
    (~10 ms); built once per process instead."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run the CLI. A usage error (unknown flag, missing argument, bad value) is one line and exit code 2,
    not click's framed box: users pipe ragbit into other tools and read errors in logs."""
    import sys

    import typer

    try:  # typer >= 0.20 vendors click; older releases use click itself
        from typer._click import exceptions as click_exc
    except ImportError:
        from click import exceptions as click_exc

    from ragbit.cli import interrupts
    interrupts.install()                       # SIGTERM unwinds like Ctrl-C (no half-written files)
    try:
        rc = _command().main(args=argv, prog_name=prog_name, standalone_mode=False)
    except getattr(click_exc, "NoArgsIsHelpError", ()) as e:
        print(e.format_message() if hasattr(e, "format_message") else str(e), file=sys.stderr)
        sys.exit(2)
    except click_exc.UsageError as e:
        cmd = e.ctx.command_path if e.ctx is not None else "ragbit"
        print(f"error: {e.format_message()} (see `{cmd} --help`)", file=sys.stderr)
        sys.exit(2)
    except click_exc.ClickException as e:
        print(f"error: {e.format_message()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt) as e:
        print("interrupted", file=sys.stderr)
        sys.exit(interrupts.exit_code(e))
    except BrokenPipeError:  # `ragbit ... | head`: the reader left; nothing to report
        sys.stderr.close()
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
