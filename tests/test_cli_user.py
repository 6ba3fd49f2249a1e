"""The `ragbit` command as a user meets it (issue #21): run as a subprocess through pipes, or in a
pseudo-terminal (pexpect) where the terminal matters; exit codes, output and files are what is checked."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parents[1]
RAGBIT = shutil.which("ragbit") or "ragbit"
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LONG_LINE = ("    return alpha + beta + gamma  # " + "a comment far beyond eighty columns " * 4).rstrip()


def env(**extra) -> dict:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "RAGBIT_FASTPATH": "0"}
    for name in ("COLUMNS", "RAGBIT_MODEL"):
        e.pop(name, None)
    e.update(extra)
    return e


def run(*args: str, cwd: Path, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([RAGBIT, *args], cwd=cwd, env=env(**extra), capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def in_terminal(*args: str, cwd: Path, columns: int = 80) -> tuple[str, int]:
    """What a user sees in a terminal `columns` wide (escape codes removed), and the exit code."""
    child = pexpect.spawn(RAGBIT, list(args), cwd=str(cwd), env=env(TERM="xterm-256color"),
                          dimensions=(40, columns), encoding="utf-8", timeout=300)
    out = child.read()
    child.close()
    return ESCAPES.sub("", out).replace("\r\n", "\n"), child.exitstatus


def make_repo(root: Path) -> Path:
    (root / "src" / "pkg").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "src" / "pkg" / "core.py").write_text(
        "def combine_three_values(alpha, beta, gamma):\n" + LONG_LINE + "\n", encoding="utf-8")
    (root / "src" / "pkg" / "gone.py").write_text("def soon_deleted_helper():\n    return 42\n", encoding="utf-8")
    (root / "README.md").write_text("# Demo\n\nA tiny demo project.\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("user") / "demo")
    r = run("index", "-q", cwd=repo)
    assert r.returncode == 0, r.stderr
    return repo


# ------------------------------------------------------------------------------- 1. whole, plain output
def test_piped_search_output_is_whole_and_plain(indexed):
    r = run("search", "combine three values", "--no-server", cwd=indexed, COLUMNS="40")
    assert r.returncode == 0, r.stderr
    assert LONG_LINE in r.stdout and "\x1b[" not in r.stdout
    assert all(line == line.rstrip() for line in r.stdout.splitlines())


def test_terminal_search_output_wraps_and_has_no_trailing_spaces(indexed):
    out, code = in_terminal("search", "combine three values", "--no-server", cwd=indexed, columns=50)
    assert code == 0, out
    lines = out.splitlines()
    assert max(map(len, lines)) <= 50 and all(line == line.rstrip() for line in lines)
    assert "a comment far beyond eighty columns " * 3 in " ".join(out.split()) + " "   # wrapped, not cut


# ------------------------------------------------------------------------------- 2. one repository, found
def test_commands_find_the_index_from_a_subdirectory(indexed):
    sub = indexed / "src" / "pkg"
    r = run("search", "combine three values", "--no-server", "-k", "1", cwd=sub)
    assert r.returncode == 0 and r.stdout.startswith("1. src/pkg/core.py:1-2"), r.stderr
    r = run("status", cwd=sub)
    assert r.returncode == 0 and f"index: {indexed / '.ragbit'}" in r.stdout, r.stderr
    assert not (sub / ".ragbit").exists()


def test_every_command_names_the_repository_the_same_ways(indexed, tmp_path):
    for args in (["status", str(indexed)], ["status", "--repo", str(indexed)],
                 ["search", "combine", "--no-server", "--repo", str(indexed)]):
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr)
    r = run("status", str(indexed), "--repo", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: two different repositories named"), r.stderr
    r = run("index", "--repo", str(indexed), "-q", cwd=tmp_path)
    assert r.returncode == 0 and f"indexed {indexed}:" in r.stdout, r.stderr


# ------------------------------------------------------------------------------- 7. conventions
def test_help_version_and_bare_command(tmp_path):
    bare = run(cwd=tmp_path)
    assert bare.returncode == 2 and "Usage: ragbit" in bare.stderr and "Examples:" in bare.stderr
    short, long_ = run("-h", cwd=tmp_path), run("--help", cwd=tmp_path)
    assert short.returncode == 0 and short.stdout == long_.stdout and "Commands:" in short.stdout
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and re.fullmatch(r"ragbit \d+\.\d+\.\d+\S*\n", version.stdout)
    for command in ("index", "search", "status", "query", "chat", "generate"):
        r = run(command, "-h", cwd=tmp_path)
        assert r.returncode == 0, (command, r.stderr)
        assert "<bool>" not in r.stdout and "<str>" not in r.stdout and "╭" not in r.stdout, command
        assert f"Examples:\n\n    ragbit {command}" in r.stdout or "Examples:\n\n    echo" in r.stdout, command
    listing = short.stdout.split("Commands:")[1]
    assert "..." not in listing.split("Examples:")[0]            # no summary cut mid-sentence


def test_ctrl_c_exits_130_and_keeps_what_was_committed(tmp_path):
    """Also item 12: query's first-run indexing is headed, says when lexical search is ready, then shows
    the embedding bar."""
    repo = make_repo(tmp_path / "big")
    for i in range(1200):                 # enough chunks that embedding lasts seconds even on a fast CPU
        (repo / f"m{i:03}.py").write_text(f'def handler_{i}(event):\n    """Handle event kind {i} ' +
                                          f'{"and more " * (i % 17)}."""\n    return event * {i}\n',
                                          encoding="utf-8")
    child = pexpect.spawn(RAGBIT, ["query", "what does handler_7 return?"], cwd=str(repo),
                          env=env(TERM="xterm-256color"), dimensions=(40, 100), encoding="utf-8", timeout=300)
    child.expect(f"indexing {repo}: 1,?203 files, 1,?203 chunks")
    child.expect(r"lexical search is ready \(`ragbit search` works now\); embedding 1,?203 chunks")
    child.expect(r"embedding chunks.*\d+/1,?203")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 and "interrupted" in child.before
    r = run("search", "handler_123", "--mode", "lexical", "--no-server", "-k", "1", cwd=repo)
    assert r.returncode == 0 and r.stdout.startswith("1. m123.py:1-3"), r.stderr   # lexical was committed


