"""Searcher: dense, lexical and hybrid find the right chunk; path boost; per-file cap; missing index."""
from __future__ import annotations

import pytest

from indexes.store import IndexMissingError
from ragbit.config import RagbitConfig
from ragbit.indexing.indexer import index_repository
from ragbit.search.searcher import SearchError, Searcher
from tests.retrieval_fixtures import FakeEmbedder, make_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("search") / "shop")
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    return root


def searcher(repo, **search):
    cfg = RagbitConfig.load(repo, overrides={"search": search} if search else None)
    return Searcher(cfg, embedder=FakeEmbedder())


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
@pytest.mark.parametrize("question, path", [
    ("how is value added tax applied to the invoice total", "src/billing/invoice.py"),
    ("exponential backoff when the connection fails", "src/net/retry.py"),
    ("liveness probe for the load balancer", "cmd/server/main.go"),
    ("rolling updates with replicas on kubernetes", "docs/deployment.md"),
])
def test_each_mode_finds_the_right_file_first(repo, mode, question, path):
    hits = searcher(repo).search(question, k=5, mode=mode)
    assert hits, f"{mode}: no hits"
    assert hits[0].path == path
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    h = hits[0]
    lines = (repo / h.path).read_text().splitlines()
    assert h.text.splitlines()[0] == lines[h.start_line - 1]        # the hit's text is those lines
    assert hits.dense_complete


def test_hit_text_and_lines_point_at_the_matching_function(repo):
    hit = searcher(repo).search("apply_vat rate", k=1, mode="lexical")[0]
    assert "def apply_vat" in hit.text
    assert hit.start_line <= _line_of(repo / hit.path, "def apply_vat") <= hit.end_line


def _line_of(path, needle):
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_named_file_is_ranked_up(repo):
    s = searcher(repo)
    question = "the slide index wraps around in web/static/carousel.js and the invoice total is wrong"
    assert s.named_files(question) == ["web/static/carousel.js"]
    boosted = s.search(question, k=3, mode="hybrid")
    assert boosted[0].path == "web/static/carousel.js"
    # a bare, unambiguous file name and a dotted module path count too
    assert s.named_files("see retry.py") == ["src/net/retry.py"]
    assert s.named_files("import src.billing.invoice") == ["src/billing/invoice.py"]
    # a dotted name that goes on past the module (to a function in it) names the module
    assert s.named_files("the fix belongs in src.billing.invoice.total_due") == ["src/billing/invoice.py"]
    assert s.named_files("nothing named here") == []


def test_max_hits_per_file(repo):
    hits = searcher(repo).search("invoice total tax pdf customer", k=10, mode="lexical", max_hits_per_file=1)
    paths = [h.path for h in hits]
    assert len(paths) == len(set(paths))


def test_bad_requests(repo):
    s = searcher(repo)
    with pytest.raises(SearchError, match="mode"):
        s.search("x", mode="fuzzy")
    with pytest.raises(SearchError, match="empty"):
        s.search("   ")


