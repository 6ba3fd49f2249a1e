"""Shared pieces for the retrieval tests: a small multi-language repository and a fake tiny embedder.

The fake embedder is a hashed bag of words (deterministic, no model, microseconds): a question sharing words
with a chunk lands near it, so dense search is testable for real, and it counts the texts it embeds so the
tests can assert what was (not) re-embedded.
"""
from __future__ import annotations

import hashlib
import re
import textwrap
import time
from pathlib import Path

import numpy as np

REPO_FILES = {
    "src/billing/invoice.py": '''
        """Invoices: totals, taxes and discounts."""


        class Invoice:
            """A customer invoice with line items."""

            def __init__(self, customer, items):
                self.customer = customer
                self.items = items

            def total(self):
                """Sum of line item prices after discounts."""
                return sum(item.price * item.quantity for item in self.items)

            def apply_vat(self, rate):
                """Value added tax: multiply the total by one plus the rate."""
                return self.total() * (1 + rate)


        def render_pdf(invoice, path):
            """Write the invoice as a PDF document to path."""
            with open(path, "wb") as out:
                out.write(b"%PDF-1.4 invoice for " + invoice.customer.encode())
        ''',
    "src/net/retry.py": '''
        import time


        def retry_with_backoff(fn, attempts=5, base_delay=0.5):
            """Call fn until it succeeds, sleeping with exponential backoff between failures."""
            for attempt in range(attempts):
                try:
                    return fn()
                except ConnectionError:
                    time.sleep(base_delay * 2 ** attempt)
            raise TimeoutError("gave up after retries")
        ''',
    "web/static/carousel.js": '''
        // Image carousel for the landing page.
        function nextSlide(carousel) {
          carousel.index = (carousel.index + 1) % carousel.slides.length;
          showSlide(carousel, carousel.index);
        }

        function showSlide(carousel, index) {
          carousel.slides.forEach((slide, i) => {
            slide.style.display = i === index ? "block" : "none";
          });
        }
        ''',
    "cmd/server/main.go": '''
        package main

        import (
        \t"fmt"
        \t"net/http"
        )

        // healthHandler answers the load balancer's liveness probe.
        func healthHandler(w http.ResponseWriter, r *http.Request) {
        \tfmt.Fprintln(w, "ok")
        }

        func main() {
        \thttp.HandleFunc("/healthz", healthHandler)
        \thttp.ListenAndServe(":8080", nil)
        }
        ''',
    "docs/deployment.md": '''
        # Deployment

        ## Kubernetes

        The server runs as a Deployment with three replicas behind an ingress.
        Rolling updates keep two replicas available at all times.

        ## Database migrations

        Run migrations before switching traffic to the new release.
        ''',
    "README.md": '''
        # shopfront

        A small shop: invoices, a web carousel and a Go health server.
        ''',
}


def make_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    for rel, text in (files or REPO_FILES).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


_WORDS = re.compile(r"[a-z]+")


class FakeEmbedder:
    """Hashed bag-of-words vectors (dim 256), unit length; counts every text it embeds."""

    model_id = "fake-bag-of-words"
    dim = 256
    max_text_tokens = 254

    def __init__(self, delay_per_call: float = 0.0, calls_file: Path | None = None, model_id: str | None = None):
        self.delay = delay_per_call
        self.calls_file = calls_file
        self.embedded: list[str] = []
        self.seconds_in_model = 0.0
        if model_id:
            self.model_id = model_id

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in _WORDS.findall(text.lower()):
            v[int(hashlib.md5(w.encode()).hexdigest()[:8], 16) % self.dim] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def embed(self, texts, progress: bool = True) -> np.ndarray:
        if self.delay:
            time.sleep(self.delay)
        self.embedded.extend(texts)
        if self.calls_file is not None:
            with open(self.calls_file, "a") as f:
                f.write(f"{len(texts)}\n")
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)


def as_format_1(gen) -> None:
    """Rewrite a generation's table as index format 1 wrote it (chunk_table.txt + symbols.json)."""
    import json
    import shutil

    from ragbit.chunk_table import TABLE_DIR, ChunkTable
    from ragbit.symbols.table import SymbolTable
    table, symbols = ChunkTable.load(gen), SymbolTable.load(gen)
    header = {"version": 2, "files": [[f.path, f.sha256, f.first, f.count] + ([list(f.stamp)] if f.stamp else [])
                                      for f in table.files],
              **{name: list(getattr(table, name)) for name in ("language", "scope", "start_line", "end_line",
                                                               "content_hash")},
              "text_length": [len(t) for t in table.text]}
    texts = "".join(table.text)
    shutil.rmtree(gen / TABLE_DIR)
    with open(gen / "chunk_table.txt", "w", encoding="utf-8", newline="") as out:
        out.write(json.dumps(header, ensure_ascii=False) + "\n" + texts)
    symbols.save(gen)
    manifest = json.loads((gen / "manifest.json").read_text())
    del manifest["checksums"]
    manifest["format_version"] = 1
    (gen / "manifest.json").write_text(json.dumps(manifest))
