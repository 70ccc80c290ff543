"""A pool split into shards on disk, selected through a local Ray cluster
next to single-process selection over the same files, in one run.

    python python/bench/bench_ray.py [ROWS] [SHARDS] [K] [DIR]

Defaults: 100M x 10 float32 rows (4 GB) in 8 shards, k = 1,000, written to
DIR (default /tmp/alpool-ray-bench, reused when present). Reports the median
of 3 runs each (page-cached), the driver's peak RSS increase during the Ray
selection (reset through /proc/self/clear_refs), and the bytes each task
sent back.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import ray

import alpool
import alpool.ray


def status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def shards(rows: int, count: int, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    per = rows // count
    paths = []
    rng = np.random.default_rng(0)
    for i in range(count):
        n = per if i < count - 1 else rows - per * (count - 1)
        path = directory / f"shard-{i}-{n}.npy"
        if not path.exists():
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 10))
            for a in range(0, n, 1 << 22):
                b = min(n, a + (1 << 22))
                block = rng.random((b - a, 10), dtype=np.float32) + np.float32(1e-3)
                block /= block.sum(axis=1, keepdims=True)
                out[a:b] = block
            out.flush()
            del out
        paths.append(path)
    return paths


def median_time(f, runs: int = 3) -> tuple[float, object]:
    result = f()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        result = f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), result


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000_000
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    directory = Path(sys.argv[4] if len(sys.argv) > 4 else "/tmp/alpool-ray-bench")
    t = time.perf_counter()
    paths = shards(rows, count, directory)
    size = sum(p.stat().st_size for p in paths)
    print(
        f"{rows:,} x 10 float32 in {count} shards ({size / 1e9:.1f} GB) ready in "
        f"{time.perf_counter() - t:.1f} s; k = {k}; {os.cpu_count()} CPUs"
    )
    t_one, one = median_time(lambda: alpool.select_files(paths, "margin", k))
    print(f"single process alpool.select_files: {t_one:.3f} s (median of 3)")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t = time.perf_counter()
    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - t:.1f} s, {ray.cluster_resources().get('CPU')} CPUs")
    alpool.ray.select(paths, "margin", k)  # workers started, modules imported
    Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS")
    t_ray, got = median_time(lambda: alpool.ray.select(paths, "margin", k))
    grew = status("VmHWM") - before
    same = np.array_equal(got[0], one[0]) and np.array_equal(got[1], one[1])
    print(
        f"Ray, {count} tasks: {t_ray:.3f} s (median of 3), {t_ray / t_one:.2f}x single process; "
        f"identical selection: {same}; driver peak RSS increase {grew / 2**20:.1f} MiB; "
        f"each task sent back {k} x 16 bytes = {k * 16 / 1024:.0f} KiB"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
