"""alpool's BatchBALD against batchbald_redux (Kirsch et al.'s reference
implementation, from PyPI), side by side in one run, on the same
MC-dropout-like samples: N x T x C float32 probabilities.

batchbald_redux needs torch; it runs in a child process (float64, as its
examples do, timed from its call) and alpool as the whole `alpool select`
process on the same samples saved as N x T x C (`--layout ntc`), so
alpool's time includes reading the file. Both use the same configuration
budget M.

    python bench_batchbald.py [N] [T] [C] [BATCH] [--configurations M] \
        [--redux-timeout S] [--cli target/release/alpool]

With --redux-timeout, batchbald_redux is stopped after S seconds and the
picks it had made are read off its progress bar: where it was stopped
after alpool finished, alpool is faster by more than the ratio printed.

Prints each time, the ratio, and the picks: the exact steps (while
C^picks <= M) must agree; after them each draws its own configurations
(torch.multinomial against alpool's seeded hash), so the picks may part.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def pool(n: int, t: int, c: int, seed: int = 0) -> np.ndarray:
    """N x T x C softmax outputs of noisy logits: each row a centre, its
    scale log-normal (most rows confident, some not), and Gaussian noise
    per sample, as MC-dropout passes of one network give; floored at 1e-9."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(n, 1, c)) * np.exp(rng.normal(1.0, 0.8, size=(n, 1, 1)))
    z = centre + rng.normal(size=(n, t, c))
    z -= z.max(-1, keepdims=True)
    p = np.exp(z)
    p = np.maximum(p / p.sum(-1, keepdims=True), 1e-9)
    # No exact zeros: batchbald_redux takes logarithms with no 0 ln 0 = 0
    # rule, and a zero makes its scores NaN.
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=5000)
    ap.add_argument("t", nargs="?", type=int, default=20)
    ap.add_argument("c", nargs="?", type=int, default=10)
    ap.add_argument("batch", nargs="?", type=int, default=10)
    ap.add_argument("--configurations", type=int, default=10_000)
    ap.add_argument(
        "--redux-timeout",
        type=float,
        default=None,
        help="stop batchbald_redux after this many seconds (default: let it finish)",
    )
    ap.add_argument(
        "--cli", default=str(Path(__file__).resolve().parents[2] / "target/release/alpool")
    )
    a = ap.parse_args()

    import torch

    p = pool(a.n, a.t, a.c)
    print(
        f"samples {a.n:,} x {a.t} x {a.c} float32, batch {a.batch}, M = {a.configurations:,}; "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({os.cpu_count()} threads)"
    )
    exact_steps = sum(1 for i in range(a.batch) if a.c**i <= a.configurations)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ntc.npy"
        np.save(path, p)
        cmd = [
            a.cli,
            "select",
            "--samples",
            str(path),
            "--layout",
            "ntc",
            "-s",
            "batchbald",
            "-k",
            str(a.batch),
            "--configurations",
            str(a.configurations),
            "-q",
        ]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        ours_s = time.perf_counter() - t0
        theirs, theirs_s, done = redux(path, a.batch, a.configurations, a.redux_timeout)
    ours = [int(r["index"]) for r in csv.DictReader(out.splitlines())]
    print(f"alpool select (whole process): {ours_s:.2f} s")
    print(f"picks alpool:          {ours}")
    if theirs is None:
        print(
            f"batchbald_redux: stopped after {theirs_s:.0f} s with {done} of {a.batch} picks "
            f"made (its progress bar): more than {theirs_s / ours_s:.1f}x alpool's time"
        )
        return
    print(f"batchbald_redux: {theirs_s:.2f} s; {theirs_s / ours_s:.1f}x alpool's time")
    print(f"picks batchbald_redux: {theirs}")
    same = ours[:exact_steps] == theirs[:exact_steps]
    print(
        f"the {exact_steps} exact picks agree: {same}; "
        f"{len(set(ours) & set(theirs))} of {a.batch} rows in both batches"
    )


REDUX = r"""
import json, sys, time
import numpy as np
import torch
from batchbald_redux.batchbald import get_batchbald_batch
torch.set_num_threads(int(sys.argv[4]))
p = np.load(sys.argv[1])
log_probs = torch.from_numpy(np.log(p.astype(np.float64)))
t0 = time.perf_counter()
got = get_batchbald_batch(log_probs, int(sys.argv[2]), int(sys.argv[3]), dtype=torch.double)
print(json.dumps({"s": time.perf_counter() - t0, "indices": list(got.indices)}))
"""


def redux(path: Path, batch: int, m: int, timeout: float) -> tuple[list[int] | None, float, int]:
    """batchbald_redux in a child process on the N x T x C file: (its picks,
    its seconds, picks made); the picks are None if it ran past `timeout`,
    and the picks made are then read off its progress bar."""
    import re

    cmd = [sys.executable, "-c", REDUX, str(path), str(batch), str(m), str(os.cpu_count() or 1)]
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        try:
            out = subprocess.run(
                cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout, check=True
            ).stdout
        except subprocess.TimeoutExpired:
            err.seek(0)
            done = [int(x) for x in re.findall(rf"(\d+)/{batch}\b", err.read())]
            return None, time.perf_counter() - t0, max(done, default=0)
    got = json.loads(out)
    return [int(i) for i in got["indices"]], float(got["s"]), batch


if __name__ == "__main__":
    main()
