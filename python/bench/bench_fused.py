"""The model-to-top-k job, whole process, side by side in one run.

`alpool select --model M --features X -k K` against PyTorch's
predict_proba (the same weights, read from the same safetensors file)
followed by a NumPy top k, each a fresh process, alternated, timed by the
wall clock, with its peak RSS from wait4 (which counts the pages of mapped
files) and its peak anonymous memory (RssAnon, sampled), the like-for-like
figure. PyTorch runs in every
configuration asked for (threads, OpenBLAS core type); each one's
probabilities are first checked against alpool's `predict` on the first
rows, and a configuration that gets them wrong is reported and left out.

    /usr/bin/python3 python/bench/bench_fused.py --alpool target/release/alpool \\
        --model mnist.safetensors --features X1m.npy --runs 5

With `--mc-samples T` (a model trained with `--dropout P`) the job is
BALD over T MC-dropout passes instead: `alpool select --model --features
--mc-samples T -s bald` against PyTorch's T passes with dropout kept on
(consistent masks, as alpool's and batchbald_redux's: each pass draws one
mask a hidden layer with PyTorch's generator, the same for every row,
applied after the ReLU and scaled by 1 / (1 - rate); the first layer's
product, which no mask precedes, made once a chunk for all T passes, as
alpool makes it once a tile), chunk by chunk,
each chunk's T x rows x C probabilities scored by a NumPy BALD (baal's
formula), then a NumPy top k. The masks' bits differ (alpool's are
hashed, PyTorch's drawn), so the two top-k sets differ too; the weights
are checked as above, without dropout.

Needs numpy and torch in the interpreter that runs it (Debian's
python3-torch for the issue's comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TORCH_JOB = r"""
import json, struct, sys
import numpy as np
import torch

model, features, out = sys.argv[1], sys.argv[2], sys.argv[5]
k, threads = int(sys.argv[3]), int(sys.argv[4])
check_rows = int(sys.argv[6]) if len(sys.argv) > 6 else 0
passes = int(sys.argv[7]) if len(sys.argv) > 7 else 0
torch.set_num_threads(threads)
raw = open(model, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8 : 8 + n])
tensors = {}
for name, v in header.items():
    if name == "__metadata__":
        continue
    a, b = v["data_offsets"]
    tensors[name] = torch.from_numpy(
        np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=np.float32).reshape(v["shape"]).copy()
    )
layers = sorted({name.split(".")[0] for name in tensors}, key=lambda s: int(s[5:]))
config = json.loads(open(model[: -len(".safetensors")] + ".json").read())
if config.get("scaler"):
    raise SystemExit("this benchmark compares models without a feature scaler")
x = np.load(features, mmap_mode="r")
rows = x.shape[0] if not check_rows else check_rows
classes = tensors[layers[-1] + ".bias"].shape[0]

def forward(h, masks, start=0):
    # Layers start.. of the network, h the input of layer start.
    for i, name in enumerate(layers[start:], start):
        h = torch.nn.functional.linear(h, tensors[name + ".weight"], tensors[name + ".bias"])
        if i + 1 < len(layers):
            h = torch.relu(h)
            if masks:
                h = h * masks[i]
    return torch.softmax(h, dim=1).numpy()


def entropy(p):
    return -np.einsum("...c,...c->...", p, np.log(np.maximum(p, 1e-30)))


if passes and not check_rows:
    torch.manual_seed(0)
    rate = float(config["dropout"])
    # One mask a hidden layer per pass, kept for every chunk and row.
    widths = [tensors[name + ".bias"].shape[0] for name in layers[:-1]]
    masks = [
        [torch.bernoulli(torch.full((w,), 1 - rate)) / (1 - rate) for w in widths]
        for _ in range(passes)
    ]
    score = np.empty(rows, dtype=np.float32)
    with torch.no_grad():
        step = 16384
        for s in range(0, rows, step):
            part = np.asarray(x[s : min(rows, s + step)])
            h = torch.from_numpy(part.astype(np.float32) / 255 if part.dtype == np.uint8 else part)
            if len(layers) > 1:
                # The masks act after the first layer: its product once a
                # chunk for every pass, as alpool makes it once a tile.
                first = layers[0]
                z0 = torch.nn.functional.linear(
                    h, tensors[first + ".weight"], tensors[first + ".bias"]
                )
                p = np.stack([forward(torch.relu(z0) * m[0], m, 1) for m in masks])
            else:
                p = np.stack([forward(h, m) for m in masks])
            score[s : s + p.shape[1]] = entropy(p.mean(axis=0)) - entropy(p).mean(axis=0)
    best = np.argpartition(-score, k)[:k]
    best = best[np.lexsort((best, -score[best]))]
    with open(out, "w") as f:
        f.write("rank,index,score\n")
        for r, i in enumerate(best):
            f.write(f"{r},{i},{score[i]}\n")
    raise SystemExit(0)
probs = np.empty((rows, classes), dtype=np.float32)
with torch.no_grad():
    step = 65536
    for s in range(0, rows, step):
        part = np.asarray(x[s : min(rows, s + step)])
        h = torch.from_numpy(part.astype(np.float32) / 255.0 if part.dtype == np.uint8 else part)
        for i, name in enumerate(layers):
            h = torch.nn.functional.linear(h, tensors[name + ".weight"], tensors[name + ".bias"])
            if i + 1 < len(layers):
                h = torch.relu(h)
        probs[s : s + h.shape[0]] = torch.softmax(h, dim=1).numpy()
if check_rows:
    np.save(out, probs)
    raise SystemExit(0)
