"""The chunk table in segments: exact round trip, unchanged files kept in their segment (hard-linked), merges,
format 1 still read, and refusing damaged files."""
import json
import os

import pytest

from ragbit import chunk_table
from ragbit.chunk_table import LEGACY_TABLE_FILE, TABLE_DIR, TABLE_FILE_V1, ChunkTable, ChunkTableError
from ragbit.indexing.chunking import Chunk


def _chunks(path, texts, scope="class A > def f"):
    return [Chunk(path, "python", 1 + 3 * i, 3 + 3 * i, scope if i % 2 else "", t) for i, t in enumerate(texts)]


# texts that a naive format would mangle: newlines of every kind, non-ASCII, JSON-looking text, empty text
AWKWARD = ["def f():\n    return 1", "x = 'é ✓ 日本'\r\nwindows line", '{"files": []}\n', "", "tab\tend\n\n"]


@pytest.fixture
def table():
    return ChunkTable.from_files([("a.py", "sha-a", _chunks("a.py", AWKWARD)),
                                  ("empty.txt", "sha-e", []),
                                  ("b/c.py", "sha-c", _chunks("b/c.py", ["print(1)"]))])


def test_round_trip_is_exact(table, tmp_path):
    table.save(tmp_path)
    loaded = ChunkTable.load(tmp_path)
    assert list(loaded.chunks) == list(table.chunks)
    assert loaded.text[:5] == AWKWARD
    assert list(loaded.content_hash) == [c.content_hash for c in table.chunks]
    assert [(f.path, f.sha256, f.first, f.count) for f in loaded.files] == \
        [("a.py", "sha-a", 0, 5), ("empty.txt", "sha-e", 5, 0), ("b/c.py", "sha-c", 5, 1)]
    assert loaded.embed_texts[-1] == table.chunk(5).embed_text == "b/c.py\nprint(1)"


def test_unchanged_files_are_copied_from_the_previous_table(table):
    new = ChunkTable.from_files([("b/c.py", "sha-c", None),                       # unchanged: copied
                                 ("a.py", "sha-a2", _chunks("a.py", ["changed"]))], previous=table)
    assert [c.path for c in new.chunks] == ["b/c.py", "a.py"]
    assert new.chunk(0) == table.chunk(5)
    assert list(new.content_hash) == [table.content_hash[5], Chunk("a.py", "python", 1, 3, "", "changed").content_hash]
    assert new.by_path["a.py"].first == 1


def test_stamps_round_trip_and_answer_only_an_identical_stamp(tmp_path):
    stamp = (120, 1_700_000_000_123_456_789, 1_700_000_000_223_456_789, 4242)   # size, mtime_ns, ctime_ns, inode
    table = ChunkTable.from_files([("a.py", "sha-a", _chunks("a.py", ["x"]), stamp),
                                   ("b.py", "sha-b", _chunks("b.py", ["y"]), None),     # not settled: not stored
                                   ("c.py", "sha-c", _chunks("c.py", ["z"]))])          # no stamp given
    table.save(tmp_path)
    loaded = ChunkTable.load(tmp_path)
    assert [f.stamp for f in loaded.files] == [stamp, None, None]
    assert loaded.sha_if_stamped("a.py", list(stamp)) == "sha-a"
    assert loaded.sha_if_stamped("a.py", (120, stamp[1], stamp[2] + 1, 4242)) is None    # ctime moved
    assert loaded.sha_if_stamped("b.py", stamp) is None and loaded.sha_if_stamped("new.py", stamp) is None


def test_lazy_columns_behave_as_sequences(table):
    chunks = table.chunks
    assert len(chunks) == 6 and chunks[-1] == chunks[5] and chunks[1:3] == [table.chunk(1), table.chunk(2)]
    with pytest.raises(IndexError):
        chunks[6]


@pytest.mark.parametrize("damage", ["truncate", "order", "missing"])
def test_damaged_table_is_a_chunk_table_error(table, tmp_path, damage):
    table.save(tmp_path)
    [segment] = [p for p in (tmp_path / TABLE_DIR).iterdir() if p.is_dir()]
    if damage == "truncate":
        f = segment / "text.bin"
        f.write_bytes(f.read_bytes()[:-3])
    elif damage == "order":
        (tmp_path / TABLE_DIR / "order.npy").write_bytes(b"not numpy")
    else:
        (segment / "lines.npy").unlink()
    with pytest.raises(ChunkTableError):
        ChunkTable.load(tmp_path)


def _generation(table, root, n):
    gen = root / f"gen-{n}"
    gen.mkdir()
    table.save(gen)
    return ChunkTable.load(gen)


