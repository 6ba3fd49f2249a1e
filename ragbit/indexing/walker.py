"""Walk a repository and yield the text files worth indexing.

Rules, in the order they are applied (directories are pruned before anything below them is looked at):

1. always-skipped directories: VCS metadata, virtualenvs (any directory holding `pyvenv.cfg` or `conda-meta`),
   dependency and build output (`node_modules`, `build`, `dist`, `target`, `*.egg-info`, caches), `.ragbit`;
2. `WalkConfig.include` (when set): only files matching one of its gitignore-style patterns are kept, and a
   directory no pattern can reach below is pruned unread (`src/**` never lists `vendor/`);
3. ignore files, git semantics via `pathspec.GitIgnoreSpec`: `.gitignore` in every directory (patterns relative
   to it, deeper files win), `.git/info/exclude` (lowest), and `.ragbitignore` in every directory plus
   `WalkConfig.ignore` (highest, so a `!pattern` there can re-include something git ignores); below them all,
   `DEFAULT_IGNORE_PATTERNS` (translation catalogs `*.po`, `*.pot`), which any of those files can override;
4. secrets, always, whatever the ignore files say (`.env`, keys, credentials, ...; by name, never read, and
   directories such as `.ssh`); secrets inside the files that are read are masked in place
   (`ragbit.indexing.secret_masking`) before anything else sees the text;
5. by name, without reading: media/archive/binary extensions, lock files, `*.min.js`, `*.map`;
6. by size (`max_file_bytes`), then by content: NUL byte in the first 8 KB (binary), not UTF-8 (one warning),
   a line longer than `max_line_chars` (minified or generated).

Stat stamps: a caller that indexed the repository before may pass `known(path, stamp)`, which returns the
sha256 it recorded when the file's stamp (size, mtime, ctime, inode from the directory walk's stat) is the one it
saw then. Such a file is yielded with `text=None` and is not read: a one-file re-index of Django no longer
reads and hashes 4k files. Only stamps that were `settled` when recorded may be trusted (see there).

Symlinks are followed only when they resolve inside the repository; a directory link that leads back to one of
its own ancestors is not entered again. Skips are counted in `WalkStats`; only problems the user may want to fix
(unreadable, undecodable) produce a warning line.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from pathspec import GitIgnoreSpec

from ragbit.config import WalkConfig
from ragbit.errors import RagbitError
from ragbit.indexing.secret_masking import mask_secrets

# ==================================================================================================================
# fixed rules
# ==================================================================================================================

VCS_NAMES = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs"})   # skipped as directories AND files (worktrees)
SKIP_DIRS = VCS_NAMES | frozenset({
    ".venv", "node_modules", "bower_components", "__pycache__",         # dependencies
    ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis",   # tool caches
    "build", "dist", "target",                                          # build output
    ".ragbit",                                                          # our own index
})
SKIP_DIR_SUFFIXES = (".egg-info",)
VENV_MARKERS = ("pyvenv.cfg", "conda-meta")       # a directory holding one of these is a Python environment

SECRET_PATTERNS = (
    ".env", ".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "*.keystore", "*.jks", "*.ppk", "*.kdbx",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    ".netrc", "_netrc", ".pgpass", ".git-credentials", ".htpasswd", ".npmrc", ".pypirc", ".dockercfg",
    "credentials", "credentials.json", "*service-account*.json", "*service_account*.json",
    "client_secret*.json", "*.tfstate", "*.tfstate.*",
    ".envrc", "secrets.yaml", "secrets.yml", "secret.yaml", "secret.yml", "*.secrets.yaml", "*.secrets.yml",
    "terraform.tfvars", "*.tfvars", "*.tfvars.json", ".terraformrc", "terraform.rc", "kubeconfig", "*.kubeconfig",
    ".s3cfg", ".boto", ".vault-token", "htpasswd", "*.p8", "*.gpg", "*.asc", "*.jceks", "*.ovpn",
)
# Secrets recognised by where they are (the file name alone is ordinary), matched on the repository path.
SECRET_PATH_PATTERNS = ("**/.docker/config.json", "**/.kube/config", "**/.aws/config", "**/.aws/credentials",
                        "**/.config/gh/hosts.yml", "**/.config/hub")
SECRET_DIRS = frozenset({".ssh", ".gnupg"})
GENERATED_PATTERNS = (
    "*.min.js", "*.min.css", "*.map",
    "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "Cargo.lock",
    "uv.lock", "Pipfile.lock", "composer.lock", "go.sum", "Gemfile.lock", "pdm.lock", "mix.lock",
    "packages.lock.json",
)
MEDIA_EXTENSIONS = frozenset("""
    png jpg jpeg gif bmp ico icns webp tif tiff psd xcf svg eps ai heic avif raw
    mp3 wav ogg flac aac m4a opus mid midi mp4 m4v mov avi mkv webm wmv flv mpg mpeg
    zip tar gz tgz bz2 xz zst 7z rar lz lz4 lzma cab jar war ear whl egg apk deb rpm dmg iso img msi
    pdf doc docx xls xlsx ppt pptx odt ods odp epub
    woff woff2 ttf otf eot
    exe dll so dylib a lib o obj class pyc pyo pyd wasm bin dat
    db sqlite sqlite3 npy npz pkl pickle pt pth ckpt onnx gguf safetensors h5 hdf5 parquet arrow feather tflite