# ------------------------------------------------------------------------------- 9. the index stays out of git
def test_git_does_not_see_the_index(indexed):
    assert (indexed / ".ragbit" / ".gitignore").read_text(encoding="utf-8").splitlines()[-1] == "*"
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=indexed,
                            capture_output=True, text=True, check=True).stdout
    assert ".ragbit" not in status and "README.md" in status


# ------------------------------------------------------------------------------- 11. stale index
@pytest.mark.search_server
def test_search_says_when_its_files_changed_since_indexing(tmp_path):
    repo = make_repo(tmp_path / "demo")
    assert run("index", "-q", cwd=repo).returncode == 0
    r = run("search", "soon deleted helper", "--no-server", cwd=repo)
    assert r.returncode == 0 and "note:" not in r.stderr, r.stderr
    os.utime(repo / "README.md")                                   # touched, same bytes: not a change
    (repo / "src" / "pkg" / "gone.py").unlink()
    core = repo / "src" / "pkg" / "core.py"
    core.write_text(core.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    r = run("search", "soon deleted helper combine three values demo", "--no-server", cwd=repo)
    assert r.returncode == 0 and "src/pkg/gone.py" in r.stdout
    note = [line for line in r.stderr.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "src/pkg/gone.py (deleted)" in note[0] and "src/pkg/core.py (changed)" in note[0]
    assert "README.md" not in note[0] and "ragbit index" in note[0]
    # the warm server (the console script's fast path) says the same
    from ragbit.config import RagbitConfig
    from ragbit.search import client
    cfg = RagbitConfig.load(repo)
    server = client.spawn_server(cfg)
    try:
        for _ in range(1200):
            hits = client.query(cfg, "soon deleted helper", k=10, mode="hybrid", max_hits_per_file=2)
            if hits is not None:
                break
            time.sleep(0.1)
        assert hits.stale == {"src/pkg/gone.py": "deleted", "src/pkg/core.py": "changed"}
        fast = run("search", "soon deleted helper combine three values demo", cwd=repo, RAGBIT_FASTPATH="1")
        assert fast.stderr == r.stderr and fast.stdout == r.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)


# ------------------------------------------------------------------------------- 10. what was left out
def test_list_skipped_names_each_file_and_its_reason(tmp_path):
    repo = make_repo(tmp_path / "demo")
    (repo / ".env").write_text("API_KEY=not-for-the-index\n", encoding="utf-8")
    (repo / "node_modules" / "x").mkdir(parents=True)
    (repo / "node_modules" / "x" / "a.js").write_text("x\n", encoding="utf-8")
    (repo / "blob.py").write_bytes(b"\x00\x01binary")
    (repo / ".gitignore").write_text("generated/\n", encoding="utf-8")
    (repo / "generated").mkdir()
    (repo / "generated" / "out.py").write_text("x = 1\n", encoding="utf-8")
    r = run("index", "--list-skipped", cwd=repo)
    assert r.returncode == 0, r.stderr
    listed = dict(tuple(line.split("\t")[::-1]) for line in r.stdout.splitlines())
    assert listed == {".env": "secret", "node_modules/": "excluded dir", "blob.py": "binary", "generated/": "ignored",
                      ".git/": "excluded dir"}
    assert not (repo / ".ragbit").exists()                         # listing indexes nothing
    summary = run("index", cwd=repo).stdout
    assert "--list-skipped" in summary


# ------------------------------------------------------------------------------- 3. a default model
def default_model(listing: str) -> str:
    return next(line.split()[1] for line in listing.splitlines() if line.startswith("* ") and "default" not in line)


def test_default_model_precedence_user_config_repo_env_flag(tmp_path):
    repo = make_repo(tmp_path / "demo")
    xdg = tmp_path / "xdg"
    (xdg / "ragbit").mkdir(parents=True)
    base = {"XDG_CONFIG_HOME": str(xdg), "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    assert default_model(run("models", cwd=repo, **base).stdout) == "bonsai-1.7b"
    (xdg / "ragbit" / "config.toml").write_text('[generator]\nmodel = "bonsai-4b"\n', encoding="utf-8")
    r = run("models", cwd=repo, **base)
    assert default_model(r.stdout) == "bonsai-4b" and f"from {xdg / 'ragbit' / 'config.toml'}" in r.stdout
    (repo / "ragbit.toml").write_text('[generator]\nmodel = "bonsai-8b"\n', encoding="utf-8")
    assert default_model(run("models", cwd=repo / "src", **base).stdout) == "bonsai-8b"
    r = run("models", cwd=repo, RAGBIT_MODEL="bonsai-1.7b", **base)
    assert default_model(r.stdout) == "bonsai-1.7b" and "from $RAGBIT_MODEL" in r.stdout
    # a flag beats all of them; without a usable model the warning says how to make one stick
    missing = tmp_path / "nowhere" / "Bonsai-1.7B.gguf"
    r = run("query", "what does combine_three_values do?", "--model", str(missing), "--json", cwd=repo,
            RAGBIT_MODEL="bonsai-1.7b", **base)
    assert r.returncode == 0 and str(missing) in r.stderr, r.stderr
    r = run("query", "what does combine_three_values do?", cwd=repo, **base)
    warning = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert r.returncode == 0 and len(warning) == 1 and "bonsai-8b" in warning[0]
    assert "ragbit pull bonsai-8b" in warning[0] and "RAGBIT_MODEL=" in warning[0]
    assert "sources (retrieved; no answer was generated):" in r.stdout


def test_models_lists_what_is_downloaded_and_pull_knows_it(tmp_path):
    hub = tmp_path / "hub"
    snapshot = hub / "models--prism-ml--Bonsai-4B-gguf" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "Bonsai-4B.gguf").write_bytes(b"\0" * 3_000_000)
    (hub / "models--prism-ml--Bonsai-4B-gguf" / "refs").mkdir()
    (hub / "models--prism-ml--Bonsai-4B-gguf" / "refs" / "main").write_text("0123abc", encoding="utf-8")
    extra = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    r = run("models", cwd=tmp_path, **extra)
    rows = {line.split()[0 if not line.startswith("*") else 1]: line for line in r.stdout.splitlines()[:-1]}
    assert r.returncode == 0 and set(rows) == {"bonsai-1.7b", "bonsai-4b", "bonsai-8b", "ternary-bonsai-1.7b",
                                               "ternary-bonsai-4b", "ternary-bonsai-8b"}
    assert "3 MB" in rows["bonsai-4b"] and str(snapshot / "Bonsai-4B.gguf") in rows["bonsai-4b"]
    assert "not downloaded: ragbit pull bonsai-8b" in rows["bonsai-8b"]
    assert "not downloaded: ragbit pull ternary-bonsai-8b" in rows["ternary-bonsai-8b"]
    r = run("pull", "bonsai-4b", cwd=tmp_path, **extra)
    assert r.returncode == 0 and "already here" in r.stdout
    r = run("pull", "bonsai-8b", cwd=tmp_path, **extra)           # offline: one line, exit 1
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: bonsai-8b")
    r = run("pull", "llama-3", cwd=tmp_path, **extra)
    assert r.returncode == 1 and r.stderr.startswith("error: unknown model 'llama-3'")


# ------------------------------------------------------------------------------- 5. background servers
@pytest.mark.search_server
def test_server_list_and_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))       # the spawned server inherits it
    repo = make_repo(tmp_path / "demo")
    assert run("index", "-q", cwd=repo).returncode == 0
    r = run("server", "list", cwd=repo, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    assert r.returncode == 0 and r.stdout == "no search servers running\n"
    from ragbit.config import RagbitConfig
    from ragbit.search import client
    cfg = RagbitConfig.load(repo)
    assert cfg.search.server_idle_timeout <= 300                           # a laptop-sized idle time
    server = client.spawn_server(cfg)
    try:
        for _ in range(1200):
            listing = run("server", "list", cwd=repo, XDG_RUNTIME_DIR=str(tmp_path / "run")).stdout
            if str(server.pid) in listing:
                break
            time.sleep(0.1)
        row = next(line for line in listing.splitlines() if line.split()[0] == str(server.pid))
        assert row.endswith(str(repo)) and " MB" in row
        # item 2 in the console script's fast path: from a subdirectory it asks the repository's server
        from ragbit import launcher
        monkeypatch.chdir(repo / "src" / "pkg")
        monkeypatch.setenv("RAGBIT_FASTPATH", "1")
        fast = launcher.fast_search(["search", "combine three values", "-k", "1"])
        assert fast is not None and fast["stdout"].startswith("1. src/pkg/core.py:1-2")
        r = run("server", "stop", cwd=repo / "src", XDG_RUNTIME_DIR=str(tmp_path / "run"))
        assert r.returncode == 0 and r.stdout == f"stopped {server.pid} ({repo})\n", r.stderr
        assert server.wait(timeout=10) == 0
        assert run("server", "list", cwd=repo, XDG_RUNTIME_DIR=str(tmp_path / "run")).stdout == \
            "no search servers running\n"
        assert not (repo / ".ragbit" / "search.sock").exists()
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


# ------------------------------------------------------------------------------- 4. first-run compile notice
TINY_MODEL = str(ROOT / "tests" / "fixtures" / "reference" / "tiny-tied-q1_0.gguf")


def test_compile_notice_follows_numbas_cache(tmp_path, monkeypatch, capsys):
    from ragbit import kernel_cache
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NUMBA_DISABLE_JIT", raising=False)
    assert kernel_cache.announce_first_compile() is True
    assert capsys.readouterr().err == kernel_cache.NOTICE + "\n"
    (tmp_path / "home" / "generator").mkdir(parents=True)      # numba mirrors the source path under the dir
    (tmp_path / "home" / "generator" / "layers.rmsnorm-27.py311.nbi").write_bytes(b"")
    assert kernel_cache.announce_first_compile() is False and capsys.readouterr().err == ""


def test_the_compile_notice_follows_what_ran_here(tmp_path, monkeypatch):
    """A marker per (model file, engine settings, engine sources, numba cache): a setting that compiles other kernels
    (the q8 cache, other threads, another model) or an upgrade of the engine's code is not warm; a context size is."""
    from ragbit import kernel_cache
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    engine = {"threads": 0, "decode_kernel": "int11", "kv_cache": "f16"}
    assert not kernel_cache.is_warm(TINY_MODEL, engine)
    kernel_cache.mark_warm(TINY_MODEL, engine)
    assert kernel_cache.is_warm(TINY_MODEL, engine) and kernel_cache.is_warm(TINY_MODEL, {**engine, "n_ctx": 8192})
    assert list((tmp_path / "numba").glob(kernel_cache.WARM_PREFIX + "*"))      # beside numba's own cache
    assert not kernel_cache.is_warm(TINY_MODEL, {**engine, "kv_cache": "q8"})
    assert not kernel_cache.is_warm(TINY_MODEL, {**engine, "threads": 1})
    assert not kernel_cache.is_warm("bonsai-8b", engine)
    source = tmp_path / "engine" / "layers.py"                 # the engine's sources, as an upgrade changes them
    source.parent.mkdir()
    source.write_text("A = 1\n")
    monkeypatch.setattr(kernel_cache, "_package_files", lambda name: [source])
    kernel_cache.mark_warm(TINY_MODEL, engine)
    assert kernel_cache.is_warm(TINY_MODEL, engine)
    source.write_text("A = 2\n")
    assert not kernel_cache.is_warm(TINY_MODEL, engine)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "another-cache"))
    source.write_text("A = 1\n")
    assert not kernel_cache.is_warm(TINY_MODEL, engine)


