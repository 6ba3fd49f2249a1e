"""The `ragbit` command line (typer).

Each command group lives in its own module and registers on `app`; heavy libraries (torch, numba,
faiss) are imported inside the commands, never at module import, so `ragbit --help` stays instant.
"""
from __future__ import annotations

import functools

import typer

def examples(*lines: str) -> str:
    """A help epilog listing example command lines, kept verbatim (click's \\b marker stops re-wrapping)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


# Plain help (as git and gh print it): no boxes, no `<bool>`/`<str>` type tags; -h works like --help.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Ask questions about your codebase on a CPU, with 1-bit Bonsai models.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version
        try:
            typer.echo(f"ragbit {version('ragbit')}")
        except PackageNotFoundError:
            typer.echo("ragbit (not installed)")
        raise typer.Exit()


@app.callback(epilog=examples('ragbit query "how does X work?"     # indexes the repository first, then answers',
                              'ragbit search "where is X?"', "ragbit chat"))
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Ask questions about your codebase on a CPU, with 1-bit Bonsai models."""


# Command modules register themselves on `app` when imported.
from ragbit.cli import _registry  # noqa: E402,F401


@functools.cache
def _command():
    """typer rebuilds the whole click command tree (every command's parameters) on each `app(...)` call
    (~10 ms); built once per process instead."""
    return _plain_metavars(typer.main.get_command(app))


# What a value-taking option shows in help instead of typer's type tag.
_METAVARS = {"<int>": "N", "<int range>": "N", "<float>": "X", "<float range>": "X", "<path>": "PATH",
             "<str>": "TEXT"}


def _plain_metavars(command):
    """Give every argument its upper-case name and every value-taking option a short metavar (N, PATH, TEXT)
    unless the command set one."""
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)
    for param in command.params:
        if param.metavar is not None or getattr(param, "is_flag", False):
            continue
        if param.param_type_name == "argument":
            param.metavar = param.name.upper()
            param.display_type_rich = lambda ctx=None: ""   # typer appends `<str>` to the name otherwise
        else:
            try:
                tag = param.display_type(None)
            except Exception:        # a typer without display_type: leave its help as it is
                continue
            param.metavar = _METAVARS.get(tag, tag)
    return command


# Options whose value may be left out, and what they mean then: (command, option) -> value. click (as typer
# vendors it) has no optional option values, so the command line is completed before it is parsed.
OPTIONAL_VALUES = {("index", "--ray"): "local"}


def optional_values(argv: list[str] | None) -> list[str] | None:
    """`ragbit index --ray` -> `ragbit index --ray local` (when --ray is last or followed by another option)."""
    import sys
    out = list(sys.argv[1:] if argv is None else argv)
    if not out:
        return out
    for (command, option), value in OPTIONAL_VALUES.items():
        if out[0] == command and option in out:
            i = out.index(option)
            if i + 1 == len(out) or out[i + 1].startswith("-"):
                out.insert(i + 1, value)
    return out


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
    from ragbit.terminal_text import for_terminal      # a flag's value may hold a newline or an escape sequence
    interrupts.install()                       # SIGTERM unwinds like Ctrl-C (no half-written files)
    try:
        rc = _command().main(args=optional_values(argv), prog_name=prog_name, standalone_mode=False)
    except getattr(click_exc, "NoArgsIsHelpError", ()) as e:
        print(e.format_message() if hasattr(e, "format_message") else str(e), file=sys.stderr)
        sys.exit(2)
    except click_exc.UsageError as e:
        cmd = e.ctx.command_path if e.ctx is not None else "ragbit"
        message = e.format_message()
        if isinstance(e, click_exc.NoSuchOption) and e.option_name and not e.option_name.startswith("--"):
            # click reads "-inf" as the flags -i -n -f: name the word the user typed, not its first letter
            typed = next((a for a in (sys.argv[1:] if argv is None else argv)
                          if a.startswith(e.option_name) and a != e.option_name and not a.startswith("--")), None)
            if typed is not None:
                message = f"No such option: {typed}"
        print(f"error: {for_terminal(message, keep_newlines=False)} (see `{cmd} --help`)", file=sys.stderr)
        sys.exit(2)
    except click_exc.ClickException as e:
        print(f"error: {for_terminal(e.format_message(), keep_newlines=False)}", file=sys.stderr)
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt) as e:
        print("interrupted", file=sys.stderr)
        sys.exit(interrupts.exit_code(e))
    except BrokenPipeError:  # `ragbit ... | head`: the reader left; nothing to report
        sys.stderr.close()
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
