"""`ragbit query` and `ragbit chat`: retrieved code in, cited answer out.

Output contract (scripts rely on it):
- the answer streams to stdout as it is generated, then a `sources:` list of `[n] path:start-end`;
- progress, notes and timings go to stderr;
- no usable model (offline hub, missing or corrupt file): the retrieved sources are still printed, plus
  ONE `warning: no answer generated: ...` line on stderr, and the exit code is 0 - the sources are a
  useful result on their own (a script can tell by the `error` field of --json, or the empty answer);
- every other failure (no such repo, bad flag, locked index): one `error: ...` line, exit code 1.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ragbit.cli import app, examples
from ragbit.cli.boundary import guarded, question_text, repo_config
from ragbit.terminal_text import for_terminal


def _load_config(repo: Optional[Path], model: Optional[str], k: Optional[int], budget: Optional[int],
                 think: Optional[bool], max_tokens: Optional[int], index_dir: Optional[str],
                 grounding: Optional[bool] = None):
    return repo_config(repo, {"generator": {"model": model, "max_tokens": max_tokens},
                          "query": {"k": k, "budget": budget, "thinking": think, "grounding": grounding},
                          "index": {"dir": index_dir}})


# ---------------------------------------------------------------------------------------------- printing
def _echo_err(text: str) -> None:
    typer.echo(text, err=True)


def _print_context(answer) -> None:
    ctx = answer.context
    if ctx is None:
        _echo_err("context: not packed (no tokenizer without a model)")
        return
    _echo_err(f"--- context: {len(ctx.blocks)} blocks, {ctx.tokens} of {ctx.budget} tokens ---")
    _echo_err(ctx.text)
    _echo_err("--- end of context ---")


def _print_sources(answer) -> None:
    if not answer.sources:
        typer.echo("sources: none (nothing was retrieved)")
        return
    if answer.error:
        heading = "sources (retrieved; no answer was generated):"
    elif all(s.cited for s in answer.sources):
        heading = "sources:"
    else:
        heading = "sources (the answer cited no block; all context blocks):"
    typer.echo(heading)
    for s in answer.sources:
        typer.echo(f"  {for_terminal(str(s), keep_newlines=False)}")
    if answer.context is not None and answer.context.omitted:
        typer.echo(answer.context.omitted_summary())


def _print_grounding(answer) -> None:
    """One line under the answer: what it names, checked against the index (unknown names first to the eye)."""
    g = getattr(answer, "grounding", None)
    line = g.summary() if g is not None and answer.text else ""
    if line:
        typer.echo(for_terminal(line, keep_newlines=False))


def _print_timings(answer) -> None:
    t, st = answer.timings, answer.stats
    parts = [f"{k[:-2]} {t[k]:.2f}s" for k in ("index_s", "retrieval_s", "pack_s", "load_s", "ttft_s") if k in t]
    if st is not None:
        parts.insert(0, f"prompt {st.prompt_tokens} tokens (context {answer.context.tokens})")
        parts.append(f"{st.generated_tokens} tokens at {t.get('gen_tokens_per_s', 0.0):.1f} tok/s")
    _echo_err("[" + ", ".join(parts) + "]")


def _announce_repair(note: str) -> None:
    """Between the first answer (already streamed) and the repaired one."""
    typer.echo("\n")
    typer.echo(for_terminal(f"[{note}]", keep_newlines=False))


def _note(line: str) -> None:
    """What the index is doing for this question (e.g. embedding in the background): one line on stderr."""
    _echo_err(f"note: {line}")


def _stream_to_stdout(piece: str) -> None:
    sys.stdout.write(for_terminal(piece))     # the model may copy escapes it read in the context
    sys.stdout.flush()


def _show_answer(answer: Any, streamed: bool, show_context: bool) -> None:
    if show_context:
        _print_context(answer)
    if answer.error:
        _echo_err(f"warning: {answer.error}")
    elif not streamed:
        typer.echo(for_terminal(answer.text))
    if answer.text:
        typer.echo("" if answer.text.endswith("\n") else "\n")
    _print_grounding(answer)
    _print_sources(answer)


# ---------------------------------------------------------------------------------------------- query
@app.command(short_help="Ask a question; get a cited answer.", epilog=examples(
    'ragbit query "how does the index stay consistent after a crash?"',
    'ragbit query "what calls Searcher.search?" --model ~/models/Bonsai-1.7B.gguf',
    'ragbit query "where is the config validated?" --json',
    'gh issue view 12 | ragbit query -'))
def query(
    question: str = typer.Argument(..., help="your question about the code (- reads it from standard input)"),
    repo: Optional[Path] = typer.Option(None, "--repo", help="repository to ask about, indexed first if "
                                        "needed (default: the one around the working directory)"),
    model: Optional[str] = typer.Option(None, "--model", help="bonsai-1.7b|4b|8b, ternary-bonsai-1.7b|4b|8b, or a path to .gguf"),
    k: Optional[int] = typer.Option(None, "-k", min=1, help="chunks retrieved before packing (default 20)"),
    budget: Optional[int] = typer.Option(None, "--budget", min=1, help="context tokens (default 1500)"),
    show_context: bool = typer.Option(False, "--show-context", help="print the packed context (stderr)"),
    think: Optional[bool] = typer.Option(None, "--think/--no-think", help="let the model reason first (slower)"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="answer length limit"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document instead of streaming "
                                 "(schema ragbit.query/1, docs/json.md)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="with --json: include the whole prompt"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives (default REPO/.ragbit)"),
    grounding: Optional[bool] = typer.Option(None, "--grounding/--no-grounding", help="check the names, calls, "
                                             "paths and citations of the answer against the index (default on)"),
    repair: bool = typer.Option(False, "--repair", help="when the answer names something undefined that is close "
                                "to a defined name, answer once more with that definition in the context"),
) -> None:
    """Ask a question about a repository: retrieve, pack, stream a cited answer.

    Indexes the repository first if needed. Without a usable model (offline, missing or corrupt file) the
    retrieved sources are still printed, with one warning line on stderr, and the exit code is 0.
    """
    question = question_text(question)

    def go():
        from ragbit.pipeline.standard import ask
        cfg = _load_config(repo, model, k, budget, think, max_tokens, index_dir, grounding)
        return ask(cfg, question, on_token=None if as_json else _stream_to_stdout, repair=repair,
                   on_repair=None if as_json else _announce_repair, on_note=_note)
    answer = guarded(go)
    if as_json:
        if answer.error:
            _echo_err(f"warning: {answer.error}")
        from ragbit.json_forms import query_document
        json.dump(query_document(answer, verbose=verbose), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    _show_answer(answer, streamed=True, show_context=show_context)
    if not answer.error:
        _print_timings(answer)


# ---------------------------------------------------------------------------------------------- chat
@app.command(short_help="A conversation about a repository.", epilog=examples(
    "ragbit chat", "ragbit chat --repo ~/src/project --model bonsai-4b"))
def chat(
    repo: Optional[Path] = typer.Option(None, "--repo", help="repository to talk about (default: the one "
                                        "around the working directory)"),
    model: Optional[str] = typer.Option(None, "--model", help="bonsai-1.7b|4b|8b, ternary-bonsai-1.7b|4b|8b, or a path to .gguf"),
    k: Optional[int] = typer.Option(None, "-k", min=1, help="chunks retrieved per question"),
    budget: Optional[int] = typer.Option(None, "--budget", min=1, help="context tokens per question"),
    think: Optional[bool] = typer.Option(None, "--think/--no-think", help="let the model reason first (slower)"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="answer length limit"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives (default REPO/.ragbit)"),
    grounding: Optional[bool] = typer.Option(None, "--grounding/--no-grounding", help="check each answer's "
                                             "names, calls, paths and citations against the index (default on)"),
    repair: bool = typer.Option(False, "--repair", help="answer once more when an answer names something "
                                "undefined that is close to a defined name (with that definition in the context)"),
) -> None:
    """A conversation about a repository: line editing and history on a terminal, one question per line
    from a pipe; /help lists the commands (/sources, /reset, /exit)."""
    def setup():
        from ragbit.pipeline.conversation import Conversation
        return Conversation(_load_config(repo, model, k, budget, think, max_tokens, index_dir, grounding),
                            repair=repair)
    conversation = guarded(setup)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:                      # Ctrl-C stops an answer and the chat goes on: never break an import
        from ragbit.cli.interrupts import hold_ctrl_c_during_imports
        hold_ctrl_c_during_imports()
    read = _line_reader(interactive)
    if interactive:
        _echo_err(f"ragbit chat about {conversation.cfg.repo} ({conversation.cfg.generator.model}); "
                  "/help for commands, Ctrl-C stops an answer, Ctrl-D quits")
    turns = _ChatTurns(conversation)
    while True:
        try:
            if not turns.next(read):
                break
        except KeyboardInterrupt as e:   # Ctrl-C: at the prompt it clears the line; otherwise it stops the answer
            from ragbit.cli.interrupts import Terminated
            if not interactive or isinstance(e, Terminated):
                raise
            if turns.answering:
                sys.stdout.write("\n")
                _echo_err("[answer stopped]")
            turns.answering = False


class _ChatTurns:
    """One turn of `ragbit chat` at a time: read a line, run a command or answer it. A Ctrl-C anywhere in a
    turn (KeyboardInterrupt) ends only that turn; the caller decides what to say."""

    def __init__(self, conversation):
        self.conversation, self.last, self.answering = conversation, None, False

    def next(self, read) -> bool:
        """Handle one line; False when the chat should end (EOF or /exit)."""
        try:
            question = read().strip()
        except EOFError:
            return False
        if not question:
            return True
        if question.startswith("/"):
            if question.split()[0].lower() == "/reset":
                self.last = None
            return _slash_command(question, self.conversation, self.last)
        self.answering = True        # an interrupted turn is not kept by Conversation.ask
        answer = guarded(lambda: self.conversation.ask(question, on_token=_stream_to_stdout,
                                                       on_repair=_announce_repair, on_note=_note),
                         keep_ctrl_c=True)
        self.last = answer
        _show_answer(answer, streamed=True, show_context=False)
        typer.echo("")
        self.answering = False
        return True

CHAT_HELP = """\
/help      this list
/sources   the sources of the last answer
/reset     forget the conversation so far (the index and the model stay loaded)
/exit      leave (Ctrl-D does too)
Up/Down recall earlier questions; Ctrl-C stops an answer."""


def _slash_command(command: str, conversation, last) -> bool:
    """Run a chat command; False means leave the chat."""
    name = command.split()[0].lower()
    if name in ("/exit", "/quit"):
        return False
    if name == "/help":
        typer.echo(CHAT_HELP)
    elif name == "/sources":
        if last is None:
            typer.echo("no answer yet")
        else:
            _print_sources(last)
    elif name == "/reset":
        conversation.reset()
        typer.echo("conversation reset")
    else:
        typer.echo(f"unknown command {name}; /help lists them")
    return True


def _history_file():
    """Questions asked in `ragbit chat`, kept across sessions like a shell's history ($XDG_STATE_HOME)."""
    import os
    state = os.environ.get("XDG_STATE_HOME", "").strip()
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local" / "state"
    path = base / "ragbit" / "chat_history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path


def _line_reader(interactive: bool):
    """A function returning the next question (EOFError at the end): prompt_toolkit with line editing and
    history on a terminal, plain lines from a pipe."""
    if not interactive:
        def read_line() -> str:
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            return line
        return read_line
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    path = _history_file()
    session = PromptSession(history=FileHistory(str(path)) if path else InMemoryHistory())
    return lambda: session.prompt("> ")