""".split())

# Ignored by default, below every ignore file (so `!*.po` in .ragbitignore or [walk] ignore brings them back).
# Translation catalogs repeat the same English msgids once per language: in Django they are 31% of all chunks
# (19,922 of 63,979), they bury the source file under ~100 copies of an error message in lexical search,
# and they cost a third of the embedding time.
DEFAULT_IGNORE_PATTERNS = ("*.po", "*.pot")

BINARY_SNIFF_BYTES = 8192

SECRET_SPEC = GitIgnoreSpec.from_lines(SECRET_PATTERNS)
SECRET_PATH_SPEC = GitIgnoreSpec.from_lines(SECRET_PATH_PATTERNS)
GENERATED_SPEC = GitIgnoreSpec.from_lines(GENERATED_PATTERNS)


def _one_regex(spec: GitIgnoreSpec) -> re.Pattern:
    """The spec's patterns as one alternation: `.match` is True exactly when `spec.match_file` is, for a spec
    without negations. Why: pathspec tries its ~50 regexes one by one; on a 20k-file tree of distinct names
    that was half of a one-file re-index's walk."""
    if any(not p.include for p in spec.patterns if p.include is not None):
        raise ValueError("negated patterns need pathspec's last-match-wins order")
    # pathspec names a group ps_d in every pattern: an alternation needs them unnamed
    parts = [re.sub(r"\(\?P<\w+>", "(?:", p.regex.pattern) for p in spec.patterns if p.include]
    # unanchored patterns ("*.pem") all read "^(?:.+/)?X(?:(?:/)|$)": tried once for the whole alternation
    # instead of once per pattern, a name is tested ~5x faster
    head, tail = "^(?:.+/)?", "(?:(?:/)|$)"
    if parts and all(p.startswith(head) and p.endswith(tail) for p in parts):
        return re.compile(head + "(?:" + "|".join(p[len(head):-len(tail)] for p in parts) + ")" + tail)
    return re.compile("|".join(parts))


_SECRET_NAME = _one_regex(SECRET_SPEC)
_GENERATED_NAME = _one_regex(GENERATED_SPEC)
_SECRET_PATH = _one_regex(SECRET_PATH_SPEC)

# Skip reasons, as printed by `WalkStats.summary()`.
IGNORED, EXCLUDED, SECRET, MEDIA, GENERATED = "ignored", "excluded dir", "secret", "media", "minified/generated"
TOO_LARGE, BINARY, UNDECODABLE, UNREADABLE = "too large", "binary", "undecodable", "unreadable"
OUTSIDE, LOOP, BROKEN_LINK = "symlink outside repo", "symlink loop", "broken symlink"
BAD_NAME, SPECIAL = "undecodable name", "not a regular file"
NOT_INCLUDED = "not included"


class WalkError(RagbitError, ValueError):
    """The repository root is unusable; the message is one line for the user."""


def print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


Stamp = tuple  # (size, mtime_ns, ctime_ns, inode) of a file, from the stat the walk makes anyway

# A stamp recorded at time T is trusted later only if the file last changed before T - RACY_MARGIN_NS. A file
# written during (or just before) the walk may keep its size and get an mtime/ctime in the same clock tick as
# the one we saw: the kernel stamps files from a coarse clock (a few ms behind time.time_ns), FAT rounds mtime
# to 2 s. Such "racily clean" files (git's term) are simply read again on the next walk.
RACY_MARGIN_NS = 2_000_000_000
CONTENT_RULES_VERSION = 2      # bump when `_Walk.read` decides differently: recorded stamps are then not trusted


