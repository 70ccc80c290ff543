"""alpool's greedy sampling (igs, gsy, gsx) against scikit-activeml's, side
by side in one run.

Usage: python bench_regression.py SKACTIVEML_PYTHON [--k K] [--big N] [N ...]

Each measurement runs in a child process under /usr/bin/time, so its peak
RSS is its own; scikit-activeml's children run in the interpreter given
(with ``scikit-activeml`` from PyPI) under a 16 GiB address-space limit and
a time limit, so running out of memory or time shows as a failure, not a
dead machine. The pool: N rows of 64 float32 features around 100 Gaussian
centres (seeded), a linear model's predictions, 100 labeled rows with
targets. Both sides get the same predictions (scikit-activeml through a
regressor that returns them), pick K rows (default 1,000) by iGS, and must
pick the same rows (there are no ties in this data). Then alpool alone at
``--big`` rows (default 1,000,000), and the ratio of scikit-activeml's time
at the largest N it finished to alpool's time at that N and at the big N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

LIMIT_KB, TIME_LIMIT = 16 << 20, 900

CHILD = r"""
import json, sys, time
import numpy as np
side, folder, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = np.load(folder + "/x.npy", mmap_mode="r")
pred = np.load(folder + "/p.npy")
y = np.load(folder + "/y.npy")
t0 = time.perf_counter()
if side == "alpool":
    import alpool
    picks = alpool.select(pred, "igs", k, input="regression", embeddings=x,
                          targets=y)[0].tolist()
else:
    from skactiveml.base import SkactivemlRegressor
    from skactiveml.pool import GreedySamplingTarget
    x = np.asarray(x, dtype=np.float64)
    lut = {r.tobytes(): v for r, v in zip(x, pred.astype(np.float64))}
    class Given(SkactivemlRegressor):
        def __init__(self, missing_label=np.nan):
            super().__init__(missing_label=missing_label)
        def fit(self, X, y, sample_weight=None):
            return self
        def predict(self, X):
            return np.array([lut[r.tobytes()] for r in np.asarray(X, dtype=np.float64)])
    qs = GreedySamplingTarget(method="GSi")
    picks = [int(i) for i in qs.query(x, y, Given(), fit_reg=False, batch_size=k)]
print(json.dumps({"seconds": time.perf_counter() - t0, "picks": picks}))
"""


def measure(python: str, side: str, folder: Path, k: int) -> dict:
    cmd = ["/usr/bin/time", "-f", "RSS_KB %M", python, "-c", CHILD, side, str(folder), str(k)]
    limit = f"ulimit -v {LIMIT_KB}; " if side == "skactiveml" else ""
    shell = limit + " ".join(f"'{c}'" for c in cmd)
    try:
        out = subprocess.run(
            ["bash", "-c", shell], capture_output=True, text=True, timeout=TIME_LIMIT
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"over {TIME_LIMIT} s", "rss_mb": float("nan")}
    rss = next(
        (int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("RSS_KB")), 0
    )
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-2:]
        return {
            "failed": "out of memory" if "MemoryError" in out.stderr else tail,
            "rss_mb": rss / 1024,
        }
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["rss_mb"] = rss / 1024
    return result


def write_pool(folder: Path, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(100, 64)).astype(np.float32) * 3
    x = (centres[rng.integers(0, 100, n)] + rng.normal(size=(n, 64))).astype(np.float32)
    pred = (x @ rng.normal(size=64).astype(np.float32) / 8).astype(np.float32)
    y = np.full(n, np.nan)
    labeled = rng.choice(n, 100, replace=False)
    y[labeled] = pred[labeled] + rng.normal(size=100)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "x.npy", x)
    np.save(folder / "p.npy", pred)
    np.save(folder / "y.npy", y)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("skactiveml_python")
    ap.add_argument("sizes", nargs="*", type=int, default=[2000, 5000, 10000])
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--big", type=int, default=1_000_000)
    a = ap.parse_args()
    print(f"igs, k = {a.k}, 64 features, 100 labeled rows; {os.cpu_count()} CPUs", flush=True)
    largest = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.sizes:
            folder = Path(tmp) / f"n{n}"
            write_pool(folder, n)
            al = measure(os.environ.get("ALPOOL_PYTHON", "python3"), "alpool", folder, a.k)
            if "failed" in al:
                raise SystemExit(f"alpool failed at N = {n}: {al['failed']}")
            sk = measure(a.skactiveml_python, "skactiveml", folder, a.k)
            line = f"N = {n:>9,}  alpool {al['seconds']:8.2f} s {al['rss_mb']:7.0f} MB"
            if "failed" in sk:
                line += f" | scikit-activeml failed ({sk['failed']})"
            else:
                same = al["picks"] == sk["picks"]
                line += (
                    f" | scikit-activeml {sk['seconds']:8.2f} s {sk['rss_mb']:7.0f} MB"
                    f" | {sk['seconds'] / al['seconds']:6.1f}x, same picks in order: {same}"
                )
                largest = (n, sk["seconds"], al["seconds"])
            print(line, flush=True)
        folder = Path(tmp) / "big"
        write_pool(folder, a.big)
        big = measure(os.environ.get("ALPOOL_PYTHON", "python3"), "alpool", folder, a.k)
        print(
            f"N = {a.big:>9,}  alpool {big['seconds']:8.2f} s {big['rss_mb']:7.0f} MB", flush=True
        )
    if largest is not None:
        n, sk_s, al_s = largest
        print(
            f"scikit-activeml's largest finished N = {n:,}: {sk_s:.2f} s; "
            f"alpool there {al_s:.2f} s "
            f"({sk_s / al_s:.1f}x); alpool at N = {a.big:,} in {big['seconds']:.2f} s "
            f"({sk_s / big['seconds']:.1f}x faster than scikit-activeml at N = {n:,})"
        )


if __name__ == "__main__":
    main()
