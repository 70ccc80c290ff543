"""alpool's TypiClust and ProbCover against scikit-activeml's, side by side.

Usage: python bench_coldstart.py SKACTIVEML_PYTHON [N ...]

Each measurement runs in a child process under /usr/bin/time, so its peak
RSS is its own; scikit-activeml's children run in the interpreter given
(a virtual environment with ``scikit-activeml`` from PyPI) under a 16 GiB
address-space limit, so running out of memory shows as a MemoryError and
not as a dead machine. The embeddings: N rows of 64 float32 values around
100 Gaussian centres (seeded). TypiClust picks B = 100 rows from no labels;
ProbCover picks 100 with δ given (the same δ for both), so neither side
spends time choosing it. Prints seconds and peak RSS per side, and whether
the picks are the same set (they need not be: k-means differs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

B, DELTA, LIMIT_KB = 100, 12.0, 16 << 20

CHILD = r"""
import json, sys, time
import numpy as np
side, strategy, path = sys.argv[1], sys.argv[2], sys.argv[3]
B, DELTA = int(sys.argv[4]), float(sys.argv[5])
x = np.load(path)
t0 = time.perf_counter()
if side == "alpool":
    import alpool
    extra = {"delta": DELTA} if strategy == "probcover" else {}
    picks = alpool.select(embeddings=x, strategy=strategy, k=B, **extra)[0].tolist()
else:
    from skactiveml.pool import ProbCover, TypiClust
    y = np.full(len(x), np.nan)
    if strategy == "typiclust":
        qs = TypiClust(random_state=0)
    else:
        qs = ProbCover(n_classes=10, deltas=[DELTA], random_state=0)
    picks = [int(i) for i in qs.query(x, y, batch_size=B)]
print(json.dumps({"seconds": time.perf_counter() - t0, "picks": picks}))
"""


def measure(python: str, side: str, strategy: str, path: Path) -> dict:
    cmd = ["/usr/bin/time", "-f", "RSS_KB %M", python, "-c", CHILD, side, strategy, str(path)]
    cmd += [str(B), str(DELTA)]
    limit = f"ulimit -v {LIMIT_KB}; " if side == "skactiveml" else ""
    shell = limit + " ".join(f"'{c}'" for c in cmd)
    out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True)
    rss = next(
        (int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("RSS_KB")), 0
    )
    if out.returncode != 0:
        why = (
            "out of memory" if "MemoryError" in out.stderr else out.stderr.strip().splitlines()[-2:]
        )
        return {"failed": why, "rss_mb": rss / 1024}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["rss_mb"] = rss / 1024
    return result


def main() -> None:
    skal = sys.argv[1]
    sizes = [int(a) for a in sys.argv[2:]] or [5000, 20000, 50000]
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(100, 64)).astype(np.float32) * 3
    print(f"B = {B}, δ = {DELTA}, 64-dimensional embeddings; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            x = centres[rng.integers(0, 100, n)] + rng.normal(size=(n, 64)).astype(np.float32)
            path = Path(tmp) / f"e{n}.npy"
            np.save(path, x.astype(np.float32))
            for strategy in ["typiclust", "probcover"]:
                a = measure(sys.executable, "alpool", strategy, path)
                if "failed" in a:
                    raise SystemExit(f"alpool failed at N = {n}: {a['failed']}")
                s = measure(skal, "skactiveml", strategy, path)
                secs = a.get("seconds", float("nan"))
                line = f"N = {n:>7} {strategy:9s} alpool {secs:8.2f} s {a['rss_mb']:7.0f} MB"
                if "failed" in s:
                    line += f" | scikit-activeml failed ({s['failed']}) at {s['rss_mb']:.0f} MB"
                else:
                    same = sorted(a["picks"]) == sorted(s["picks"])
                    ratio = s["seconds"] / a["seconds"]
                    line += (
                        f" | scikit-activeml {s['seconds']:8.2f} s {s['rss_mb']:7.0f} MB"
                        f" | {ratio:5.1f}x, same picks: {same}"
                    )
                print(line, flush=True)


if __name__ == "__main__":
    main()
