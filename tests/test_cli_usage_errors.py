"""Usage errors (unknown flag, missing argument, unknown command) are one line and exit code 2, no traceback."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv, expected", [
    (["search", "--bogus", "x"], "No such option: --bogus"),
    (["search", "x", "-k", "-k", "-inf"], "No such option: -inf"),   # click splits -inf into -i -n -f
    (["search", "x", "-i"], "No such option: -i"),
    (["search"], "Missing argument"),
    (["frobnicate"], "No such command"),
])
def test_usage_error_is_one_line(argv, expected):
    proc = subprocess.run([sys.executable, "-m", "ragbit.cli", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