top2 = np.partition(probs, classes - 2, axis=1)[:, -2:]
margin = top2[:, 1] - top2[:, 0]
best = np.argpartition(margin, k)[:k]
best = best[np.lexsort((best, margin[best]))]
with open(out, "w") as f:
    f.write("rank,index,score\n")
    for r, i in enumerate(best):
        f.write(f"{r},{i},{margin[i]}\n")
"""


def anon_kib(pid: int) -> int:
    """The process's anonymous resident memory now (RssAnon, KiB): its own
    allocations, without the pages of files it maps."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int, str]:
    """Wall seconds, peak RSS and peak anonymous RSS (bytes), and stderr of
    one process. Peak RSS (wait4) counts the mapped feature file's pages,
    which PyTorch's NumPy map touches and alpool's positioned reads do not;
    anonymous memory, sampled every 2 ms, compares like with like."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_anon = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_anon
        while not done.is_set():
            peak_anon = max(peak_anon, anon_kib(p.pid))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    err = p.stderr.read().decode() if p.stderr else ""
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err}")
    return wall, usage.ru_maxrss * 1024, peak_anon * 1024, err


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--alpool", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("-k", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", default="1,2", help="torch thread counts to try")
    ap.add_argument(
        "--mc-samples", type=int, default=0, help="BALD over T MC-dropout passes (see above)"
    )
    ap.add_argument(
        "--coretypes",
        default="default,Haswell,SkylakeX",
        help="OpenBLAS core types to try (default = its own detection)",
    )
    a = ap.parse_args()
    import numpy as np

    tmp = Path(tempfile.mkdtemp())
    job = tmp / "torch_job.py"
    job.write_text(TORCH_JOB)
    # alpool's own probabilities of the first rows: the reference each torch
    # configuration must reproduce.
    check = 4096
    x = np.load(a.features, mmap_mode="r")
    head = tmp / "head.npy"
    np.save(head, np.asarray(x[:check]))
    ref = tmp / "ref.npy"
    subprocess.run(
        [a.alpool, "predict", "--model", a.model, "--features", str(head), "--out", str(ref)],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    ref_p = np.load(ref)

    configs = []
    for ct in a.coretypes.split(","):
        for th in a.threads.split(","):
            env = dict(os.environ)
            if ct != "default":
                env["OPENBLAS_CORETYPE"] = ct
            out = tmp / "check.npy"
            try:
                run(
                    [
                        sys.executable,
                        str(job),
                        a.model,
                        a.features,
                        str(a.k),
                        th,
                        str(out),
                        str(check),
                    ],
                    env,
                )
            except SystemExit as e:
                print(f"torch threads={th} coretype={ct}: failed ({e})")
                continue
            diff = float(np.abs(np.load(out) - ref_p).max())
            ok = diff < 1e-4
            verdict = "" if ok else "  WRONG, left out"
            print(
                f"torch threads={th} coretype={ct}: "
                f"max |p - alpool's p| over {check} rows = {diff:.2e}{verdict}"
            )
            if ok:
                configs.append((f"torch t={th} {ct}", env, th))

    results: dict[str, list[tuple[float, int, int]]] = {"alpool": []}
    for name, _, _ in configs:
        results[name] = []
    for _ in range(a.runs):
        wall, rss, anon, _ = run(
            [
                a.alpool,
                "select",
                "--model",
                a.model,
                "--features",
                a.features,
                "-k",
                str(a.k),
                "-q",
                "-o",
                str(tmp / "a.csv"),
                *(["--mc-samples", str(a.mc_samples), "-s", "bald"] if a.mc_samples else []),
            ]
        )
        results["alpool"].append((wall, rss, anon))
        for name, env, th in configs:
            torch_job = [sys.executable, str(job), a.model, a.features, str(a.k), th]
            torch_job += [str(tmp / "t.csv"), "0", str(a.mc_samples)]
            wall, rss, anon, _ = run(torch_job, env)
            results[name].append((wall, rss, anon))
    rows = x.shape[0]
    base = statistics.median(r[0] for r in results["alpool"])
    print(
        f"\n{rows} rows x {x.shape[1]} {x.dtype}, k = {a.k}, "
        f"{f'bald over {a.mc_samples} MC-dropout passes' if a.mc_samples else 'margin'}; "
        f"medians of {a.runs} alternated runs, whole process"
    )
    print(
        f"{'':<24} {'median s':>9} {'min s':>7} {'rows/s':>10} {'peak RSS':>12} "
        f"{'peak anon':>12} {'vs alpool':>10}"
    )
    for name, rs in results.items():
        med = statistics.median(r[0] for r in rs)
        print(
            f"{name:<24} {med:>9.2f} {min(r[0] for r in rs):>7.2f} {rows / med:>10.0f} "
            f"{max(r[1] for r in rs) / 2**20:>8.0f} MiB {max(r[2] for r in rs) / 2**20:>8.0f} MiB "
            f"{med / base:>9.2f}x"
        )
    a_sel = [line.split(",")[1] for line in (tmp / "a.csv").read_text().splitlines()[1:]]
    if configs:
        t_sel = [line.split(",")[1] for line in (tmp / "t.csv").read_text().splitlines()[1:]]
        same = len(set(a_sel) & set(t_sel))
        why = "the dropout masks differ" if a.mc_samples else "float32 sums differ near ties"
        print(f"\nthe last torch run's top {a.k} shares {same} rows with alpool's ({why})")
    print(json.dumps({n: [r[0] for r in rs] for n, rs in results.items()}))


if __name__ == "__main__":
    main()
