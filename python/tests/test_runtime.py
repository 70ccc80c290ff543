"""No copy of the pool, the GIL released, Ctrl-C honoured."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import random_probs

import alpool


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_no_copy_peak_memory_stays_small() -> None:
    p = random_probs(4_000_000, 10, 3)  # 160 MB
    alpool.select(p[:1000], "margin", 10)  # thread pool and code warmed
    if not _reset_peak():
        pytest.skip("cannot reset the peak RSS here")
    before = _status("VmRSS")
    for strategy in ["least-confidence", "margin", "entropy"]:
        alpool.select(p, strategy, 1000)
    grew = _status("VmHWM") - before
    # A copy of the pool would be 160 MB.
    assert grew < 16 << 20, f"peak RSS grew by {grew / 2**20:.1f} MiB"


def test_the_gil_is_released_during_a_select() -> None:
    p = random_probs(3_000_000, 10, 4)
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.0005)

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.01)
    start = ticks
    t0 = time.perf_counter()
    for _ in range(5):
        alpool.select(p, "entropy", 1000)
    elapsed = time.perf_counter() - t0
    during = ticks - start
    stop.set()
    t.join()
    # Held GIL: the counter could run only between calls (a few ticks).
    assert during > 20, f"the counter advanced {during} times in {elapsed:.3f} s"


def test_ctrl_c_interrupts_a_long_select() -> None:
    # The parent sends the signal once the child says it is inside the
    # loop: no timer thread racing the child's start-up and the GIL, and a
    # missed signal ends the loop after 30 s with "not interrupted" rather
    # than running into the test's timeout.
    code = """
import time
import numpy as np
import alpool
p = np.random.default_rng(0).random((4_000_000, 10), dtype=np.float32)
p /= p.sum(1, keepdims=True)
alpool.select(p, "entropy", 1000, device="cpu")
t0 = time.perf_counter()
try:
    print("selecting", flush=True)
    while time.perf_counter() - t0 < 30:
        alpool.select(p, "entropy", 1000, device="cpu")
    print("not interrupted")
except KeyboardInterrupt:
    print(f"interrupted after {time.perf_counter() - t0:.2f} s")
"""
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "selecting"
        time.sleep(0.3)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert "interrupted after" in out, out + err
    assert float(out.split()[2]) < 10
