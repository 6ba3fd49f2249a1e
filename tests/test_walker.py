"""Repository walker: every skip rule, on small repositories built in tmp_path."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ragbit.indexing import walker
from ragbit.config import WalkConfig
from ragbit.indexing.walker import (SECRET_PATTERNS, SourceFile, WalkError, WalkStats, iter_candidate_paths,
                           walk_repository)


def make(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
    return root


def walk(root: Path, cfg: WalkConfig | None = None) -> tuple[list[str], list[str], WalkStats]:
    warnings: list[str] = []
    stats = WalkStats()
    paths = [f.path for f in walk_repository(root, cfg or WalkConfig(), warn=warnings.append, stats=stats)]
    return paths, warnings, stats


# ==================================================================================================================
# root
# ==================================================================================================================

def test_missing_root_raises_one_line_error_before_iteration(tmp_path):
    with pytest.raises(WalkError) as e:
        walk_repository(tmp_path / "nope", WalkConfig())          # no next(): must raise eagerly
    assert "does not exist" in str(e.value) and "\n" not in str(e.value)
    assert issubclass(WalkError, ValueError)


def test_root_that_is_a_file_raises(tmp_path):
    f = make(tmp_path, {"a.py": "x = 1\n"}) / "a.py"
    with pytest.raises(WalkError, match="not a directory"):
        walk_repository(f, WalkConfig())
    with pytest.raises(WalkError):
        iter_candidate_paths(f, WalkConfig())


def test_source_file_fields_bom_crlf_and_sorted_order(tmp_path):
    raw = b"\xef\xbb\xbfprint('hi')\r\nx = 1\r\n"
    make(tmp_path, {"b.py": raw, "a/z.py": "z\n", "a.py": "a\n", "a0.py": "a0\n", "A.md": "# A\n"})
    files = list(walk_repository(tmp_path, WalkConfig(), warn=pytest.fail))
    paths = [f.path for f in files]
    assert paths == sorted(paths) == ["A.md", "a.py", "a/z.py", "a0.py", "b.py"]
    b = files[-1]
    assert isinstance(b, SourceFile)
    assert b.text == "print('hi')\nx = 1\n"                       # BOM stripped, newlines normalised
    assert b.sha256 == hashlib.sha256(raw).hexdigest()            # of the raw bytes
    assert b.abspath == tmp_path.resolve() / "b.py"
    assert [f.path for f in walk_repository(tmp_path, WalkConfig())] == paths   # deterministic


# ==================================================================================================================
# ignore files
# ==================================================================================================================

def test_nested_gitignore_with_negation_anchors_and_dir_only_patterns(tmp_path):
    make(tmp_path, {
        ".gitignore": "*.log\nout/\n/top_only.txt\n",
        "sub/.gitignore": "!keep.log\n*.tmp\n",
        "a.log": "x", "sub/keep.log": "kept by negation", "sub/other.log": "x",
        "sub/x.tmp": "x", "x.tmp": "root is not under sub/.gitignore",
        "top_only.txt": "x", "sub/top_only.txt": "anchored pattern only matches at root",
        "out/gen.py": "x", "sub/out/gen.py": "x", "sub/deep/out": "a FILE named out: dir-only pattern",
        "main.py": "print()\n",
    })
    paths, warnings, stats = walk(tmp_path)
    assert paths == [".gitignore", "main.py", "sub/.gitignore", "sub/deep/out", "sub/keep.log",
                     "sub/top_only.txt", "x.tmp"]
    assert warnings == []
    assert stats.skipped["ignored"] == 6          # a.log, other.log, sub/x.tmp, top_only.txt, out/, sub/out/


def test_deeper_gitignore_wins_and_ignored_dir_cannot_be_reincluded(tmp_path):
    make(tmp_path, {
        ".gitignore": "!*.py\nlogs/\n!logs/keep.txt\n",
        "pkg/.gitignore": "*.py\n!api.py\n",
        "pkg/api.py": "x", "pkg/impl.py": "x", "top.py": "x", "logs/keep.txt": "x",
    })
    paths, _, _ = walk(tmp_path)
    assert paths == [".gitignore", "pkg/.gitignore", "pkg/api.py", "top.py"]


def test_git_info_exclude(tmp_path):
    make(tmp_path, {".git/info/exclude": "# local\nscratch/\n*.bak\n", ".git/HEAD": "ref: x\n",
                    "scratch/a.py": "x", "a.py.bak": "x", "a.py": "x"})
    paths, _, _ = walk(tmp_path)
    assert paths == ["a.py"]


def test_git_info_exclude_of_a_worktree_pointer_file(tmp_path):
    common = tmp_path / "main.git"
    make(common, {"info/exclude": "*.bak\n", "worktrees/wt/commondir": "../..\n"})
    repo = make(tmp_path / "wt", {".git": f"gitdir: {common / 'worktrees' / 'wt'}\n", "a.py": "x", "b.bak": "x"})
    paths, _, _ = walk(repo)
    assert paths == ["a.py"]                                      # .git file itself is never indexed


def test_ragbitignore_and_config_ignore_take_precedence_over_gitignore(tmp_path):
    make(tmp_path, {
        ".gitignore": "docs/generated.md\n",
        ".ragbitignore": "fixtures/\n!docs/generated.md\n",
        "src/.ragbitignore": "*_pb2.py\n",
        "docs/generated.md": "# re-included by .ragbitignore\n", "fixtures/big.json": "{}",
        "src/a_pb2.py": "x", "src/a.py": "x", "notes/todo.txt": "x",
    })
    paths, _, _ = walk(tmp_path, WalkConfig(ignore=["notes/"]))
    assert paths == [".gitignore", ".ragbitignore", "docs/generated.md", "src/.ragbitignore", "src/a.py"]



def test_translation_catalogs_are_ignored_by_default_and_can_be_brought_back(tmp_path):
    make(tmp_path, {"app/locale/de/LC_MESSAGES/django.po": 'msgid "Invalid"\nmsgstr "Ungueltig"\n',
                    "app/locale/django.pot": 'msgid "Invalid"\n', "app/forms.py": "x = 1\n"})
    paths, _, stats = walk(tmp_path)
    assert paths == ["app/forms.py"]
    assert stats.skipped.get(walker.IGNORED) == 2
    paths, _, _ = walk(tmp_path, WalkConfig(ignore=["!*.po"]))
    assert paths == ["app/forms.py", "app/locale/de/LC_MESSAGES/django.po"]
    (tmp_path / ".ragbitignore").write_text("!*.pot\n")
    paths, _, _ = walk(tmp_path)
    assert paths == [".ragbitignore", "app/forms.py", "app/locale/django.pot"]

# ==================================================================================================================
# always-skipped directories
# ==================================================================================================================

@pytest.mark.parametrize("dirname", [".git", ".hg", ".svn", "node_modules", "__pycache__", ".tox", ".mypy_cache",
                                     ".pytest_cache", "build", "dist", "target", ".ragbit", "ragbit.egg-info",
                                     ".venv", "sub/node_modules", "sub/build"])
def test_always_skipped_directories(tmp_path, dirname):
    make(tmp_path, {f"{dirname}/mod.py": "x = 1\n", "keep.py": "x = 1\n"})
    paths, _, stats = walk(tmp_path)
    assert paths == ["keep.py"]
    assert stats.skipped["excluded dir"] == 1


@pytest.mark.parametrize("dirname", ["venv", "env", "my-python-env", "tools/py311"])
def test_virtualenvs_detected_by_pyvenv_cfg(tmp_path, dirname):
    make(tmp_path, {f"{dirname}/pyvenv.cfg": "home = /usr/bin\n", f"{dirname}/lib/site.py": "x", "keep.py": "x"})
    paths, _, _ = walk(tmp_path)
    assert paths == ["keep.py"]


def test_dirs_named_like_venvs_or_secrets_and_files_named_build_are_kept(tmp_path):
    make(tmp_path, {"env/settings.py": "x", "venv/notes.md": "x", "scripts/build": "#!/bin/sh\n",
                    "docker/credentials/store.py": "x"})
    paths, _, _ = walk(tmp_path)
    assert paths == ["docker/credentials/store.py", "env/settings.py", "scripts/build", "venv/notes.md"]


# ==================================================================================================================
# content and name rules
# ==================================================================================================================

def test_binary_file_skipped_silently_and_counted(tmp_path):
    make(tmp_path, {"blob.py": b"abc\x00def", "late_nul.txt": (b"a" * 79 + b"\n") * 120 + b"\x00", "ok.py": "x"})
    paths, warnings, stats = walk(tmp_path)
    assert paths == ["late_nul.txt", "ok.py"]                     # only the first 8 KB are sniffed
    assert warnings == [] and stats.skipped["binary"] == 1


def test_size_limit(tmp_path):
    make(tmp_path, {"exact.txt": "a\n" * 50, "over.txt": "a\n" * 50 + "b"})
    paths, warnings, stats = walk(tmp_path, WalkConfig(max_file_bytes=100))
    assert paths == ["exact.txt"]
    assert warnings == [] and stats.skipped["too large"] == 1


def test_minified_by_line_length_and_by_name(tmp_path):
    make(tmp_path, {"long.js": "var a;\n" + "x" * 1001 + "\n", "fine.js": "var a;\n" + "x" * 1000 + "\n",
                    "app.min.js": "a\n", "site.min.css": "a\n", "app.js.map": "{}\n"})
    paths, warnings, stats = walk(tmp_path)
    assert paths == ["fine.js"]
    assert warnings == [] and stats.skipped["minified/generated"] == 4


@pytest.mark.parametrize("name", ["package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "Cargo.lock",
                                  "uv.lock", "Pipfile.lock", "composer.lock", "go.sum"])
def test_lock_files(tmp_path, name):
    make(tmp_path, {name: "x\n", f"sub/{name}": "x\n", "keep.toml": "x\n"})
    paths, _, _ = walk(tmp_path)
    assert paths == ["keep.toml"]


SECRET_NAMES = [".env", ".env.local", ".env.production", "server.pem", "tls.key", "cert.p12", "cert.pfx",
                "id_rsa", "id_rsa.pub", "id_dsa", "id_ecdsa", "id_ed25519", "id_ed25519.pub", ".netrc", ".pgpass",
                "credentials", "credentials.json", "release.keystore", ".npmrc", ".pypirc",
                "my-service-account.json", "gcp_service_account_key.json", "client_secret_123.json",
                "terraform.tfstate", ".git-credentials", ".envrc", "secrets.yaml", "secrets.yml", "secret.yaml",
                "secret.yml", "prod.secrets.yaml", "prod.secrets.yml", "terraform.tfvars", "prod.tfvars",
                "prod.tfvars.json", ".terraformrc", "terraform.rc", "kubeconfig", "dev.kubeconfig", ".s3cfg", ".boto",
                ".vault-token", "htpasswd", "AuthKey.p8", "backup.gpg", "key.asc", "a.jceks", "vpn.ovpn"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secrets_skipped_even_when_explicitly_reincluded(tmp_path, name):
    make(tmp_path, {name: "SECRET=1\n", f"deep/er/{name}": "SECRET=1\n", "keep.py": "x\n",
                    ".ragbitignore": "!*\n"})
    paths, warnings, stats = walk(tmp_path)
    assert paths == [".ragbitignore", "keep.py"]
    assert warnings == [] and stats.skipped["secret"] == 2


def test_every_secret_pattern_is_exercised():
    """Guard for the list above: each pattern of walker.SECRET_PATTERNS matches at least one tested name."""
    from pathspec import GitIgnoreSpec
    for pattern in SECRET_PATTERNS:
        spec = GitIgnoreSpec.from_lines([pattern])
        assert any(spec.match_file(n) for n in SECRET_NAMES + ["a.jks", "a.ppk", "a.kdbx", "_netrc", ".htpasswd",
                                                               ".dockercfg", "a.tfstate.backup"]), pattern


def test_media_and_archives_skipped_without_reading(tmp_path, monkeypatch):
    make(tmp_path, {"logo.png": "not really a png", "data.zip": "x", "font.woff2": "x", "model.gguf": "x",
                    "a.py": "x\n", "Photo.JPG": "x"})
    opened: list[str] = []
    real = walker.read_bytes
    monkeypatch.setattr(walker, "read_bytes", lambda p: opened.append(Path(p).name) or real(p))
    paths, _, stats = walk(tmp_path)
    assert paths == ["a.py"] and opened == ["a.py"]
    assert stats.skipped["media"] == 5


def test_text_that_is_not_utf8_gives_exactly_one_warning(tmp_path):
    make(tmp_path, {"latin1.py": "caf\xe9 = 1\n".encode("latin-1"), "ok.py": "x\n"})
    paths, warnings, stats = walk(tmp_path)
    assert paths == ["ok.py"]
    assert len(warnings) == 1 and warnings[0].startswith("skipped latin1.py: ") and "\n" not in warnings[0]
    assert stats.skipped["undecodable"] == 1


def test_unreadable_file_gives_exactly_one_warning(tmp_path, monkeypatch):
    """Tests often run as root, where chmod 000 does not block reads: simulate the OS refusing the read."""
    make(tmp_path, {"src/x.py": "x\n", "src/y.py": "y\n"})
    real = walker.read_bytes

    def refuse(path):
        if Path(path).name == "x.py":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(walker, "read_bytes", refuse)
    paths, warnings, stats = walk(tmp_path)
    assert paths == ["src/y.py"]
    assert warnings == ["skipped src/x.py: permission denied"]
    assert stats.skipped["unreadable"] == 1


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read chmod 000 files")
def test_unreadable_file_really_chmod_000(tmp_path):
    make(tmp_path, {"x.py": "x\n", "y.py": "y\n"})
    (tmp_path / "x.py").chmod(0)
    try:
        paths, warnings, _ = walk(tmp_path)
    finally:
        (tmp_path / "x.py").chmod(0o644)
    assert paths == ["y.py"] and warnings == ["skipped x.py: permission denied"]


# ==================================================================================================================
# symlinks
# ==================================================================================================================

def test_symlinks_outside_repository_are_not_followed(tmp_path):
    outside = make(tmp_path / "outside", {"secret_notes.py": "x\n", "pkg/mod.py": "x\n"})
    repo = make(tmp_path / "repo", {"a.py": "x\n", "real/b.py": "x\n"})
    (repo / "file_link.py").symlink_to(outside / "secret_notes.py")
    (repo / "dir_link").symlink_to(outside / "pkg", target_is_directory=True)
    (repo / "inside_link.py").symlink_to(repo / "a.py")
    (repo / "dangling.py").symlink_to(repo / "missing.py")
    paths, warnings, stats = walk(repo)
    assert paths == ["a.py", "inside_link.py", "real/b.py"]
    assert warnings == []
    assert stats.skipped["symlink outside repo"] == 2 and stats.skipped["broken symlink"] == 1


def test_symlinked_directory_inside_repository_is_followed_once_per_path(tmp_path):
    repo = make(tmp_path / "repo", {"lib/core/a.py": "x\n"})
    (repo / "alias").symlink_to(repo / "lib", target_is_directory=True)
    (repo / "lib" / "core" / "back").symlink_to(repo / "lib", target_is_directory=True)   # cycle through alias
    paths, _, stats = walk(repo)
    assert paths == ["alias/core/a.py", "lib/core/a.py"]
    assert stats.skipped["symlink loop"] == 2                     # alias/core/back and lib/core/back


def test_symlink_cycles_terminate(tmp_path):
    repo = make(tmp_path / "repo", {"a/x.py": "x\n", "b.py": "x\n"})
    (repo / "a" / "up").symlink_to(repo, target_is_directory=True)      # a/up -> repo root (an ancestor)
    (repo / "a" / "self").symlink_to(repo / "a", target_is_directory=True)
    (repo / "c").symlink_to(repo / "d", target_is_directory=True)      # c -> d -> c
    (repo / "d").symlink_to(repo / "c", target_is_directory=True)
    paths, _, stats = walk(repo)
    assert paths == ["a/x.py", "b.py"]
    assert stats.skipped["symlink loop"] == 2


# ==================================================================================================================
# candidates and stats
# ==================================================================================================================

def test_iter_candidate_paths_reads_nothing(tmp_path, monkeypatch):
    make(tmp_path, {"a.py": "x\n", "blob.dat2": b"\x00\x01", "node_modules/x.js": "x", ".env": "K=1",
                    "big.txt": "x" * 200})
    monkeypatch.setattr(walker, "read_bytes", lambda p: pytest.fail(f"read {p}"))
    got = list(iter_candidate_paths(tmp_path, WalkConfig(max_file_bytes=100)))
    root = tmp_path.resolve()
    assert got == [root / "a.py", root / "blob.dat2"]          # content rules (binary) need a read: not applied
    assert [p.relative_to(root).as_posix() for p in got] == ["a.py", "blob.dat2"]


def test_stats_summary(tmp_path):
    make(tmp_path, {"a.py": "x\n", "b.xyz": b"\x00", "c.xyz": b"\x00", ".env": "x", "img.png": "x"})
    paths, _, stats = walk(tmp_path)
    assert paths == ["a.py"] and stats.files == 1 and stats.bytes == 2
    assert stats.summary() == "skipped 2 binary, 1 media, 1 secret"
    assert WalkStats().summary() == ""


def test_unreadable_directory_gives_one_warning_and_the_walk_goes_on(tmp_path, monkeypatch):
    make(tmp_path, {"locked/a.py": "x\n", "open/b.py": "x\n"})
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", scandir)
    paths, warnings, stats = walk(tmp_path)
    assert paths == ["open/b.py"]
    assert warnings == ["skipped locked/: permission denied"]
    assert stats.skipped["unreadable"] == 1


def test_secrets_by_location_and_secret_directories_are_not_read(tmp_path):
    make(tmp_path, {".docker/config.json": '{"auths": {}}\n', ".kube/config": "x\n", "home/.aws/credentials": "x\n",
                    ".ssh/known_hosts": "x\n", ".gnupg/pubring.kbx": "x\n", "app/config.json": "{}\n", "keep.py": "x\n"})
    paths, warnings, stats = walk(tmp_path)
    assert paths == ["app/config.json", "keep.py"]
    assert stats.skipped["secret"] == 5


def test_secrets_inside_read_files_are_masked_line_numbers_kept(tmp_path):
    text = 'import os\nTOKEN = "ghp_R8x2Kq9Lm4Tz7Vb1Nw6Yc3Hd5Fj0Gs8Pa2Qe"\nprint(TOKEN)\n'
    make(tmp_path, {"app.py": text})
    stats = WalkStats()
    [sf] = list(walk_repository(tmp_path, WalkConfig(), lambda m: None, stats))
    assert "ghp_" not in sf.text and sf.text.splitlines()[2] == "print(TOKEN)"
    assert stats.secrets_masked == 1 and stats.files_masked == 1


def test_name_rules_as_one_regex_match_like_pathspec():
    """The walker tests a file name against the secret and generated rules with one alternation per spec;
    it must agree with pathspec on names made from every pattern (and near misses)."""
    import random

    from ragbit.indexing import walker
    rng = random.Random(0)
    names = ["a.py", "README.md", "x.pyc", "a.key.txt", "id_rsa.pub"]
    for pattern in walker.SECRET_PATTERNS + walker.GENERATED_PATTERNS:
        name = pattern.strip().replace("*", rng.choice(["", "abc", "x.y"])).replace("?", "q").strip("/")
        names += [name, name + ".bak", "pre" + name, name.upper()]
    for spec, one in ((walker.SECRET_SPEC, walker._SECRET_NAME), (walker.GENERATED_SPEC, walker._GENERATED_NAME)):
        assert [bool(one.match(n)) for n in names] == [bool(spec.match_file(n)) for n in names]
        assert any(one.match(n) for n in names)


def test_an_ignore_file_without_negations_decides_as_pathspec_does():
    """A layer without `!` patterns is matched as one regex: the verdict must be pathspec's for every path."""
    import itertools

    from pathspec import GitIgnoreSpec

    from ragbit.indexing.walker import _decide, _IgnoreFile
    lines = ["*.po", "/build/", "docs/**/*.txt", "a?c.py", "**/tmp", "node_modules/", "", "# note", "*.min.js",
             "[Tt]est_*.py", "deep/x/"]
    unanchored = [x for x in lines if x and "/" not in x.rstrip("/") and not x.startswith("#")]   # one shared head
    names = ["a.po", "build", "docs/x/y.txt", "abc.py", "tmp", "node_modules", "x.min.js", "Test_a.py", "ok.py",
             "deep/x", "deep"]
    for spec_lines in (lines, unanchored):
        fast = _IgnoreFile.of("", GitIgnoreSpec.from_lines(spec_lines))
        slow = _IgnoreFile("", GitIgnoreSpec.from_lines(spec_lines))
        assert fast.one is not None and slow.one is None
        for parts in itertools.product(["", "src/", "build/", "docs/a/", "deep/"], names):
            rel = "".join(parts)
            for is_dir in (False, True):
                assert _decide((fast,), rel, is_dir) == _decide((slow,), rel, is_dir), (rel, is_dir)
    empty = _IgnoreFile.of("", GitIgnoreSpec.from_lines([]))
    assert not _decide((empty,), "anything.py", False)
    negated = _IgnoreFile.of("", GitIgnoreSpec.from_lines(["*.py", "!keep.py"]))
    assert negated.one is None and not _decide((negated,), "keep.py", False) and _decide((negated,), "x.py", False)