def test_missing_index(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(IndexMissingError, match=r"no index at .*run `ragbit index .*` first"):
        Searcher(RagbitConfig.load(tmp_path / "r"), embedder=FakeEmbedder()).search("x")


def test_constructor_touches_nothing(tmp_path):
    Searcher(RagbitConfig.load(tmp_path), embedder=FakeEmbedder())     # no index, no error until search
    assert not (tmp_path / ".ragbit").exists()


def test_real_minilm_end_to_end(tmp_path):
    """The one test with the packaged all-MiniLM-L6-v2: index, then a paraphrased question finds its chunk."""
    root = make_repo(tmp_path / "shop")
    cfg = RagbitConfig.load(root)
    report = index_repository(cfg, progress=False)
    assert report.dense_complete and report.chunks_embedded + report.chunks_reused == report.chunks > 0
    s = Searcher(cfg)
    hits = s.search("sleep longer after each failed attempt", k=3, mode="dense")
    assert hits[0].path == "src/net/retry.py"
    assert s.embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2" and s.embedder.dim == 384
    # the dimension read from the model's files (before loading torch) is the loaded model's
    from ragbit.indexing.embeddings import Embedder
    assert Embedder().dim == s.embedder.embed_query("x").shape[0] == 384
    assert Embedder().count_tokens("def retry_with_backoff(fn):") == len(
        s.embedder._load_model().tokenizer("def retry_with_backoff(fn):", add_special_tokens=False)["input_ids"])
    hits = s.search("keeping replicas available during upgrades", k=3, mode="hybrid")
    assert hits[0].path == "docs/deployment.md"


def test_long_lived_searcher_sees_a_newer_generation(tmp_path):
    root = make_repo(tmp_path / "shop")
    cfg = RagbitConfig.load(root)
    index_repository(cfg, progress=False, embedder=FakeEmbedder(), embed=False)
    s = Searcher(cfg, embedder=FakeEmbedder())
    assert s.search("exponential backoff", k=2, mode="dense").dense_complete is False
    (root / "src/net/dns.py").write_text("def resolve_hostname(name):\n    return lookup(name)\n")
    index_repository(cfg, progress=False, embedder=FakeEmbedder())
    hits = s.search("resolve hostname", k=2, mode="dense")
    assert hits.dense_complete and hits[0].path == "src/net/dns.py"


_PARSER = "def parse_header(raw):\n    name, _, value = raw.partition(':')\n    return name.strip(), value.strip()\n"
_TEST_FILE = "def test_parse_header():\n" + "\n".join(
    f"    assert parse_header('X-Header-{i}: v') == ('X-Header-{i}', 'v')" for i in range(8)) + "\n"
_DOC_FILE = "Headers\n=======\n\n" + "\n".join(
    f"Call parse_header to split header {i} into its name and value." for i in range(8)) + "\n"


@pytest.mark.parametrize("other, text, about", [
    ("tests/test_parser.py", _TEST_FILE, "which tests call parse_header header"),
    ("docs/headers.rst", _DOC_FILE, "where do the docs explain parse_header header"),
])
def test_tests_and_prose_rank_below_the_code_unless_the_question_is_about_them(tmp_path, other, text, about):
    root = tmp_path / "lib"
    for rel, body in (("pkg/parser.py", _PARSER), (other, text)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    s = Searcher(RagbitConfig.load(root), embedder=FakeEmbedder())
    assert s.search("parse_header header", k=2, mode="lexical", demote=False)[0].path == other
    assert [h.path for h in s.search("parse_header header", k=2, mode="lexical")] == ["pkg/parser.py", other]
    assert s.search(about, k=2, mode="lexical")[0].path == other


_STUB = "def parse_header(raw: str) -> tuple[str, str]: ...  # parse_header header name value\n"


def test_a_python_stub_beside_its_module_ranks_below_the_module(tmp_path):
    """A .pyi repeats the signature (and here more of the question's words) but not what the code does; a stub
    with no module beside it (a compiled extension's interface) is code."""
    root = tmp_path / "lib"
    for rel, body in (("pkg/parser.py", _PARSER), ("pkg/parser.pyi", _STUB), ("pkg/_speedups.pyi", _STUB)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    s = Searcher(RagbitConfig.load(root), embedder=FakeEmbedder())
    undemoted = [h.path for h in s.search("parse_header header name value", k=3, mode="lexical", demote=False)]
    assert undemoted.index("pkg/parser.pyi") < undemoted.index("pkg/parser.py")
    ranked = [h.path for h in s.search("parse_header header name value", k=3, mode="lexical")]
    assert ranked.index("pkg/parser.py") < ranked.index("pkg/parser.pyi")
    assert ranked.index("pkg/_speedups.pyi") < ranked.index("pkg/parser.py")     # no module beside it: not demoted


def test_units_give_each_hit_its_whole_split_definition(tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    body = "\n".join(f"    total_{i} = compute_shipping_rate(order, {i}) + surcharge_{i}" for i in range(60))
    (root / "ship.py").write_text(f"import os\n\n\ndef shipping_quote(order):\n{body}\n    return total_0\n")
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    s = Searcher(RagbitConfig.load(root), embedder=FakeEmbedder())
    hits = s.search("surcharge_45 compute_shipping_rate", k=1, mode="lexical", units=True)
    unit = hits[0].unit
    assert unit is not None and (hits[0].start_line, hits[0].end_line) != (unit.start_line, unit.end_line)
    lines = (root / "ship.py").read_text().splitlines()
    assert (unit.start_line, unit.end_line) == (4, len(lines))           # the whole function, nothing else
    assert unit.text.split("\n") == lines[3:]
    assert s.search("surcharge_45", k=1, mode="lexical")[0].unit is None   # only when asked for


def test_a_hit_in_prose_is_packed_alone_not_with_its_whole_section(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    paragraphs = "\n\n".join(f"Shipping rule {i}: the surcharge_{i} applies to parcels over {i} kg and is added "
                               f"to the quote before tax, as the carrier's table for zone {i} says." for i in range(40))
    (root / "guide.md").write_text(f"# Guide\n\n## Shipping\n\n{paragraphs}\n")
    body = "\n".join(f"    total_{i} = compute_shipping_rate(order, {i}) + surcharge_{i}" for i in range(60))
    (root / "ship.py").write_text(f"def shipping_quote(order):\n{body}\n    return total_0\n")
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    s = Searcher(RagbitConfig.load(root), embedder=FakeEmbedder())
    hits = s.search("carrier table zone 33 surcharge_33", k=10, mode="lexical", units=True, demote=False)
    table = s.table
    md = [i for i in range(len(table)) if table.path[i] == "guide.md" and "surcharge_33" in table.text[i]]
    assert md and len([i for i in range(len(table)) if table.path[i] == "guide.md"]) > 2    # the section is split
    prose = [h for h in hits if h.path == "guide.md"]
    code = [h for h in hits if h.path == "ship.py"]
    assert prose and all(h.unit is None for h in prose)
    assert code and code[0].unit is not None                          # code still brings its whole definition


def test_a_hit_in_a_nested_function_brings_the_function_around_it(tmp_path):
    root = tmp_path / "http"
    root.mkdir()
    before = "\n".join(f"        header_{i} = self.headers.get('x-{i}', {i})" for i in range(30))
    inner = "\n".join(f"                part_{i} = transform_{i}(chunk)" for i in range(25))
    after = "\n".join(f"        footer_{i} = self.trailers.get('y-{i}', {i})" for i in range(30))
    (root / "resp.py").write_text(
        f"class Response:\n    def iter_content(self, size=1):\n{before}\n\n        def generate():\n"
        f"            while True:\n                chunk = self.raw.read(size)\n{inner}\n"
        f"                yield decode_stream_chunk(chunk)\n\n{after}\n        return generate()\n\n"
        f"    def close(self):\n        self.raw.close()\n")
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    s = Searcher(RagbitConfig.load(root), embedder=FakeEmbedder())
    hit = s.search("decode_stream_chunk", k=1, mode="lexical", units=True)[0]
    assert hit.scope == "class Response > def iter_content > def generate"
    lines = (root / "resp.py").read_text().splitlines()
    # the unit is the whole method around the nested function, not the class and not just `generate`
    assert (hit.unit.start_line, hit.unit.end_line) == (2, lines.index("    def close(self):") - 1)
    assert hit.unit.text.split("\n")[0] == "    def iter_content(self, size=1):"


def test_called_names_skip_docstrings_comments_and_raised_exceptions():
    from ragbit.search.searcher import called_names
    py = ('def f(x):\n    """Doc.\n\n    >>> zeros(3)\n    """\n    # g(x) is not called\n'
          '    if not x:\n        raise ValueError(x)\n    return h(x) + k (x)\n')
    assert called_names(py, "python") == ["f", "h", "k"]
    js = "function f(x) { /* g(x) */ if (!x) throw new Error('e'); return h(x); // k(x)\n}"
    assert called_names(js, "javascript") == ["f", "h"]


def test_the_best_hit_brings_the_helper_of_its_file_that_it_calls(tmp_path):
    from ragbit.pipeline.components.hybrid_retriever import HybridRetriever
    root = tmp_path / "matrix"
    root.mkdir()
    filler = "\n".join(f"        x_{i} = self.rows * {i}" for i in range(30))
    (root / "common.py").write_text(
        "class Shaping:\n"
        f"    def _eval_row_insert(self, pos, other):\n{filler}\n        return x_0\n\n"
        f"    def _eval_col_insert(self, pos, other):\n{filler}\n        return pos + other\n\n"
        "    def col_insert(self, pos, other):\n        \"\"\"Insert columns.\n\n        >>> M = zeros(3)\n"
        "        \"\"\"\n        # shape(other) must match\n        if pos < 0:\n            pos += self.cols\n"
        "        if other is None:\n            raise ShapeError('no other')\n"
        "        return self._eval_col_insert(pos, other)\n\n"
        "class Other:\n    def _eval_col_insert(self, pos, other):\n        return None\n\n"
        # what the docstring's doctest, the comment and the raise call: defined here, and not the helper
        "def zeros(n):\n    return [0] * n\n\ndef shape(m):\n    return len(m)\n\n"
        "class ShapeError(ValueError):\n    pass\n")
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    s = Searcher(RagbitConfig.load(root), embedder=FakeEmbedder())
    first = s.search("col_insert no longer works", k=1, mode="lexical", units=True)[0]
    assert first.scope == "class Shaping > def col_insert"
    # the helper it calls, from its own class (not Other's method of the same name)
    helper = (root / "common.py").read_text().splitlines().index("    def _eval_col_insert(self, pos, other):") + 1
    assert [(c.scope, c.start_line) for c in first.callees] == [("class Shaping > def _eval_col_insert", helper)]
    assert s.search("col_insert no longer works", k=1, mode="lexical")[0].callees is None   # only with units
    hits = HybridRetriever(RagbitConfig.load(root), k=1, mode="lexical", embedder=FakeEmbedder()).run(
        query="col_insert no longer works")["hits"]
    assert [h.scope for h in hits] == ["class Shaping > def col_insert", "class Shaping > def _eval_col_insert"]


def test_code_identifiers_are_the_words_that_name_code():
    from ragbit.search.question import code_identifiers
    q = ("Writing a table with header_rows fails in RST.__init__. Traceback (most recent call last): "
         "the `write` method calls get_writer(). Expected: it works like fixedWidth.")
    assert code_identifiers(q) == ["header_rows", "RST.__init__", "get_writer", "fixedWidth", "write"]
    assert code_identifiers("Load a template by name and return it.") == []


def test_hybrid_search_also_ranks_by_the_question_code_names_alone(repo):
    """A long report's BM25 list is dominated by its prose; hybrid search adds BM25 over its code names alone
    (a third list at IDENTIFIER_WEIGHT). Lexical mode and plain questions run BM25 once."""
    s = searcher(repo)
    s.search("warm up")                                    # load
    asked: list[str] = []
    real = s.lexical.search
    s.lexical.search = lambda q, n: asked.append(q) or real(q, n)
    report = "When the invoice_total is computed, the VAT is applied twice " * 6 + "in apply_tax()."
    top = s.search(report, k=3, mode="hybrid")
    assert asked == [report, "invoice_total apply_tax"] and top
    asked.clear()
    s.search(report, k=3, mode="lexical")
    s.search("how is value added tax applied to the invoice total", k=3, mode="hybrid")
    assert asked == [report, "how is value added tax applied to the invoice total"]


def test_fusion_weights_follow_the_kind_of_question():
    from ragbit.search.question import PLAIN_LEXICAL_WEIGHT, fusion_weights
    assert fusion_weights("Load a template by name and return it.") == (PLAIN_LEXICAL_WEIGHT, 1.0)
    assert fusion_weights("why does QuerySet.filter drop rows") == (1.0, 1.0)
    report = ("Filtering on a query result overrides GROUP BY of the internal query. " * 5
              + "Traceback: File django/db/models/sql/query.py, line 1200, in add_q")
    assert fusion_weights(report) == (1.0, 1.0)


def test_a_long_report_has_a_title_when_its_first_line_is_one():
    from ragbit.search.question import report_title
    body = "When the invoice total is computed the tax is applied twice, see the traceback below. " * 4
    assert report_title("### Tax applied twice to invoices\n\n" + body) == "Tax applied twice to invoices"
    assert report_title(body) == ""                          # one paragraph, no line of its own
    assert report_title("Tax applied twice\nwhy?") == ""     # a short question is its own title
    assert report_title("Bug\n" + body) == ""                # one word is no title
    assert report_title("Traceback (most recent call last):\n" + body) == ""
    assert report_title(body + "\n" + body) == ""            # a first line of more than 40 words is no title


def test_hybrid_search_of_a_long_report_also_searches_its_title_densely(repo):
    """Hybrid search embeds a long report's title alone (one more dense list); short questions and lexical mode
    do not."""
    s = searcher(repo)
    s.search("warm up")                                    # load
    embedded: list[str] = []
    real = s.embedder.embed_query
    s.embedder.embed_query = lambda q: embedded.append(q) or real(q)
    report = "Tax applied twice to invoices\n" + "When the invoice_total is computed, the VAT is applied twice. " * 6
    assert s.search(report, k=3, mode="hybrid")
    assert embedded == [report, "Tax applied twice to invoices"]
    embedded.clear()
    s.search(report, k=3, mode="lexical")
    s.search("Tax applied twice\nto invoices", k=3, mode="hybrid")
    assert embedded == ["Tax applied twice\nto invoices"]


@pytest.mark.parametrize("question, plain", [
    ("Load a template by name and return it.", True),
    ("how does the retry loop back off?", True),
    ("where is parse_header defined", False),          # names code: BM25 keeps its full weight
    ("why does QuerySet.filter drop rows", False),
    ("what does `load` return", False),
    ("what calls render()", False),
    (" ".join(["word"] * 60), False),                  # long texts (issues, tracebacks) keep it too
])
def test_plain_language_questions_are_told_apart_from_questions_that_name_code(question, plain):
    from ragbit.search.question import is_plain_language
    assert is_plain_language(question) is plain


def test_traceback_frames_are_read_innermost_first_from_python_and_pytest_tracebacks():
    from ragbit.search.question import traceback_frames
    report = ("Printing fails\nTraceback (most recent call last):\n"
              '  File "<stdin>", line 1, in <module>\n'
              '  File "/usr/lib/python3.11/site-packages/shop/printer.py", line 12, in print_matrix\n'
              "    return render(m)\n"
              '  File "C:\\Python\\Lib\\site-packages\\shop\\render.py", line 40, in render\n'
              "ValueError: bad\n"
              "src/shop/render.py:41: in render\n")
    assert traceback_frames(report) == [("src/shop/render.py", 41, "render"),
                                        ("C:/Python/Lib/site-packages/shop/render.py", 40, "render"),
                                        ("/usr/lib/python3.11/site-packages/shop/printer.py", 12, "print_matrix")]
    assert traceback_frames("why does render fail with ValueError") == []


def test_the_functions_a_quoted_traceback_passes_through_are_ranked_up(tmp_path, monkeypatch):
    """A pasted traceback names the files and functions the failure went through; the innermost frame's
    function is where a reader looks first. Its file path is the installed one, not the repository's."""
    import ragbit.search.searcher as searcher_module
    root = tmp_path / "shop"
    (root / "shop").mkdir(parents=True)
    body = "\n".join(f"    total_{i} = price * {i}" for i in range(12))
    about = {2: "The invoice total is wrong: computing an invoice price total raises ZeroDivisionError."}
    (root / "shop" / "pricing.py").write_text(
        "".join(f"def price_rule_{n}(price):\n    '''{about.get(n, f'Rule {n}.')}'''\n{body}\n"
                f"    return total_3\n\n\n" for n in range(8)))
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    s = Searcher(RagbitConfig.load(root), embedder=FakeEmbedder())
    report = ("The invoice total is wrong for some prices\nComputing an invoice price total raises:\n"
              "Traceback (most recent call last):\n"
              '  File "/venv/lib/python3.11/site-packages/shop/pricing.py", line 3, in price_rule_0\n'
              '  File "/venv/lib/python3.11/site-packages/shop/pricing.py", line 50, in price_rule_5\n'
              "ZeroDivisionError: division by zero\n" + "The price rules compute the invoice total. " * 8)
    wanted = (root / "shop" / "pricing.py").read_text().splitlines().index("def price_rule_5(price):") + 1
    assert [s.table.scope[pos] for pos in s._frame_ranking(report)][:1] == ["def price_rule_5"]
    ranked = s.search(report, k=3, mode="hybrid", max_hits_per_file=0)
    assert ranked[0].start_line <= wanted <= ranked[0].end_line
    monkeypatch.setattr(searcher_module, "FRAME_WEIGHT", 0.0)   # the same search without the frames' list
    unranked = s.search(report, k=8, mode="hybrid", max_hits_per_file=0)
    assert not unranked[0].start_line <= wanted <= unranked[0].end_line


@pytest.mark.parametrize("trace, frames", [
    ("TypeError: x is undefined\n    at Cart.addItem (/app/src/cart.js:3:12)\n    at Object.<anonymous> (/app/main.js:9:1)\n"
     "    at total (C:\\app\\src\\cart.js:7:10)",
     [("/app/src/cart.js", 3, "addItem"), ("C:/app/src/cart.js", 7, "total")]),
    ("Exception in thread \"main\" java.lang.NullPointerException\n\tat com.shop.Cart$Line.add(Cart.java:31)\n"
     "\tat com.shop.Main.main(Main.kt:5)",
     [("com/shop/Cart.java", 31, "add"), ("com/shop/Main.kt", 5, "main")]),
    ("panic: runtime error\n\ngoroutine 1 [running]:\nmain.(*Cart).AddItem(0x0, 0x1)\n\t/home/u/shop/cart.go:12 +0x1d\n"
     "main.main()\n\t/home/u/shop/main.go:8 +0x25",
     [("/home/u/shop/cart.go", 12, "AddItem"), ("/home/u/shop/main.go", 8, "main")]),
    ("thread 'main' panicked\nstack backtrace:\n   3: shop::cart::Cart::add_item::h0123456789abcdef\n"
     "             at ./src/cart.rs:14:9\n   4: shop::main\n             at ./src/main.rs:3:5",
     [("./src/cart.rs", 14, "add_item"), ("./src/main.rs", 3, "main")]),
])
def test_stack_frames_of_other_runtimes_are_read_innermost_first(trace, frames):
    from ragbit.search.question import traceback_frames
    assert traceback_frames("The cart fails when an item is added\n" + trace) == frames


def test_a_javascript_stack_trace_ranks_up_the_method_it_names(tmp_path):
    root = tmp_path / "shop"
    (root / "src").mkdir(parents=True)
    (root / "src" / "cart.js").write_text(
        "class Cart {\n" + "".join(f"  rule{n}(item) {{\n    // Rule {n} of the cart total.\n" +
                                   "".join(f"    const t{i} = item.price * {i};\n" for i in range(10)) +
                                   "    return t3;\n  }\n" for n in range(6)) + "}\n")
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    s = Searcher(RagbitConfig.load(root), embedder=FakeEmbedder())
    report = "Adding an item breaks the total\nTypeError: price of undefined\n    at Cart.rule4 (/srv/app/src/cart.js:60:20)\n"
    ranked = s._frame_ranking(report)
    assert ranked and all(s.table.scope[pos] == "class Cart > method rule4" for pos in ranked)
    assert s.table.start_line[ranked[0]] <= 60 <= s.table.end_line[ranked[0]]
