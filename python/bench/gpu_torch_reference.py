"""PyTorch on the same CUDA GPU as the reference for alpool's wgpu path:
the card's two ceilings, then the same jobs as `alpool bench --device gpu`
and `alpool select --model --features --device gpu`, in PyTorch, on the
same files, so the table says how far the WGSL kernels are from what the
vendor's own stack does on that card.

    python gpu_torch_reference.py --pool P.npy [--samples-rows 1000000 --samples 20]
        [--model M.safetensors --features X.npy] [--picks alpool.csv] [-k 1000]

Each GPU-resident figure is the median of 20 runs timed with CUDA events
after 3 warm-ups; "from host" figures start from the page-cached NumPy
array (mapped .npy) and end with the top k on the host, timed by the wall
clock. With --picks, the PyTorch margin top k is compared with alpool's
picks (same set, ties aside).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import struct
import time
import warnings

import numpy as np
import torch

# The mapped .npy is read-only; nothing here writes to it.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
# CUDA when there is one; the CPU only to check this script on a machine without.
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def pinned(t: torch.Tensor) -> torch.Tensor:
    return t.pin_memory() if DEV == "cuda" else t


def events(fn, runs: int = 20, warm: int = 3) -> float:
    """Median milliseconds of fn on the GPU, by CUDA events."""
    if DEV != "cuda":
        return wall(fn, runs)
    for _ in range(warm):
        fn()
    times = []
    for _ in range(runs):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def wall(fn, runs: int = 5) -> float:
    fn()
    sync()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def margin_topk(p: torch.Tensor, k: int) -> torch.Tensor:
    top2 = torch.topk(p, 2, dim=1).values
    return torch.topk(top2[:, 0] - top2[:, 1], k, largest=False).indices


def entropy_topk(p: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(-torch.special.xlogy(p, p).sum(dim=1), k).indices


def least_confidence_topk(p: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(1 - p.max(dim=1).values, k).indices


def bald_topk(s: torch.Tensor, k: int) -> torch.Tensor:
    mean = s.mean(dim=0)
    h_mean = -torch.special.xlogy(mean, mean).sum(dim=1)
    h_each = -torch.special.xlogy(s, s).sum(dim=2).mean(dim=0)
    return torch.topk(h_mean - h_each, k).indices


def line(name: str, ms: float, nbytes: int | None = None) -> None:
    rate = f"  {nbytes / ms / 1e6:7.1f} GB/s" if nbytes else ""
    print(f"  {name:<52} {ms:9.2f} ms{rate}", flush=True)


def ceilings() -> None:
    n = 1 << 30  # 4 GiB of float32
    x = torch.empty(n, dtype=torch.float32, device=DEV).uniform_()
    y = torch.empty_like(x)
    ms = events(lambda: y.copy_(x), runs=10)
    line("device-to-device copy of 4 GiB (read + write)", ms, 2 * 4 * n)
    h = torch.empty(1 << 28, dtype=torch.float32)
    h = pinned(h)
    d = torch.empty(1 << 28, dtype=torch.float32, device=DEV)
    ms = events(lambda: d.copy_(h, non_blocking=True), runs=10)
    line("host-to-device copy of 1 GiB, pinned", ms, 4 << 28)
    h = torch.empty(1 << 28, dtype=torch.float32)
    ms = wall(lambda: d.copy_(h))
    line("host-to-device copy of 1 GiB, pageable", ms, 4 << 28)


def pool_jobs(path: str, k: int, picks: str | None) -> None:
    host = np.load(path, mmap_mode="r")
    nbytes = host.nbytes
    print(f"pool {path}: {host.shape[0]} x {host.shape[1]} float32, {nbytes / 1e6:.0f} MB")
    p = torch.from_numpy(np.ascontiguousarray(host)).to(DEV)
    for name, fn in [
        ("least-confidence", least_confidence_topk),
        ("margin", margin_topk),
        ("entropy", entropy_topk),
    ]:
        line(f"{name}, pool on the GPU", events(lambda fn=fn: fn(p, k)), nbytes)
    staged = pinned(torch.from_numpy(np.ascontiguousarray(host)))
    line(
        "margin, from pinned host memory (upload + score + top k)",
        wall(lambda: margin_topk(staged.to(DEV, non_blocking=True), k).cpu()),
        nbytes,
    )
    line(
        "margin, from the mapped .npy (upload + score + top k)",
        wall(lambda: margin_topk(torch.from_numpy(np.asarray(host)).to(DEV), k).cpu()),
        nbytes,
    )
    if picks:
        ours = {int(r["index"]) for r in csv.DictReader(open(picks))}
        theirs = set(margin_topk(p, k).cpu().tolist())
        print(f"  margin top {k}: {len(ours & theirs)} of {k} rows the same as alpool's")


def samples_jobs(rows: int, t: int, c: int, k: int) -> None:
    g = torch.Generator(device=DEV).manual_seed(0)
    logits = torch.randn((t, rows, c), generator=g, device=DEV) * 3
    s = torch.softmax(logits, dim=2)
    del logits
    nbytes = s.numel() * 4
    print(f"samples: {t} x {rows} x {c} float32, {nbytes / 1e6:.0f} MB")
    line("bald, samples on the GPU", events(lambda: bald_topk(s, k)), nbytes)
    host = pinned(s.cpu())
    line(
        "bald, from pinned host memory (upload + score + top k)",
        wall(lambda: bald_topk(host.to(DEV, non_blocking=True), k).cpu()),
        nbytes,
    )


def model_jobs(model: str, features: str, k: int) -> None:
    raw = open(model, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    tensors = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=np.float32).reshape(v["shape"])
        tensors[name] = torch.from_numpy(arr.copy()).to(DEV)
    layers = sorted({name.split(".")[0] for name in tensors}, key=lambda s: int(s[5:]))
    x = np.load(features, mmap_mode="r")
    print(f"model {model} over {features}: {x.shape[0]} x {x.shape[1]} {x.dtype}")

    def forward(h: torch.Tensor) -> torch.Tensor:
        for i, name in enumerate(layers):
            h = torch.nn.functional.linear(h, tensors[name + ".weight"], tensors[name + ".bias"])
            if i + 1 < len(layers):
                h = torch.relu(h)
        return torch.softmax(h, dim=1)

    with torch.no_grad():
        xd = torch.from_numpy(np.ascontiguousarray(x)).to(DEV)
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            mode = "tf32" if tf32 else "fp32"
            line(
                f"MLP + margin top k, features on the GPU ({mode})",
                events(lambda: margin_topk(forward(xd), k)),
            )
        torch.backends.cuda.matmul.allow_tf32 = False
        line(
            "MLP + margin top k, from the mapped .npy (fp32)",
            wall(lambda: margin_topk(forward(torch.from_numpy(np.asarray(x)).to(DEV)), k).cpu(), 3),
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool")
    ap.add_argument("--picks")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--samples-rows", type=int, default=0)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--model")
    ap.add_argument("--features")
    ap.add_argument("-k", type=int, default=1000)
    args = ap.parse_args()
    name = torch.cuda.get_device_name() if DEV == "cuda" else "the CPU (no CUDA device)"
    print(f"PyTorch {torch.__version__} on {name}")
    ceilings()
    if args.pool:
        pool_jobs(args.pool, args.k, args.picks)
    if args.samples_rows:
        samples_jobs(args.samples_rows, args.samples, args.classes, args.k)
    if args.model and args.features:
        model_jobs(args.model, args.features, args.k)


if __name__ == "__main__":
    main()
