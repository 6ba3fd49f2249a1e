"""Secrets never reach the index: secret files are not read, secrets inside ordinary files are masked before
they are chunked, tokenized, embedded, stored, shown or put in a prompt; the index is private to its owner.

Every planted secret is then searched for in every byte under `.ragbit/` (as written, lower-cased as BM25
stores its vocabulary, and its distinctive random core alone), in `ragbit search --json` and human output,
and in the prompt `ragbit query --json` sent to the tiny model."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit.cli import app
from ragbit.indexing.secret_masking import mask_secrets
from tests.retrieval_fixtures import FakeEmbedder, make_repo

runner = CliRunner()

AWS_KEY = "AKIAQ3EXAMPLE7K2ZP4X"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKY"
GH_TOKEN = "ghp_R8x2Kq9Lm4Tz7Vb1Nw6Yc3Hd5Fj0Gs8Pa2Qe"
GL_TOKEN = "glpat-Xr7Tq2Lm9Kz4Vb8Nw1Yc"
SLACK = "xoxb-2749361058-4418203975112-Qm7Rt2Xz9Lk4Vb8Nw1Yc3Hd"
PG_PASSWORD = "Tr0ub4dor-and-3"
YAML_PASSWORD = "pl4nted-yaml-Pw"
ENV_ASSIGN = "sEcr3tValue_9981"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
PEM_BODY = "MIIEpAIBAAKCAQEA3Tz2mr7SuiTnHvRxb9KQk7aLpNv0Pl4x"
HIGH_ENTROPY = "q8Zr4T7xLm2Vb9Nw1Yc3Hd5Fj0Gs8Pa2QeKt6"
BY_NAME = "n4meOnlySecret_7731"        # only inside files that must not be read at all

INLINE = [AWS_KEY, AWS_SECRET, GH_TOKEN, GL_TOKEN, SLACK, PG_PASSWORD, YAML_PASSWORD, ENV_ASSIGN, JWT, PEM_BODY,
          HIGH_ENTROPY]
SECRET_FILES = [".env", ".env.local", "id_rsa", "server.pem", "cert.p12", "credentials.json", ".npmrc", ".pypirc",
                "secrets.yaml", ".docker/config.json", "terraform.tfvars", "prod.tfvars", ".envrc", "kubeconfig",
                ".netrc", "deploy/tls.key", ".kube/config", ".ssh/id_ed25519", "store.pfx"]


def plant(repo: Path) -> None:
    files = {
        "config.py": f'GITHUB_TOKEN = "{GH_TOKEN}"\nDATABASE_URL = "postgres://app:{PG_PASSWORD}@db.internal:5432/app"\n'
                     f'def connect():\n    """Open the planted database connection."""\n    return DATABASE_URL\n'
                     f'SIGNING = "{HIGH_ENTROPY}"\n',
        "settings.yaml": f"# planted settings\ndatabase:\n  user: app\n  password: {YAML_PASSWORD}\n  host: db.internal\n",
        "notes.txt": f"planted notes about the key\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n"
                     "q8Zr4T7xLm2Vb9Nw1Yc3Hd5Fj0Gs8Pa2QeKt6LmPq\n-----END RSA PRIVATE KEY-----\nend of notes\n",
        "deploy.sh": f"#!/bin/sh\nexport AWS_ACCESS_KEY_ID={AWS_KEY}\nexport AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"
                     f"export API_KEY={ENV_ASSIGN}\naws s3 sync planted s3://bucket\n",
        "web/app.js": f"// planted slack notifier\nconst slack = '{SLACK}';\nconst gitlab = '{GL_TOKEN}';\n"
                      f"const session = '{JWT}';\nfunction notify() {{ return slack; }}\n",
    }
    for rel in SECRET_FILES:
        files[rel] = f"TOKEN={BY_NAME}\npassword = {BY_NAME}\n"
    for rel, text in files.items():
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(0o600)


def needles(secret: str) -> list[bytes]:
    forms = {secret, secret.lower()}
    core = max(secret.replace("-", "_").replace(".", "_").replace("/", "_").split("_"), key=len)
    if len(core) >= 10:
        forms |= {core, core.lower()}
    return [f.encode() for f in forms]


def leaks(blob: bytes) -> list[str]:
    return [s for s in INLINE + [BY_NAME] if any(n in blob for n in needles(s))]


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    repo = make_repo(tmp_path / "shop")
    plant(repo)
    return repo


def test_masking_keeps_line_numbers_and_masks_every_planted_secret(tmp_path):
    plant(tmp_path)
    for rel in ("config.py", "settings.yaml", "notes.txt", "deploy.sh", "web/app.js"):
        text = (tmp_path / rel).read_text()
        masked, n = mask_secrets(text, rel)
        assert n >= 1 and masked.count("\n") == text.count("\n"), rel
        assert not leaks(masked.encode()), (rel, masked)
        assert "planted" in masked or "connect" in masked     # the ordinary text survives


def test_ordinary_code_is_not_masked():
    code = ('password = request.POST["password"]\ntoken = tokens[0]\ndef login(user, password=None):\n'
            '    secret_key = settings.SECRET_KEY\n    template = "auth/password_reset.html"\n'
            '    ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"\n'
            '    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"\n'
            '    msg = "Enter your password"\n')
    assert mask_secrets(code, "auth.py") == (code, 0)


def test_no_secret_reaches_index_search_or_prompt(repo, tiny_model):
    r = runner.invoke(app, ["index", str(repo)])
    assert r.exit_code == 0, r.output
    assert "secret" in r.stdout and "masked" in r.stdout
    index = repo / ".ragbit"
    files = [p for p in index.rglob("*") if p.is_file()]
    assert len(files) > 5
    for p in files:
        assert not leaks(p.read_bytes()), p
    # private: the index directory is 0700, every generation file 0600
    assert stat.S_IMODE(index.stat().st_mode) == 0o700
    for p in files:
        if p.name not in ("lock",):
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p, oct(p.stat().st_mode))

    questions = ["github token database url", "password database host", "private key notes",
                 "aws access key deploy", "slack notifier session gitlab", "signing connect"]
    for q in questions:
        for extra in (["--json"], []):
            r = runner.invoke(app, ["search", q, "--repo", str(repo), "-k", "20", *extra])
            assert r.exit_code == 0, r.output
            assert not leaks(r.stdout.encode()), (q, r.stdout)
    r = runner.invoke(app, ["search", "planted", "--repo", str(repo), "--json", "-k", "20"])
    paths = {h["path"] for h in json.loads(r.stdout)["hits"]}
    assert {"config.py", "notes.txt", "deploy.sh", "web/app.js"} <= paths      # ordinary files still indexed
    assert not paths & set(SECRET_FILES)

    r = runner.invoke(app, ["query", "where is the github token and the database password?", "--repo", str(repo),
                            "--model", str(tiny_model), "--max-tokens", "4", "--budget", "600", "--json", "--verbose"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["prompt"] and "config.py" in out["prompt"]
    assert not leaks(r.stdout.encode()), out["prompt"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from generator.synthetic import write_synthetic_gguf
    from tests.conftest import REFERENCE_DIR
    path = tmp_path_factory.mktemp("model") / "tiny-tied.gguf"
    return write_synthetic_gguf(path, "tiny-tied", tokenizer_from=REFERENCE_DIR / "tiny-tied-q1_0.gguf", seed=3)
