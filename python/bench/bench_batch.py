"""BADGE and core-set at scale, side by side in one run: alpool against
scikit-activeml's and small-text's implementations on the same pools.

    python python/bench/bench_batch.py [--rows 10000,100000,1000000,10000000] \
        [--classes 10] [--dim 128] [-k 1000] [--mem-gib 20] [--timeout 300] \
        [--alpool target/release/alpool] [--dir /tmp]

For each N, a float32 pool of softmax rows (N x C) and embeddings (N x D)
is written once; then every implementation selects k rows from it in a
child process of its own, capped at --mem-gib of address space (so running
out of memory is a MemoryError, not the machine's OOM killer) and
--timeout seconds; a library that ran out of time runs at larger N only
for --probe seconds, to see whether it can even allocate what it needs
(they all allocate before their first pick). The table gives wall time,
the child's peak RSS (from wait4) and what stopped it. The Python libraries run only where installed
(`pip install scikit-activeml small-text`); alpool runs as the CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np
kind, probs_path, emb_path, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
probs = np.load(probs_path, mmap_mode="r")
emb = np.load(emb_path, mmap_mode="r")
n = len(probs)
t = time.perf_counter()
if kind == "small-text coreset":
    from small_text.query_strategies.coresets import greedy_coreset
    # It needs a labeled row to start from (and recomputes the distance to
    # every centre on each pick): row 0.
    picks = greedy_coreset(np.asarray(emb), np.arange(1, n), np.array([0]), k,
                           distance_metric="euclidean")
elif kind == "skactiveml coreset":
    from skactiveml.pool import CoreSet
    y = np.full(n, np.nan)
    picks = CoreSet(random_state=0).query(np.asarray(emb), y, batch_size=k)
elif kind == "skactiveml badge":
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import Badge

    class Fixed(SkactivemlClassifier):
        # The pool's probabilities and embeddings, looked up by row index
        # (X is one column of row numbers).
        def __init__(self, classes=None, missing_label=np.nan):
            super().__init__(classes=classes, missing_label=missing_label)
        def fit(self, X, y, sample_weight=None):
            self._validate_data(X, y, sample_weight)
            return self
        def predict_proba(self, X, return_embeddings=False):
            rows = np.asarray(X)[:, 0].astype(np.int64)
            p = np.asarray(probs[rows], dtype=np.float64)
            return (p, np.asarray(emb[rows], dtype=np.float64)) if return_embeddings else p

    c = probs.shape[1]
    clf = Fixed(classes=np.arange(c)).fit(np.arange(c, dtype=float)[:, None], np.arange(c))
    X = np.arange(n, dtype=float)[:, None]
    y = np.full(n, np.nan)
    picks = Badge(clf_embedding_flag_name="return_embeddings", random_state=0).query(
        X, y, clf, fit_clf=False, batch_size=k)
print(json.dumps({"seconds": time.perf_counter() - t, "picked": len(picks)}))
"""


def run_child(cmd: list[str], mem_gib: float, timeout: float) -> dict:
    """Runs `cmd` capped at `mem_gib` of address space; its own peak RSS
    comes from wait4."""
    cap = int(mem_gib * (1 << 30))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limit)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        _, status, usage = os.wait4(p.pid, 0)
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        err.seek(0)
        text = err.read().decode(errors="replace")
    rss = usage.ru_maxrss * 1024
    if wall >= timeout:
        return {"status": f"over {timeout:.0f} s", "wall": None, "rss": rss}
    if p.returncode != 0:
        oom = any(
            m in text
            for m in ("MemoryError", "Unable to allocate", "memory allocation", "Cannot allocate")
        )
        last = (text.strip().splitlines() or ["?"])[-1][:80]
        status = f"out of memory ({mem_gib:g} GiB cap)" if oom else f"failed: {last}"
        return {"status": status, "wall": wall, "rss": rss}
    return {"status": "ok", "wall": wall, "rss": rss}


def have(module: str) -> bool:
    return (
        subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode
        == 0
    )


def write_pool(d: Path, n: int, c: int, dim: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(n)
    pp, ep = d / f"probs-{n}.npy", d / f"emb-{n}.npy"
    probs = np.lib.format.open_memmap(pp, mode="w+", dtype=np.float32, shape=(n, c))
    emb = np.lib.format.open_memmap(ep, mode="w+", dtype=np.float32, shape=(n, dim))
    step = 1 << 18
    for a in range(0, n, step):
        b = min(n, a + step)
        z = rng.normal(size=(b - a, c)) * 2.0
        p = np.exp(z - z.max(1, keepdims=True))
        probs[a:b] = p / p.sum(1, keepdims=True)
        emb[a:b] = rng.normal(size=(b - a, dim))
    probs.flush()
    emb.flush()
    del probs, emb
    return pp, ep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="10000,100000,1000000,10000000")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("-k", type=int, default=1000)
    ap.add_argument("--mem-gib", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=300.0, help="per library run")
    ap.add_argument("--probe", type=float, default=60.0, help="per run once a library was too slow")
    ap.add_argument("--alpool-timeout", type=float, default=1800.0)
    ap.add_argument("--alpool", default="target/release/alpool")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()

    others = []
    if have("small_text"):
        others.append("small-text coreset")
    if have("skactiveml"):
        others += ["skactiveml coreset", "skactiveml badge"]
    print(f"k = {a.k}, C = {a.classes}, D = {a.dim}, float32; memory cap {a.mem_gib:g} GiB")
    print(f"{'N':>10}  {'implementation':<22} {'wall s':>9} {'peak RSS':>10}  status")
    results = []
    given_up: set[str] = set()
    slow: set[str] = set()
    for n in [int(x) for x in a.rows.split(",")]:
        with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
            pp, ep = write_pool(Path(tmp), n, a.classes, a.dim)
            runs = [
                (
                    f"alpool {s}",
                    [
                        a.alpool,
                        "select",
                        str(pp),
                        "--embeddings",
                        str(ep),
                        "--strategy",
                        s,
                        "-k",
                        str(a.k),
                        "-q",
                        "-o",
                        str(Path(tmp) / f"{s}.csv"),
                    ],
                )
                for s in ("badge", "coreset")
            ]
            for name, cmd in runs + [(kind, None) for kind in others]:
                if cmd is None:
                    cmd = [sys.executable, "-c", CHILD, name, str(pp), str(ep), str(a.k)]
                # A library already too slow at a smaller N runs only long
                # enough to allocate what it needs (or fail to).
                limit = a.probe if name in slow else a.timeout
                if name.startswith("alpool"):
                    limit = a.alpool_timeout
                if name in given_up:
                    r = {"status": "skipped (out of memory at a smaller N)", "wall": None}
                    r["rss"] = None
                else:
                    r = run_child(cmd, a.mem_gib, limit)
                    if r["status"].startswith("out of memory"):
                        given_up.add(name)
                    elif r["status"].startswith("over"):
                        slow.add(name)
                        if limit == a.probe:
                            r["status"] += ", no out-of-memory by then"
                wall = "-" if r["wall"] is None else f"{r['wall']:.1f}"
                rss = "-" if r["rss"] is None else f"{r['rss'] / (1 << 20):.0f} MiB"
                print(f"{n:>10}  {name:<22} {wall:>9} {rss:>10}  {r['status']}", flush=True)
                results.append({"rows": n, "implementation": name, **r})
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