def stamp_of(st: os.stat_result) -> Stamp:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def settled(stamp: Stamp | None, walk_started_ns: int) -> bool:
    """May a later walk trust `stamp` (recorded by a walk that started at `walk_started_ns`)? ctime is the
    kernel's: every write, rename, chmod or utime sets it to now, so a content change with the size kept and
    the mtime restored (`cp -p`, `rsync -t`) still changes the stamp."""
    return stamp is not None and max(stamp[1], stamp[2]) < walk_started_ns - RACY_MARGIN_NS


def content_rules(cfg: WalkConfig) -> dict:
    """Everything besides the file's bytes that decides whether a read file is kept: a stamp recorded under
    other rules is not trusted."""
    return {"version": CONTENT_RULES_VERSION, "max_file_bytes": cfg.max_file_bytes,
            "max_line_chars": cfg.max_line_chars}


@dataclass(frozen=True)
class SourceFile:
    path: str                   # repository-relative, POSIX separators
    location: str | Path        # `abspath` as the walk had it (no Path object is made per unread file)
    text: str | None            # decoded UTF-8, BOM stripped, newlines as "\n", secrets masked; None: not read
    sha256: str                 # of the raw bytes on disk
    stamp: Stamp | None = None  # taken before the read, so a file changed during the walk looks changed next time

    @property
    def abspath(self) -> Path:
        """The repository root (resolved) joined with `path`."""
        return Path(self.location)


@dataclass
class WalkStats:
    """What a walk kept and skipped. A pruned directory (ignored or excluded) counts once, not per file."""

    files: int = 0
    bytes: int = 0
    skipped: Counter = field(default_factory=Counter)
    paths: list = field(default_factory=list)   # (path, reason) per skip; a pruned directory as "dir/"
    secrets_masked: int = 0     # secrets replaced in the text of files that were read
    files_masked: int = 0
    dirs: list = field(default_factory=list)           # directories entered (absolute), for a cheap "changed?" check
    ignore_files: list = field(default_factory=list)   # ignore files read (absolute): .gitignore, exclude, ...

    def skip(self, reason: str, path: str = "") -> None:
        self.skipped[reason] += 1
        if path:
            self.paths.append((path, reason))

    def summary(self) -> str:
        """e.g. "skipped 3 binary, 1 too large, 12 ignored" ("" when nothing was skipped)."""
        parts = [f"{n} {reason}" for reason, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0]))]
        return "skipped " + ", ".join(parts) if parts else ""


@functools.lru_cache(maxsize=1 << 16)
def _name_reason(name: str) -> str | None:
    """SECRET, MEDIA, GENERATED or None for a file name. Matched on the NAME (a gitignore pattern would also
    match every file below a directory of that name). Cached: names repeat (`__init__.py`, `models.py`: Django
    has 2.3k distinct names in 6.8k files), and the two specs are ~50 regex tests per name."""
    if _SECRET_NAME.match(name):
        return SECRET
    if os.path.splitext(name)[1][1:].lower() in MEDIA_EXTENSIONS:
        return MEDIA
    if _GENERATED_NAME.match(name):
        return GENERATED
    return None


# ==================================================================================================================
# ignore files
# ==================================================================================================================

@dataclass(frozen=True)
class _IgnoreFile:
    base: str               # repository-relative directory it applies to, "" or ending in "/"
    spec: GitIgnoreSpec
    # the spec as one regex when it has no negations (any match ignores): a 100k-file walk tests every file
    # against every layer, and pathspec tries its patterns one by one
    one: re.Pattern | None = field(default=None, compare=False)

    @classmethod
    def of(cls, base: str, spec: GitIgnoreSpec) -> "_IgnoreFile":
        try:
            return cls(base, spec, _one_regex(spec))
        except (ValueError, re.error):
            return cls(base, spec)


def _decide(layers: tuple[_IgnoreFile, ...], rel: str, is_dir: bool) -> bool:
    """True if ignored. `layers` are ordered highest precedence first; the first one with a matching pattern
    decides (within one file pathspec already applies "last matching pattern wins", negations included)."""
    candidate = rel + "/" if is_dir else rel
    for layer in layers:
        if layer.one is not None:
            if layer.one.pattern and layer.one.match(candidate[len(layer.base):]):
                return True
            continue
        result = layer.spec.check_file(candidate[len(layer.base):])
        if result.include is not None:
            return bool(result.include)
    return False