def test_a_commit_writes_only_the_changed_files_and_links_the_rest(tmp_path):
    files = [(f"m{i}.py", f"sha{i}", _chunks(f"m{i}.py", [f"x = {i}", f"y = {i}"])) for i in range(30)]
    records = {f"m{i}.py": {"module": f"m{i}", "symbols": [[f"f{i}", "function", 1, 2, f"def f{i}()"]]}
               for i in range(30)}
    first = _generation(ChunkTable.from_files(files, symbols=records), tmp_path, 1)
    per_file = [(p, s, None) for p, s, _ in files]
    per_file[4] = ("m4.py", "sha4b", _chunks("m4.py", ["z = 4", "w = 4", "v = 4"]))
    second = _generation(ChunkTable.from_files(per_file, previous=first, symbols={"m4.py": {"module": "m4"}}),
                         tmp_path, 2)
    rebuilt = ChunkTable.from_files([(p, s, c if c is not None else files[i][2]) for i, (p, s, c) in enumerate(per_file)])
    assert list(second.chunks) == list(rebuilt.chunks)                           # positions as a rebuild's
    assert [(f.path, f.first, f.count) for f in second.files] == [(f.path, f.first, f.count) for f in rebuilt.files]
    old, new = sorted(p.name for p in (tmp_path / "gen-1" / TABLE_DIR).iterdir() if p.is_dir()), \
        sorted(p.name for p in (tmp_path / "gen-2" / TABLE_DIR).iterdir() if p.is_dir())
    assert len(new) == 2 and old[0] in new                                       # kept + one new segment
    base = tmp_path / "gen-2" / TABLE_DIR / old[0] / "text.bin"
    assert os.stat(base).st_ino == os.stat(tmp_path / "gen-1" / TABLE_DIR / old[0] / "text.bin").st_ino
    [added] = [n for n in new if n not in old]
    written = json.loads((tmp_path / "gen-2" / TABLE_DIR / added / "files.json").read_text())
    assert written["path"] == ["m4.py"]                                          # only the changed file
    from ragbit.symbols.table import SymbolTable
    symbols = SymbolTable.load(tmp_path / "gen-2")
    assert list(symbols.files) == [f.path for f in second.files]
    assert symbols.files["m4.py"] == {"module": "m4"} and symbols.files["m5.py"] == records["m5.py"]


def test_small_segments_and_dead_chunks_are_merged(tmp_path, monkeypatch):
    monkeypatch.setattr(chunk_table, "MAX_SEGMENTS", 3)
    files = [(f"m{i}.py", f"sha{i}", _chunks(f"m{i}.py", [f"x = {i}"] * 3)) for i in range(100)]
    table = _generation(ChunkTable.from_files(files, symbols={"m1.py": {"module": "m1"}}), tmp_path, 0)
    for n in range(1, 6):                                 # one file changes per commit
        per_file = [(p, s, None) for p, s, _ in files]
        per_file[n] = (f"m{n}.py", f"new{n}", _chunks(f"m{n}.py", [f"changed {n}"]))
        table = _generation(ChunkTable.from_files(per_file, previous=table), tmp_path, n)
        segments = [p for p in (tmp_path / f"gen-{n}" / TABLE_DIR).iterdir() if p.is_dir()]
        assert len(segments) <= 3
        files = [(p, s, c) for p, s, c in [(p, s, list(table.chunks[f.first:f.first + f.count]))
                                            for (p, s, _), f in zip(per_file, table.files)]]
    assert [table.chunk(f.first).text for f in table.files[:6]] == ["x = 0"] + [f"changed {n}" for n in range(1, 6)]
    from ragbit.symbols.table import SymbolTable
    assert SymbolTable.load(tmp_path / "gen-5").files["m1.py"] == {}             # m1 changed without a record
    assert SymbolTable.load(tmp_path / "gen-0").files["m1.py"] == {"module": "m1"}


def test_a_format_1_table_is_read(tmp_path):
    """Format 1 (one file) is still read: its chunks and symbol records, to be converted by the next commit."""
    header = {"version": 2, "files": [["a.py", "sha-a", 0, 2, [1, 2, 3, 4]], ["b.py", "sha-b", 2, 0]],
              "language": ["python", "python"], "scope": ["", "def f"], "start_line": [1, 3], "end_line": [2, 4],
              "content_hash": ["h1", "h2"], "text_length": [3, 5]}
    (tmp_path / TABLE_FILE_V1).write_text(json.dumps(header) + "\nx=1def f", encoding="utf-8")
    (tmp_path / "symbols.json").write_text(json.dumps({"version": 1, "files": {"a.py": {"module": "a"}}}))
    table = ChunkTable.load(tmp_path)
    assert [c.text for c in table.chunks] == ["x=1", "def f"] and table.files[0].stamp == (1, 2, 3, 4)
    assert table.symbols_readable() and table.symbol_record(table.files[0]) == {"module": "a"}
    out = tmp_path / "next"
    out.mkdir()
    ChunkTable.from_files([("a.py", "sha-a", None), ("b.py", "sha-b", None)], previous=table).save(out)
    again = ChunkTable.load(out)
    assert list(again.chunks) == list(table.chunks) and list(again.content_hash) == ["h1", "h2"]
    from ragbit.symbols.table import SymbolTable
    assert SymbolTable.load(out).files == {"a.py": {"module": "a"}, "b.py": {}}


def test_table_of_an_older_ragbit_asks_for_a_re_index(tmp_path):
    (tmp_path / LEGACY_TABLE_FILE).write_text('{"files": []}\n')
    with pytest.raises(ChunkTableError, match="older ragbit; `ragbit index` rewrites it"):
        ChunkTable.load(tmp_path)
