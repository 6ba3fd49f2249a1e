"""`ragbit chat` survives a Ctrl-C: one that lands inside a module's first import is held until the import is done.

Why a test of its own: CI caught the chat dying with numba's "duplicate registration" after a Ctrl-C happened to
land in numba's first compilation (it imports `numba.cpython.unicode`, whose registrations outlive an interrupted
import). Which of the first answer's hundreds of imports a Ctrl-C lands in is timing, so the pty test of the chat
only sometimes sees it; here a real SIGINT is sent into a slow import every time."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SLOW_MODULE = """
import time
import registry_of_effects
registry_of_effects.RUNS.append("slow")   # a side effect that outlives an interrupted import, like numba's
time.sleep(1.0)                           # the import is still running when the SIGINT arrives
DONE = True
"""

DRIVER = """
import os, signal, sys, threading, time
sys.path.insert(0, sys.argv[1])
import registry_of_effects
from ragbit.cli.interrupts import hold_ctrl_c_during_imports
if sys.argv[2] == "hold":
    hold_ctrl_c_during_imports()
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    import slow_module
    time.sleep(5)                          # the held Ctrl-C is delivered here, after the import
    print("never interrupted")
except KeyboardInterrupt:
    print("interrupted; imported:", "slow_module" in sys.modules, "runs:", len(registry_of_effects.RUNS))
"""


def run_driver(tmp_path: Path, mode: str) -> str:
    (tmp_path / "registry_of_effects.py").write_text("RUNS = []\n", encoding="utf-8")
    (tmp_path / "slow_module.py").write_text(SLOW_MODULE, encoding="utf-8")
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(DRIVER), str(tmp_path), mode], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_a_ctrl_c_inside_an_import_is_delivered_after_it(tmp_path):
    assert run_driver(tmp_path, "hold") == "interrupted; imported: True runs: 1"


def test_without_the_handler_the_import_is_broken_off(tmp_path):
    """The control: Python's own handler interrupts the import and leaves its side effect behind."""
    assert run_driver(tmp_path, "default") == "interrupted; imported: False runs: 1"


def test_a_second_ctrl_c_is_obeyed_inside_the_import(tmp_path):
    """An import that hangs must not trap the user: Ctrl-C twice interrupts it."""
    (tmp_path / "registry_of_effects.py").write_text("RUNS = []\n", encoding="utf-8")
    (tmp_path / "slow_module.py").write_text(SLOW_MODULE.replace("1.0", "30"), encoding="utf-8")
    driver = DRIVER.replace("threading.Timer(0.3", "threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGINT))"
                            ".start()\nthreading.Timer(0.3")
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(driver), str(tmp_path), "hold"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "interrupted; imported: False runs: 1"
