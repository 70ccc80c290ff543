"""The PyTorch reference for examples/learner_speed.rs, on the same machine.

The same active-learning round on MNIST as alpool's example times (1,000
labeled rows 0..999, pool rows 1000..59999, select 100 by margin), with
alpool's default recipe written in PyTorch: 784-256-10 ReLU MLP, AdamW
(lr 2e-3, weight decay 1e-4), batch 32, 20 epochs but at least 300 steps,
inputs as given (MNIST / 255); then predict throughput of 784-256-10 and
64-256-10 over 1M rows in 65,536-row batches. Best of 3 runs, as the
example reports.

    apt-get install python3-torch libopenblas0-pthread   # Debian's CPU torch
    /usr/bin/python3 benches/reference/torch_round.py ../shared/data/mnist 2

(the last argument: torch's threads, the example's 2 cores).
"""

import sys
import time

import numpy as np
import torch

d = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist"
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
torch.manual_seed(0)
X = np.load(f"{d}/X.npy", mmap_mode="r")
y = np.load(f"{d}/y.npy").astype(np.int64)
scale = 1 / 255 if X.dtype == np.uint8 else 1.0
lab = torch.from_numpy(np.asarray(X[:1000], dtype=np.float32) * scale)
lab_y = torch.from_numpy(y[:1000])
pool = torch.from_numpy(np.asarray(X[1000:60000], dtype=np.float32) * scale)
test = torch.from_numpy(np.asarray(X[60000:70000], dtype=np.float32) * scale)


def mlp(inputs: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )


def round_once() -> tuple[tuple[float, float, float], torch.nn.Module]:
    t0 = time.perf_counter()
    m = mlp(784)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=1e-4)
    steps_per_epoch = (len(lab) + 31) // 32
    epochs = max(20, -(-300 // steps_per_epoch))
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(lab), generator=g)
        for s in range(0, len(lab), 32):
            idx = order[s : s + 32]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(lab[idx]), lab_y[idx])
            loss.backward()
            opt.step()
    t1 = time.perf_counter()
    with torch.no_grad():
        p = torch.softmax(m(pool), dim=1).numpy()
    t2 = time.perf_counter()
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    picks = np.argpartition(margin, 100)[:100]
    picks = picks[np.argsort(margin[picks], kind="stable")]
    t3 = time.perf_counter()
    return (t1 - t0, t2 - t1, t3 - t2), m


best = None
for _ in range(3):
    r, model = round_once()
    if best is None or sum(r) < sum(best[0]):
        best = (r, model)
(tr, pr, se), model = best
with torch.no_grad():
    acc = (model(test).argmax(1).numpy() == y[60000:70000]).mean()
print(
    f"torch {torch.__version__} round: train {tr:.3f} s, predict 59,000 rows {pr:.3f} s, "
    f"select 100 {se * 1e3:.1f} ms, round {tr + pr + se:.3f} s (best of 3); "
    f"test accuracy {acc:.4f}"
)

rng = np.random.default_rng(1)
for inputs in (784, 64):
    m = mlp(inputs)
    block = torch.from_numpy(rng.random((100_000, inputs), dtype=np.float32))
    best_s = None
    for _ in range(3):
        t = time.perf_counter()
        with torch.no_grad():
            for _ in range(10):
                for s in range(0, 100_000, 65_536):
                    torch.softmax(m(block[s : s + 65_536]), dim=1)
        sec = time.perf_counter() - t
        best_s = sec if best_s is None else min(best_s, sec)
    print(
        f"torch predict_proba {inputs}-256-10, 1,000,000 rows: {best_s:.2f} s = "
        f"{1e6 / best_s:.0f} rows/s (best of 3)"
    )
