"""The symbol table (built and updated with the index) and the grounding check of answers (issue #23).

A small repository whose definitions are known: a package that re-exports from its modules, a class with a base
in the repository and one with a base outside it, imports of dependencies. Hand-written answers name real,
misspelled, dependency-only and invented names, call with wrong arguments and cite the wrong block; each must
come out as written here.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit.cli import app
from ragbit.config import RagbitConfig
from ragbit.indexing.indexer import index_repository
from ragbit.symbols.claims import extract_claims
from ragbit.symbols.grounding import check_answer
from ragbit.symbols.reader import load_symbols
from tests.retrieval_fixtures import FakeEmbedder, make_repo

FILES = {
    "shop/__init__.py": '''
        """The shop package: its public names."""
        from .billing import Invoice, total
        from .cart import Cart as Basket
        ''',
    "shop/base.py": '''
        class Document:
            kind = "document"

            def describe(self) -> str:
                return f"{self.kind} {self.number}"
        ''',
    "shop/billing.py": '''
        import numpy as np
        import requests

        from shop.base import Document

        TAX_RATE = 0.2


        class Invoice(Document):
            """An invoice of lines."""

            def __init__(self, number: str):
                self.number = number
                self.lines = []

            def add_line(self, sku: str, qty: int = 1, *, price: float | None = None) -> None:
                self.lines.append((sku, qty, price))

            def send(self, url):
                return requests.post(url, json=self.lines)


        def total(invoices, tax=TAX_RATE):
            return float(np.sum([len(i.lines) for i in invoices])) * (1 + tax)
        ''',
    "shop/cart.py": '''
        from collections import OrderedDict


        class Cart(OrderedDict):
            def checkout(self, invoice_number):
                from shop.billing import Invoice
                return Invoice(invoice_number)
        ''',
    "web/carousel.js": '''
        export class Carousel {
          next() { return 1; }
        }
        function startCarousel(el) { return new Carousel(el); }
        ''',
    "README.md": "# shop\n\nA tiny shop.\n",
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("ground") / "shop", FILES)
    cfg = RagbitConfig.load(repo)
    index_repository(cfg, progress=False, embedder=FakeEmbedder())
    return cfg


@pytest.fixture(scope="module")
def table(shop):
    return load_symbols(shop)


def block(n, path, start, end, text):
    return SimpleNamespace(n=n, path=path, start_line=start, end_line=end, text=text)


def statuses(answer, table, blocks=()):
    return {f.name: f.status for f in check_answer(answer, table, blocks).findings}


# ------------------------------------------------------------------------------------------------ symbol table
def test_every_definition_is_recorded_with_kind_lines_and_signature(table):
    [add_line] = table.find("Invoice.add_line")
    assert (add_line.name, add_line.kind, add_line.path) == ("shop.billing.Invoice.add_line", "method", "shop/billing.py")
    assert (add_line.start_line, add_line.end_line) == (16, 17)
    assert add_line.signature == "def add_line(self, sku: str, qty: int = 1, *, price: float | None = None) -> None"
    assert [s.kind for s in table.find("TAX_RATE")] == ["constant"]
    assert [s.kind for s in table.find("Invoice.lines")] == ["attribute"]        # self.lines = [] in __init__
    assert [s.kind for s in table.find("shop.billing")] == ["module"]
    assert {s.name for s in table.find("Carousel.next")} == {"Carousel.next"}    # JavaScript too
    assert table.find("startCarousel")[0].signature == "function startCarousel(el)"
    assert "README.md" in table.files                                            # every indexed path is known


def test_reexports_and_aliases_resolve_to_the_definition(table):
    assert [s.path for s in table.resolve("shop.Invoice")] == ["shop/billing.py"]       # from .billing import
    assert [s.name for s in table.resolve("shop.Basket.checkout")] == ["shop.cart.Cart.checkout"]  # as Basket
    assert table.find("shop.Invoice") == []                                              # not a definition there


def test_an_edit_reparses_only_that_file_and_removal_drops_its_symbols(shop, table):
    repo = shop.repo
    billing = (repo / "shop" / "billing.py").read_text()
    try:
        (repo / "shop" / "billing.py").write_text(billing + "\n\ndef refund(invoice):\n    return invoice\n")
        (repo / "web" / "carousel.js").unlink()
        report = index_repository(RagbitConfig.load(repo), progress=False, embedder=FakeEmbedder())
        assert report.files_changed == 1 and report.files_removed == 1
        after = load_symbols(RagbitConfig.load(repo))
        assert [s.kind for s in after.find("refund")] == ["function"]
        assert after.find("Carousel") == [] and "web/carousel.js" not in after.files
        assert after.files["shop/cart.py"] == table.files["shop/cart.py"]
    finally:
        (repo / "shop" / "billing.py").write_text(billing)
        make_repo(repo, {"web/carousel.js": FILES["web/carousel.js"]})
        index_repository(RagbitConfig.load(repo), progress=False, embedder=FakeEmbedder())


def test_an_index_without_a_symbol_table_is_reparsed_once(shop):
    from indexes.store import IndexStore
    from ragbit.index_layout import SYMBOLS_FILE_V1
    from tests.retrieval_fixtures import as_format_1
    gen = IndexStore(shop.index_dir).current()
    as_format_1(gen)                                # format 1 kept symbols in their own file: written later
    (gen / SYMBOLS_FILE_V1).unlink()
    report = index_repository(shop, progress=False, embedder=FakeEmbedder())
    assert report.rechunked_all and report.chunks_embedded == 0
    assert load_symbols(shop).find("Invoice.add_line")


# ------------------------------------------------------------------------------------------------ claims
def test_claims_come_from_code_spans_blocks_and_prose():
    answer = ("`Invoice.add_line(sku, price=2)` in shop/billing.py [1] uses self.lines; see total_due.\n"
              "```python\nfrom shop import Invoice\ninv = Invoice('7')\ninv.send(url)\n"
              "def helper(x):\n    return x\nhelper(inv)\n```\n")
    got = {(c.kind, c.name, c.args, tuple(c.keywords), tuple(c.citations)) for c in extract_claims(answer)}
    assert got == {("call", "Invoice.add_line", 1, ("price",), ()), ("path", "shop/billing.py", None, (), (1,)),
                   ("name", "self.lines", None, (), ()), ("name", "total_due", None, (), ()),
                   ("name", "shop.Invoice", None, (), ()), ("call", "Invoice", 1, (), ()),
                   ("call", "inv.send", 1, (), ())}                      # helper is the block's own


# ------------------------------------------------------------------------------------------------ grounding
def test_real_names_are_found_including_methods_through_a_class_and_reexports(table):
    got = statuses("`Invoice.add_line` appends to `self.lines`; `shop.Invoice` and `shop.total` are public, "
                   "`Basket.checkout` builds one, `Invoice.describe` comes from `Document`, "
                   "`invoice.send` posts it and `startCarousel` starts the carousel.", table)
    assert got == {"Invoice.add_line": "repo", "self.lines": "repo", "shop.Invoice": "repo", "shop.total": "repo",
                   "Basket.checkout": "repo", "Invoice.describe": "repo", "Document": "repo",
                   "invoice.send": "repo", "startCarousel": "repo"}


def test_dependency_names_are_not_unknown(table):
    got = statuses("`requests.post`, `np.sum`, `numpy.zeros`, `os.path.join` and `Cart.move_to_end` "
                   "(from OrderedDict).", table)
    assert got == {"requests.post": "dependency", "np.sum": "dependency", "numpy.zeros": "dependency",
                   "os.path.join": "dependency", "Cart.move_to_end": "dependency"}


def test_misspelled_and_invented_names_are_unknown_with_suggestions(table):
    g = check_answer("Call `Invoice.add_lines`, then `Invoice.refund_all`, then `PaymentGateway.charge` "
                     "and `totl`.", table)
    by_name = {f.name: f for f in g.findings}
    assert {n: f.status for n, f in by_name.items()} == {n: "unknown" for n in
                                                         ("Invoice.add_lines", "Invoice.refund_all",
                                                          "PaymentGateway.charge", "totl")}
    assert by_name["Invoice.add_lines"].suggestion == "Invoice.add_line"
    assert by_name["totl"].suggestion == "total"
    line = g.summary()
    assert line.startswith("checked 4 names: 0 found, 4 unknown: Invoice.add_lines (did you mean "
                           "Invoice.add_line?)"), line


def test_calls_are_checked_against_the_signature(table):
    got = {f.name + f" {f.detail}": f.status for f in check_answer(
        "`Invoice.add_line('a', 2)` and `Invoice.add_line('a', price=3.0)` fit; "
        "`Invoice.add_line('a', 2, 3.0)` passes too many, `Invoice.add_line('a', colour='red')` invents one, "
        "`Invoice('7', 'x')` builds it wrong, and `total()` (a name, not a call) is not counted.\n"
        "```python\ntotal()\n```", table).findings}
    assert got == {"Invoice.add_line ": "repo",
                   "Invoice.add_line takes 2 positional arguments, given 3": "mismatch",
                   "Invoice.add_line has no parameter 'colour'": "mismatch",
                   "total missing argument 'invoices'": "mismatch", "total ": "repo",
                   "Invoice takes 1 positional argument, given 2": "mismatch"}


def test_citations_must_hold_the_cited_name(table):
    blocks = [block(1, "shop/billing.py", 10, 17, "class Invoice(Document):\n    def add_line(self, sku):\n"),
              block(2, "shop/cart.py", 1, 8, "class Cart(OrderedDict):\n    def checkout(self, n):\n")]
    g = check_answer("`Invoice.add_line` [1] adds a line; `Cart.checkout` [1] checks out; `total` [3] sums.", table,
                     blocks)
    got = {f.name: (f.status, f.detail) for f in g.findings}
    assert got["Invoice.add_line"] == ("context", "")                      # its definition is in block 1
    assert got["[1] Invoice.add_line"][0] == "context"
    assert got["[1] Cart.checkout"] == ("miscited", "block 1 does not contain it")
    assert got["[3] total"] == ("miscited", "there is no block 3")
    assert got["Cart.checkout"][0] == "context"                           # defined in block 2
    assert got["total"][0] == "repo"


def test_paths_moved_or_real(table):
    g = check_answer("See shop/billing.py, `billing.py` and shop/payments/billing.py and `shop/ledger.py`.", table)
    got = {f.name: (f.status, f.suggestion) for f in g.findings}
    assert got == {"shop/billing.py": ("repo", None), "billing.py": ("repo", None),
                   "shop/payments/billing.py": ("unknown", "shop/billing.py"),
                   "shop/ledger.py": ("unknown", None)}


# ------------------------------------------------------------------------------------------------ user-facing
def test_ragbit_symbols_prints_definitions_or_close_names(shop, monkeypatch):
    from tests.test_json_schema import validate
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    runner = CliRunner()
    r = runner.invoke(app, ["symbols", "add_line", "--repo", str(shop.repo)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "shop/billing.py:16-17  method  shop.billing.Invoice.add_line"
    r = runner.invoke(app, ["symbols", "Invoice.add_lin", "--repo", str(shop.repo), "--json"])
    doc = json.loads(r.output)
    validate(doc)
    assert doc["exact"] is False and doc["symbols"][0]["name"] == "shop.billing.Invoice.add_line"
    r = runner.invoke(app, ["symbols", "zzzzqqqq", "--repo", str(shop.repo)])
    assert r.exit_code == 1 and "nor anything close" in r.output


class _FixedAnswer:
    """A stand-in generator: the answer a model might write (the real ones are slow or random here)."""
    outputs = {"answer": str}
    text = ""

    def run(self, messages: list[dict]) -> dict:
        return {"answer": self.text}


def test_the_query_pipeline_checks_every_answer(shop, bonsai_tokenizer):
    from ragbit.pipeline.components import ContextPacker, GroundingChecker, HybridRetriever, PromptBuilder
    from ragbit.pipeline.components.citation_extractor import CitationExtractor
    from ragbit.pipeline.pipeline import Pipeline, query_inputs
    from ragbit.pipeline.standard import ask, standard_pipeline
    from ragbit.json_forms import query_document
    from tests.test_json_schema import validate

    assert "grounding" in standard_pipeline(shop).components
    cfg_off = RagbitConfig.load(shop.repo, overrides={"query": {"grounding": False}})
    assert "grounding" not in standard_pipeline(cfg_off).components

    generator = _FixedAnswer()
    p = Pipeline(**query_inputs())
    p.add("retriever", HybridRetriever(shop, embedder=FakeEmbedder()))
    p.add("packer", ContextPacker(budget=600, tokenizer=bonsai_tokenizer))
    p.add("prompt", PromptBuilder()).add("generator", generator).add("citations", CitationExtractor())
    p.add("grounding", GroundingChecker(shop))
    p.build()
    generator.text = "Use `Invoice.add_line` and `Invoice.fetch_all`."
    answer = ask(shop, "how is a line added to an invoice?", pipeline=p, refresh=False)
    assert [(f.name, f.status) for f in answer.grounding.findings][:1] == [("Invoice.add_line", "context")]
    assert answer.grounding.summary() == "checked 2 names: 1 found, 1 unknown: Invoice.fetch_all"
    doc = query_document(answer)
    validate(doc)
    assert {g["name"]: g["status"] for g in doc["grounding"]}["Invoice.fetch_all"] == "unknown"


def test_the_answer_shows_its_grounding_line_and_the_server_its_list(table, capsys):
    from ragbit.cli.query_cmds import _show_answer
    from ragbit.pipeline.standard import Answer
    from ragbit.serve.service import Generation
    text = "`Invoice.add_line` then `Invoice.refund_all`."
    answer = Answer("q", text=text, grounding=check_answer(text, table))
    _show_answer(answer, streamed=True, show_context=False)
    out = capsys.readouterr().out
    assert "checked 2 names: 1 found, 1 unknown: Invoice.refund_all" in out
    assert out.index("checked 2 names") < out.index("sources")           # under the answer, above the sources
    g = Generation("x", "eog", 1, 1, sources=[{"path": "a.py"}], grounding=answer.grounding.to_json())
    assert g.ragbit_extra()["grounding"][1]["status"] == "unknown" and g.ragbit_extra()["sources"]
    assert Generation("x", "eog", 1, 1).ragbit_extra() is None


class _ReadsTheContext:
    """A stand-in generator that names the right method only when its definition is in the prompt."""
    outputs = {"answer": str}

    def run(self, messages: list[dict]) -> dict:
        seen = "def add_line(self, sku" in "\n".join(m["content"] for m in messages)
        return {"answer": "Call `Invoice.add_line`." if seen else "Call `Invoice.add_lines`."}


def test_one_repair_pass_adds_the_suggested_definition_and_answers_again(shop, bonsai_tokenizer):
    from ragbit.json_forms import query_document
    from ragbit.pipeline.components import ContextPacker, GroundingChecker, HybridRetriever, PromptBuilder
    from ragbit.pipeline.pipeline import Pipeline, query_inputs
    from ragbit.pipeline.standard import ask
    from tests.test_json_schema import validate

    p = Pipeline(**query_inputs())
    p.add("retriever", HybridRetriever(shop, embedder=FakeEmbedder()))
    p.add("packer", ContextPacker(budget=300, tokenizer=bonsai_tokenizer))
    p.add("prompt", PromptBuilder()).add("generator", _ReadsTheContext()).add("grounding", GroundingChecker(shop))
    p.build()
    question = "what does the carousel return from next?"
    plain = ask(shop, question, pipeline=p, refresh=False)
    assert plain.text == "Call `Invoice.add_lines`." and plain.repair is None
    notes = []
    fixed = ask(shop, question, pipeline=p, refresh=False, repair=True, on_repair=notes.append)
    assert fixed.text == "Call `Invoice.add_line`." and [f.status for f in fixed.grounding.findings] == ["context"]
    assert fixed.repair.names == ["Invoice.add_lines"] and fixed.repair.first_answer == plain.text
    assert notes == ["repair: the answer named Invoice.add_lines, not defined here; answering once more with "
                     "Invoice.add_line (shop/billing.py:16-17) in the context"]
    assert fixed.context.tokens <= 300 and p.components["retriever"].pinned == []
    validate(query_document(fixed))
    again = ask(shop, "how is a line added?", pipeline=p, refresh=False, repair=True)
    assert again.repair is None                                   # nothing unknown: no second pass
