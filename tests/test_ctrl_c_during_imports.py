"""`ragbit chat` survives a Ctrl-C: one that lands inside a module's first import is held until the import is done.

Why a test of its own: CI caught the chat dying with numba's "duplicate registration" after a Ctrl-C happened to
land in numba's first compilation (it imports `numba.cpython.unicode`, whose registrations outlive an interrupted
import). Which of the first answer's hundreds of imports a Ctrl-C lands in is timing, so the pty test of the chat
only sometimes sees it; here a real SIGINT is sent into a slow import every time."""
import os
import subprocess
import tempfile
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


SLOW_PACKAGE = """
import time
FINISHED = []
def compile_something():
    time.sleep(1.0)                       # stands for numba compiling: the SIGINT arrives in the middle
    FINISHED.append(True)
"""

PACKAGE_DRIVER = """
import os, signal, sys, threading, time
sys.path.insert(0, sys.argv[1])
import slowpkg
from ragbit.cli import interrupts
if sys.argv[2] == "hold":
    interrupts.DELICATE_PACKAGES.append("slowpkg")
interrupts.hold_ctrl_c_during_imports()
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    slowpkg.compile_something()
    time.sleep(5)                          # the held Ctrl-C is delivered here
    print("never interrupted")
except KeyboardInterrupt:
    print("interrupted; finished:", bool(slowpkg.FINISHED))
"""


def test_a_ctrl_c_inside_numba_is_delivered_after_it(tmp_path):
    """The same hold for code of the DELICATE_PACKAGES (numba's compiler: CI saw a Ctrl-C inside it break numba's
    registry, "generator raised StopIteration", and the chat with it). A stand-in package that is listed finishes
    its work before the KeyboardInterrupt; unlisted (the control), it is broken off."""
    (tmp_path / "slowpkg").mkdir()
    (tmp_path / "slowpkg" / "__init__.py").write_text(SLOW_PACKAGE, encoding="utf-8")
    out = {}
    for mode in ("hold", "control"):
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(PACKAGE_DRIVER), str(tmp_path), mode], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out[mode] = r.stdout.strip()
    assert out == {"hold": "interrupted; finished: True", "control": "interrupted; finished: False"}


NUMBA_DRIVER = """
import os, signal, sys, threading, time
import numba, numpy as np
from ragbit.cli.interrupts import hold_ctrl_c_during_imports
hold_ctrl_c_during_imports()

@numba.njit(parallel=True)
def first(a):
    s = 0.0
    for i in numba.prange(a.shape[0]):
        s += np.sin(a[i]) * np.cos(a[i]) + np.sqrt(abs(a[i]))
    return s

threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    first(np.ones(8))                      # compiling (~1 s) when the SIGINT arrives
    time.sleep(5)
    print("never interrupted")
except KeyboardInterrupt:
    pass

@numba.njit
def second(a):                             # numba still compiles after the Ctrl-C
    return a.sum() * 2
print("compiled:", len(first.signatures), "then:", second(np.ones(3)))
"""


def test_numba_still_compiles_after_a_ctrl_c_during_a_compile():
    """A real SIGINT sent into numba's first compile of a parallel kernel: the compile completes, the Ctrl-C is
    delivered after it, and the next function still compiles and runs."""
    env = {**os.environ, "NUMBA_CACHE_DIR": tempfile.mkdtemp(prefix="ragbit-ctrlc-")}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(NUMBA_DRIVER)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "compiled: 1 then: 6.0"
