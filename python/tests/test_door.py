"""One door: batch strategies through ``select``, the device policy for
float64, and what Python users hold (DLPack, ``__array__``, memory maps)
read in place or copied once, as documented."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import random_probs

import alpool


class DLPackOnly:
    """A producer that speaks only the DLPack protocol (as a CPU torch
    tensor does to NumPy), over a NumPy array's memory."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, **kwargs: object) -> object:
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._a.__dlpack_device__()


class OnGpu(DLPackOnly):
    """A tensor on a device NumPy cannot read (kDLCUDA = 2): asked for a
    CPU export, it refuses, as a CUDA torch tensor does."""

    def __dlpack__(self, **kwargs: object) -> object:
        raise BufferError("the tensor is on cuda:0")

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)


def test_float64_under_auto_gets_the_cpu_answer_even_with_an_adapter_named() -> None:
    p = random_probs(4000, 5, 3, np.float64)
    emb = np.random.default_rng(1).normal(size=(4000, 3))
    cpu = alpool.select(p, "margin", 30, device="cpu")
    auto = alpool.select(p, "margin", 30, device="auto", adapter="llvmpipe")
    assert np.array_equal(auto[0], cpu[0]) and np.array_equal(auto[1], cpu[1])
    # The batch path took its device elsewhere, without the float64 rule.
    cpu = alpool.select(p, "badge", 20, embeddings=emb, device="cpu", seed=2)
    auto = alpool.select(p, "badge", 20, embeddings=emb, device="auto", adapter="llvmpipe", seed=2)
    assert np.array_equal(auto[0], cpu[0])
    with pytest.raises(alpool.AlpoolError, match="--device cpu or auto"):
        alpool.select(p, "margin", 30, device="gpu")


def test_batch_strategies_go_through_select_and_name_missing_inputs() -> None:
    p = random_probs(300, 4, 2)
    emb = np.random.default_rng(2).normal(size=(300, 6)).astype(np.float32)
    for strategy in alpool.BATCH_STRATEGIES:
        a = alpool.select(p, strategy, 12, embeddings=emb, exclude=[0, 1], seed=4)
        b = alpool.select_batch(p, emb, strategy, 12, exclude=[0, 1], seed=4)
        assert np.array_equal(a[0], b[0]) and len(set(a[0].tolist())) == 12
    # Core-set needs nothing but the embeddings.
    alone = alpool.select(None, "coreset", 12, embeddings=emb, exclude=[0, 1])
    with_probs = alpool.select(p, "coreset", 12, embeddings=emb, exclude=[0, 1])
    assert np.array_equal(alone[0], with_probs[0])
    with pytest.raises(TypeError, match="badge needs embeddings"):
        alpool.select(p, "badge", 5)
    with pytest.raises(TypeError, match="margin does not read embeddings"):
        alpool.select(p, "margin", 5, embeddings=emb)


def test_dlpack_memmaps_and_frames_are_read_as_arrays() -> None:
    p = random_probs(2000, 4, 7)
    want = alpool.select(p, "entropy", 25)
    # DLPack: viewed, not copied.
    view = alpool._array(DLPackOnly(p), "probs")
    assert np.shares_memory(view, p)
    got = alpool.select(DLPackOnly(p), "entropy", 25)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    # A pandas frame's 2-D view is column-major: copied once, stated.
    frame = pd.DataFrame(p, columns=list("abcd"))
    got = alpool.select(frame, "entropy", 25)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert np.array_equal(alpool.score(frame, "entropy"), alpool.score(p, "entropy"))
    with pytest.raises(TypeError, match="cannot read this OnGpu in place through DLPack"):
        alpool.select(OnGpu(p), "entropy", 25)


def test_a_memmap_is_read_in_place(tmp_path: Path) -> None:
    p = random_probs(3000, 6, 8)
    path = tmp_path / "p.npy"
    np.save(path, p)
    mm = np.load(path, mmap_mode="r")
    assert alpool._array(mm, "probs") is mm
    got = alpool.select(mm, "margin", 40)
    want = alpool.select(p, "margin", 40)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_headless_gpu_probing_leaves_stderr_alone(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("NODEVICE_SELECT", None)
    code = (
        "import numpy as np, alpool\n"
        "p = np.full((300, 2), 0.5, dtype=np.float32)\n"
        "print(alpool.select(p, 'margin', 3, device='gpu')[0].tolist())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    if "no GPU adapter" in out.stderr and os.environ.get("CI") != "true":
        pytest.skip("no GPU adapter here")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 1, 2]"
    assert out.stderr == ""