def _git_exclude_file(root: Path) -> Path | None:
    """`info/exclude` of the repository, also when `.git` is a worktree/submodule pointer file."""
    dot_git = root / ".git"
    git_dir = dot_git
    if dot_git.is_file():
        try:
            line = dot_git.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not line.startswith("gitdir:"):
            return None
        git_dir = (root / line[len("gitdir:"):].strip()).resolve()
        common = git_dir / "commondir"
        if common.is_file():
            try:
                git_dir = (git_dir / common.read_text(encoding="utf-8").strip()).resolve()
            except (OSError, UnicodeDecodeError):
                pass
    exclude = git_dir / "info" / "exclude"
    return exclude if exclude.is_file() else None


class _IncludeRule:
    """`WalkConfig.include`: which files are kept, and which directories may hold one (the rest are pruned).

    Matching is pathspec's, with git's semantics (`src/` or `src/**` is everything below src, `*.md` a name
    anywhere). Pruning only uses what is certain: an anchored pattern (a slash before its end) can match only
    below its literal leading directories; a pattern without one (`*.py`) may match in any directory."""

    def __init__(self, patterns: list[str], spec: GitIgnoreSpec):
        self.spec = spec
        prefixes: list[str] = []
        for raw in patterns:
            p = raw.strip()
            if not p or p.startswith(("#", "!")):   # a negation narrows the set, it never widens where to look
                continue
            anchored = p.startswith("/") or "/" in p.rstrip("/")
            if not anchored or p.startswith("**"):
                prefixes = [""]                     # may match anywhere: no directory can be pruned
                break
            p = p.lstrip("/")
            glob_at = min((i for i, c in enumerate(p) if c in "*?[\\"), default=None)
            literal = p if glob_at is None else p[:glob_at]
            prefixes.append(literal.rstrip("/") + "/" if glob_at is None else literal[:literal.rfind("/") + 1])
        self.prefixes = tuple(prefixes)

    def keeps_file(self, rel: str) -> bool:
        return self.spec.match_file(rel)

    def may_hold(self, rel_dir: str) -> bool:
        """Can a file below `rel_dir` ("a/b/") be included?"""
        return any(p.startswith(rel_dir) or rel_dir.startswith(p) for p in self.prefixes)


# ==================================================================================================================
# the walk
# ==================================================================================================================