@pytest.mark.slow
def test_first_generate_says_it_compiles_and_the_second_does_not(tmp_path):
    first = run("generate", "hello", "--model", TINY_MODEL, "--max-tokens", "2", cwd=tmp_path,
                NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    assert first.returncode == 0 and first.stderr.count("compiling the CPU kernels once") == 1, first.stderr
    second = run("generate", "hello", "--model", TINY_MODEL, "--max-tokens", "2", cwd=tmp_path,
                 NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    assert second.returncode == 0 and "compiling" not in second.stderr and second.stdout == first.stdout
    # another KV cache compiles other kernels: said once, although numba's cache is no longer empty
    (tmp_path / "ragbit.toml").write_text('[generator]\nkv_cache = "q8"\n', encoding="utf-8")
    for says in (True, False):
        r = run("generate", "hello", "--model", TINY_MODEL, "--max-tokens", "2", cwd=tmp_path,
                NUMBA_CACHE_DIR=str(tmp_path / "numba"))
        assert r.returncode == 0 and r.stderr.count("compiling the CPU kernels once") == says, r.stderr


# ------------------------------------------------------------------------------- 6. chat in a terminal
@pytest.fixture(scope="module")
def synthetic_model(tmp_path_factory) -> str:
    from generator.synthetic import write_synthetic_gguf
    path = tmp_path_factory.mktemp("model") / "tiny-tied.gguf"
    return str(write_synthetic_gguf(path, "tiny-tied", tokenizer_from=TINY_MODEL, seed=3))


def spawn_chat(repo, model: str, tmp_path, max_tokens: int):
    """`ragbit chat` on a terminal (pty), its history under tmp_path/state."""
    return pexpect.spawn(RAGBIT, ["chat", "--model", model, "--max-tokens", str(max_tokens), "--no-think"],
                         cwd=str(repo), dimensions=(40, 120), encoding="utf-8", timeout=120,
                         env=env(TERM="xterm-256color", XDG_STATE_HOME=str(tmp_path / "state"),
                                 PROMPT_TOOLKIT_NO_CPR="1"))


def test_chat_has_history_slash_commands_and_ctrl_c_stops_only_the_answer(indexed, synthetic_model, tmp_path):
    child = spawn_chat(indexed, synthetic_model, tmp_path, max_tokens=4000)
    child.expect("/help for commands")
    child.sendline("/help")                                    # a command, not a question for the model
    child.expect("/reset +forget the conversation")
    child.sendline("what does combine_three_values return?")
    # the line editor hands the terminal back (bracketed paste off) before the turn runs; a Ctrl-C sent while it
    # still had the terminal in raw mode would be a keypress for the NEXT prompt, not a signal (seen under load)
    child.expect_exact("\x1b[?2004l")
    time.sleep(0.3)       # retrieving or streaming (4,000 tokens of the tiny model: ~1 s now): either way it stops
    child.sendintr()
    child.expect(r"\[answer stopped\]")
    child.send("\x1b[A")                                       # Up: the last question comes back, editable
    child.expect("what does combine_three_values return\\?")
    child.send("\x15")                                         # Ctrl-U clears the line
    child.sendline("/sources")
    child.expect("no answer yet")                              # the stopped turn was not kept
    child.sendline("and what is in the README?")               # the chat goes on after a stop
    child.expect(r"sources")
    child.sendline("/sources")
    child.expect(r"\[1\] \S+:\d+-\d+")
    child.sendline("/reset")
    child.expect("conversation reset")
    child.expect(">")                                          # the next prompt (prompt_toolkit reads raw keys)
    time.sleep(0.3)
    child.send("\x04")                                         # Ctrl-D leaves
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    history = (tmp_path / "state" / "ragbit" / "chat_history").read_text(encoding="utf-8")
    assert "+what does combine_three_values return?" in history   # kept for the next session


def test_chat_answers_then_lists_its_sources(indexed, synthetic_model, tmp_path):
    child = spawn_chat(indexed, synthetic_model, tmp_path, max_tokens=3)
    child.expect("/help for commands")
    child.sendline("what does combine_three_values return?")
    child.expect(r"sources")
    child.sendline("/sources")
    child.expect(r"\[1\] \S+:\d+-\d+")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# ------------------------------------------------------------------------------- a question on standard input
def test_a_question_can_come_from_standard_input(indexed):
    """`gh issue view 12 | ragbit search -`: a report of many lines is read from stdin, and gives the hits the
    same text given as an argument gives; an empty stdin is one error line."""
    report = "combine three values is wrong\n\nWhen alpha, beta and gamma are added the comment is too long.\n"
    as_arg = run("search", report, "--no-server", "--json", cwd=indexed)
    piped = subprocess.run([RAGBIT, "search", "-", "--no-server", "--json"], cwd=indexed, env=env(),
                           input=report.encode(), capture_output=True, timeout=300)
    assert as_arg.returncode == 0 and piped.returncode == 0, piped.stderr
    hits = lambda doc: [(h["path"], h["start_line"]) for h in json.loads(doc)["hits"]]
    assert hits(piped.stdout.decode()) == hits(as_arg.stdout) and hits(as_arg.stdout)
    for command in ("search", "query"):
        empty = subprocess.run([RAGBIT, command, "-"], cwd=indexed, env=env(), input=b"  \n",
                               capture_output=True, timeout=300)
        assert empty.returncode == 1 and empty.stderr.decode().strip().splitlines() == [
            "error: no question on standard input (`-` reads the question from it)"]
