"""The columnar chunk table: exact round trip, copying unchanged files' rows, and refusing damaged files."""
import pytest

from ragbit.chunk_table import LEGACY_TABLE_FILE, TABLE_FILE, ChunkTable, ChunkTableError
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
    assert loaded.content_hash == [c.content_hash for c in table.chunks]
    assert [(f.path, f.sha256, f.first, f.count) for f in loaded.files] == \
        [("a.py", "sha-a", 0, 5), ("empty.txt", "sha-e", 5, 0), ("b/c.py", "sha-c", 5, 1)]
    assert loaded.embed_texts[-1] == table.chunk(5).embed_text == "b/c.py\nprint(1)"


def test_unchanged_files_are_copied_from_the_previous_table(table):
    new = ChunkTable.from_files([("b/c.py", "sha-c", None),                       # unchanged: copied
                                 ("a.py", "sha-a2", _chunks("a.py", ["changed"]))], previous=table)
    assert [c.path for c in new.chunks] == ["b/c.py", "a.py"]
    assert new.chunk(0) == table.chunk(5)
    assert new.content_hash == [table.content_hash[5], Chunk("a.py", "python", 1, 3, "", "changed").content_hash]
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


@pytest.mark.parametrize("damage", ["truncate", "header", "missing"])
def test_damaged_table_is_a_chunk_table_error(table, tmp_path, damage):
    table.save(tmp_path)
    f = tmp_path / TABLE_FILE
    raw = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(raw[:-3])
    elif damage == "header":
        f.write_bytes(b"{not json\n" + raw.split(b"\n", 1)[1])
    else:
        f.unlink()
    with pytest.raises(ChunkTableError):
        ChunkTable.load(tmp_path)


def test_table_of_an_older_ragbit_asks_for_a_re_index(tmp_path):
    (tmp_path / LEGACY_TABLE_FILE).write_text('{"files": []}\n')
    with pytest.raises(ChunkTableError, match="older ragbit; `ragbit index` rewrites it"):
        ChunkTable.load(tmp_path)