class _Walk:
    def __init__(self, root: Path, cfg: WalkConfig, warn: Callable[[str], None], stats: WalkStats):
        root = Path(root).expanduser()
        if not root.exists():
            raise WalkError(f"repository path does not exist: {root}")
        if not root.is_dir():
            raise WalkError(f"repository path is not a directory: {root}")
        self.root = root.resolve()
        self.cfg, self.warn, self.stats = cfg, warn, stats
        self.config_layer = _IgnoreFile.of("", self._spec(cfg.ignore, "[walk] ignore")) if cfg.ignore else None
        exclude = _git_exclude_file(self.root)
        self.exclude_layer = self._load("", exclude) if exclude else None
        self.default_layer = _IgnoreFile.of("", GitIgnoreSpec.from_lines(DEFAULT_IGNORE_PATTERNS))
        self.include = _IncludeRule(cfg.include, self._spec(cfg.include, "[walk] include")) if cfg.include else None

    def _load(self, base: str, path: Path) -> _IgnoreFile | None:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as e:
            self.warn(f"skipped {base}{path.name}: {_reason(e)}")
            return None
        self.stats.ignore_files.append(str(path))
        return _IgnoreFile.of(base, self._spec(lines, f"{base}{path.name}"))

    def _spec(self, lines: list[str], where: str) -> GitIgnoreSpec:
        """The patterns of an ignore file; a pattern pathspec cannot compile (`[z-a]`) is skipped with a
        warning, as git skips it, instead of ending the walk with a traceback."""
        try:
            return GitIgnoreSpec.from_lines(lines)
        except Exception:
            good = []
            for n, line in enumerate(lines, start=1):
                try:
                    GitIgnoreSpec.from_lines([line])
                    good.append(line)
                except Exception:
                    self.warn(f"{where}:{n}: ignored an invalid pattern {line[:40]!r}")
            return GitIgnoreSpec.from_lines(good)

    # ---------------------------------------------------------------------------------- candidates (no reads)
    def candidates(self) -> Iterator[tuple[str, str, Stamp | None]]:
        """(relative path, absolute path, stamp or None) of every file that passes the name/size rules, in
        path order."""
        yield from self._dir(self.root, "", (), (), frozenset({self.root}))

    def _dir(self, real: Path, base: str, ragbit_layers: tuple, git_layers: tuple,
             ancestors: frozenset[Path]) -> Iterator[tuple[str, str, Stamp | None]]:
        here = self.root / base if base else self.root
        if (here / ".gitignore").is_file() and (layer := self._load(base, here / ".gitignore")):
            git_layers = (layer,) + git_layers                   # deeper first
        if (here / ".ragbitignore").is_file() and (layer := self._load(base, here / ".ragbitignore")):
            ragbit_layers = (layer,) + ragbit_layers
        layers = tuple(x for x in ((self.config_layer,) + ragbit_layers + git_layers
                                   + (self.exclude_layer, self.default_layer)) if x)
        try:
            entries = list(os.scandir(here))
        except OSError as e:
            self.warn(f"skipped {base or './'}: {_reason(e)}")
            self.stats.skip(UNREADABLE, base or "./")
            return
        self.stats.dirs.append(str(here))
        # sort key: name + "/" for directories, so the output is in plain string order of the full paths
        for entry, is_dir, target in sorted(self._classify(entries, base, real),
                                            key=lambda x: x[0].name + "/" * x[1]):
            rel = base + entry.name
            if entry.name in VCS_NAMES:
                self.stats.skip(EXCLUDED, rel + "/" * is_dir)
            elif not _utf8_name(entry.name):
                # not valid UTF-8 (os gives it back with surrogates): cannot be stored, shown or searched as text
                self.warn(f"skipped {base}{entry.name.encode('utf-8', 'backslashreplace').decode()}: "
                          "file name is not valid UTF-8")
                self.stats.skip(BAD_NAME)
            elif is_dir:
                if self.include is not None and not self.include.may_hold(rel + "/"):
                    self.stats.skip(NOT_INCLUDED, rel + "/")
                elif entry.name in SECRET_DIRS:
                    self.stats.skip(SECRET, rel + "/")
                elif entry.name in SKIP_DIRS or entry.name.endswith(SKIP_DIR_SUFFIXES) \
                        or any(os.path.exists(os.path.join(entry.path, m)) for m in VENV_MARKERS):
                    self.stats.skip(EXCLUDED, rel + "/")
                elif _decide(layers, rel, True):
                    self.stats.skip(IGNORED, rel + "/")
                elif target in ancestors:
                    self.stats.skip(LOOP, rel + "/")
                else:
                    yield from self._dir(target, rel + "/", ragbit_layers, git_layers, ancestors | {target})
            elif self.include is not None and not self.include.keeps_file(rel):
                self.stats.skip(NOT_INCLUDED, rel)
            elif _decide(layers, rel, False):
                self.stats.skip(IGNORED, rel)
            elif reason := _name_reason(entry.name):
                self.stats.skip(reason, rel)
            elif "/" in rel and _SECRET_PATH.match(rel):
                self.stats.skip(SECRET, rel)
            else:
                try:
                    stamp = stamp_of(entry.stat())        # follows a symlink (to a file inside the repository)
                except OSError:
                    stamp = None                          # reported when the file is read
                if stamp is not None and stamp[0] > self.cfg.max_file_bytes:
                    self.stats.skip(TOO_LARGE, rel)
                else:
                    yield rel, entry.path, stamp

    def _classify(self, entries, base: str, real: Path):
        """(entry, is_dir, real path of a directory) for entries we may use; symlinks leaving the repository
        are dropped. `real` is the real path of the directory being listed (so no realpath call per entry)."""
        for entry in entries:
            try:
                if entry.is_symlink():
                    target = Path(os.path.realpath(entry.path))
                    if not target.exists():
                        self.stats.skip(BROKEN_LINK, base + entry.name)
                        continue
                    if not target.is_relative_to(self.root):
                        self.stats.skip(OUTSIDE, base + entry.name)
                        continue
                    is_dir = target.is_dir()
                else:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    target = real / entry.name if is_dir else None
                if not is_dir and not entry.is_file():
                    self.stats.skip(SPECIAL, base + entry.name)   # sockets, fifos, devices: never opened
                    continue
            except OSError as e:
                self.warn(f"skipped {base}{entry.name}: {_reason(e)}")
                self.stats.skip(UNREADABLE, base + entry.name)
                continue
            yield entry, is_dir, target

    # ---------------------------------------------------------------------------------- contents
    def read(self, rel: str, abspath: str | Path, stamp: Stamp | None = None) -> SourceFile | None:
        abspath = Path(abspath)
        try:
            raw = read_bytes(abspath)
        except OSError as e:
            self.warn(f"skipped {rel}: {_reason(e)}")
            self.stats.skip(UNREADABLE, rel)
            return None
        if len(raw) > self.cfg.max_file_bytes:                # grew since the stat
            self.stats.skip(TOO_LARGE, rel)
            return None
        if b"\x00" in raw[:BINARY_SNIFF_BYTES]:
            self.stats.skip(BINARY, rel)
            return None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            self.warn(f"skipped {rel}: not UTF-8 text (invalid byte at offset {e.start})")
            self.stats.skip(UNDECODABLE, rel)
            return None
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if len(text) > self.cfg.max_line_chars and max(map(len, text.split("\n"))) > self.cfg.max_line_chars:
            self.stats.skip(GENERATED, rel)
            return None
        text, masked = mask_secrets(text, rel)
        if masked:
            self.stats.secrets_masked += masked
            self.stats.files_masked += 1
        self.stats.files += 1
        self.stats.bytes += len(raw)
        return SourceFile(path=rel, location=abspath, text=text, sha256=hashlib.sha256(raw).hexdigest(),
                          stamp=stamp)


