"""Malformed ragbit.toml: wrong types, bad ranges, unknown keys, invalid TOML. Each is one line naming the key
and what it expected (issue #20: `k = 1.9` was silently 1, `server = 5` false, a string for a list ignored)."""
from __future__ import annotations

import dataclasses
import random

import pytest
from typer.testing import CliRunner

from ragbit.cli import app
from ragbit.config import ConfigError, RagbitConfig

runner = CliRunner()


def load(tmp_path, toml: str | bytes):
    path = tmp_path / "ragbit.toml"
    path.write_bytes(toml if isinstance(toml, bytes) else toml.encode())
    return RagbitConfig.load(tmp_path)


@pytest.mark.parametrize("toml, fragments", [
    ("[walk]\nignore = 5\n", ["[walk] ignore", "expected a list"]),
    ('[walk]\nignore = "docs/"\n', ["[walk] ignore", "expected a list"]),
    ("[walk]\nignore = [1, 2]\n", ["[walk] ignore", "list of strings"]),
    ("[embed]\nbatch_size = 0\n", ["[embed] batch_size", "positive"]),
    ("[search]\nk = 1.9\n", ["[search] k", "expected an integer"]),
    ("[search]\nk = true\n", ["[search] k", "expected an integer"]),
    ("[search]\nserver = 5\n", ["[search] server", "expected true or false"]),
    ('[search]\nserver = "yes"\n', ["[search] server", "expected true or false"]),
    ("[search]\nk = 9223372036854775807\n", ["[search] k", "at most"]),
    ("[generator]\ntemperature = nan\n", ["[generator] temperature", "expected a number"]),
    ("[generator]\ntop_p = 2.0\n", ["[generator] top_p", "between 0 and 1"]),
    ('[generator]\nmodel = ""\n', ["[generator] model", "empty"]),
    ("[chunk]\noverlap_lines = 50\n", ["overlap_lines", "window_lines"]),
    ("[search]\nbogus = 1\n", ["unknown key 'bogus'"]),
    ("[bogus]\nx = 1\n", ["unknown config section [bogus]"]),
    ("[search\nk = 1\n", ["cannot read config"]),
    (b"[search]\nk = \xff\n", ["cannot read config"]),
])
def test_known_bad_configs_are_one_line_naming_the_key(tmp_path, toml, fragments):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, toml)
    message = str(e.value)
    assert "\n" not in message
    for f in fragments:
        assert f in message, message
    r = runner.invoke(app, ["status", str(tmp_path)])          # and through the CLI: one `error:` line
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert [l for l in r.stderr.splitlines() if l.strip()] == [f"error: {message}"]


def test_good_config_still_loads(tmp_path):
    cfg = load(tmp_path, '[walk]\nignore = ["docs/"]\n[search]\nk = 5\nserver = false\n[generator]\ntemperature = 0\n')
    assert cfg.search.k == 5 and cfg.search.server is False and cfg.walk.ignore == ["docs/"]
    assert cfg.generator.temperature == 0.0


VALUES = ["0", "-1", "1", "1.5", "-0.0", "nan", "inf", "true", "false", '""', '"x"', '"5"', "[]", '["a"]', "[1]",
          "{}", "{a = 1}", "9223372036854775807", "-9223372036854775808", "1e308", '"' + "a" * 300 + '"',
          "2024-01-01", '"\\u0000"']


def fuzz_cases(n: int, seed: int):
    rng = random.Random(seed)
    keys = [(s.name, f.name) for s in dataclasses.fields(RagbitConfig) if s.name != "repo"
            for f in dataclasses.fields(s.default_factory())]
    for _ in range(n):
        lines = []
        for _ in range(rng.randrange(1, 4)):
            section, key = rng.choice(keys)
            lines.append(f"[{section}]\n{key} = {rng.choice(VALUES)}")
        text = "\n".join(lines) + "\n"
        if rng.random() < 0.15:                               # and some raw byte damage
            b = bytearray(text.encode())
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            text = bytes(b)
        yield text


def run_fuzz(tmp_path, n: int, seed: int) -> tuple[int, int]:
    """(configs rejected with one line, configs accepted); any other exception fails the test."""
    rejected = accepted = 0
    for text in fuzz_cases(n, seed):
        try:
            load(tmp_path, text)
            accepted += 1
        except ConfigError as e:
            assert "\n" not in str(e) and str(e).strip(), (text, str(e))
            rejected += 1
    return rejected, accepted


def test_config_fuzz_short(tmp_path):
    rejected, accepted = run_fuzz(tmp_path, 600, seed=20)
    assert rejected > 300 and accepted > 0


@pytest.mark.faults_long
@pytest.mark.timeout(3600)
def test_config_fuzz_long(tmp_path):
    rejected, accepted = run_fuzz(tmp_path, 20_000, seed=2020)
    assert rejected + accepted == 20_000