def _utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def read_bytes(path: Path) -> bytes:
    """The one place file contents are read (tests replace it to simulate permission errors as root).

    A NUL byte in the first BINARY_SNIFF_BYTES makes a file binary whatever follows: then only that head is
    read, so a disk image under a raised `max_file_bytes` costs 8 KB of memory, not its size."""
    with open(path, "rb") as f:
        head = f.read(BINARY_SNIFF_BYTES)
        if len(head) < BINARY_SNIFF_BYTES or b"\x00" in head:
            return head
        return head + f.read()


def _reason(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission denied"
    return (e.strerror or type(e).__name__).lower()


# ==================================================================================================================
# public API
# ==================================================================================================================

def walk_repository(root: Path, cfg: WalkConfig, warn: Callable[[str], None] = print_to_stderr,
                    stats: WalkStats | None = None,
                    known: Callable[[str, Stamp], str | None] | None = None) -> Iterator[SourceFile]:
    """Indexable files of `root`, sorted by path. Raises WalkError at once if `root` is missing/not a directory.

    Pass a `WalkStats` to learn what was kept and skipped (it is filled as the iterator is consumed).
    `known(path, stamp)` -> sha256 or None: a file it knows is yielded unread, with `text=None` (module doc).
    """
    walk = _Walk(root, cfg, warn, stats if stats is not None else WalkStats())

    def files() -> Iterator[SourceFile]:
        for rel, abspath, stamp in walk.candidates():
            sha = known(rel, stamp) if known is not None and stamp is not None else None
            if sha is not None:
                walk.stats.files += 1
                walk.stats.bytes += stamp[0]
                yield SourceFile(path=rel, location=abspath, text=None, sha256=sha, stamp=stamp)
                continue
            source = walk.read(rel, abspath, stamp)
            if source is not None:
                yield source
    return files()


def survey(root: Path, cfg: WalkConfig, sample_size: int, seed: int = 0) -> tuple[int, list[SourceFile]]:
    """(number of files the walk would consider, up to `sample_size` of them read, drawn uniformly): what
    `ragbit index` needs to estimate a big job before starting it. Lists directories and stats files, reads
    only the sample (reservoir sampling, so memory does not grow with the repository)."""
    import random
    walk = _Walk(root, cfg, lambda msg: None, WalkStats())
    rng, reservoir, n = random.Random(seed), [], 0
    for candidate in walk.candidates():
        n += 1
        if len(reservoir) < sample_size:
            reservoir.append(candidate)
        elif (j := rng.randrange(n)) < sample_size:
            reservoir[j] = candidate
    sample = [walk.read(*c) for c in sorted(reservoir)]
    return n, [sf for sf in sample if sf is not None]


def iter_candidate_paths(root: Path, cfg: WalkConfig, warn: Callable[[str], None] = print_to_stderr,
                         stats: WalkStats | None = None) -> Iterator[Path]:
    """Absolute paths (under `root.resolve()`) the walk would read, without reading them: for `ragbit status`.

    Same rules as `walk_repository` except the content checks (binary, UTF-8, long lines), so this can list a
    few files the full walk then skips. `path.relative_to(root.resolve()).as_posix()` is `SourceFile.path`.
    """
    walk = _Walk(root, cfg, warn, stats if stats is not None else WalkStats())
    return (Path(abspath) for _, abspath, _ in walk.candidates())
