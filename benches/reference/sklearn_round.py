"""The Python reference for examples/learner_speed.rs, on the same machine.

One active-learning round on MNIST as alpool's example times it (1,000
labeled rows 0..999, pool rows 1000..59999, 20 epochs, select 100 by
margin) with scikit-learn's MLPClassifier (784-256-10, Adam, lr 1e-3,
batch 64), and predict throughput of the same network in NumPy/OpenBLAS
over 1M rows.

    python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install numpy scikit-learn
    /tmp/pyref/bin/python benches/reference/sklearn_round.py ../shared/data/mnist
"""

import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

warnings.filterwarnings("ignore", category=ConvergenceWarning)
d = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist"
X = np.load(f"{d}/X.npy", mmap_mode="r")
y = np.load(f"{d}/y.npy")
scale = 1 / 255 if X.dtype == np.uint8 else 1.0
lab = np.asarray(X[:1000], dtype=np.float32) * scale
pool = np.asarray(X[1000:60000], dtype=np.float32) * scale
test = np.asarray(X[60000:70000], dtype=np.float32) * scale

best = None
for _ in range(3):
    t0 = time.perf_counter()
    m = MLPClassifier(hidden_layer_sizes=(256,), solver="adam", learning_rate_init=1e-3,
                      batch_size=64, max_iter=20, random_state=0, tol=0, n_iter_no_change=10**9)
    m.fit(lab, y[:1000])
    t1 = time.perf_counter()
    p = m.predict_proba(pool)
    t2 = time.perf_counter()
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    picks = np.argpartition(margin, 100)[:100]
    picks = picks[np.argsort(margin[picks], kind="stable")]
    t3 = time.perf_counter()
    r = (t1 - t0, t2 - t1, t3 - t2)
    if best is None or sum(r) < sum(best):
        best = r
acc = (m.predict(test) == y[60000:70000]).mean()
print(f"sklearn MLPClassifier round: train {best[0]:.3f} s, predict 59,000 rows {best[1]:.3f} s, "
      f"select 100 {best[2]*1e3:.1f} ms, round {sum(best):.3f} s (best of 3); test accuracy {acc:.4f}")

# Inference throughput of a 784-256-10 MLP in NumPy (OpenBLAS sgemm), f32.
rng = np.random.default_rng(1)
W1 = rng.uniform(-1 / 28, 1 / 28, (256, 784)).astype(np.float32)
b1 = np.zeros(256, np.float32)
W2 = rng.uniform(-1 / 16, 1 / 16, (10, 256)).astype(np.float32)
b2 = np.zeros(10, np.float32)
block = rng.random((100_000, 784), dtype=np.float32)
t = time.perf_counter()
for _ in range(10):
    for s in range(0, 100_000, 8192):
        h = np.maximum(block[s:s + 8192] @ W1.T + b1, 0)
        z = h @ W2.T + b2
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        e /= e.sum(axis=1, keepdims=True)
sec = time.perf_counter() - t
print(f"NumPy/OpenBLAS predict, 784-256-10, 1,000,000 rows: {sec:.2f} s = {1e6 / sec:.0f} rows/s")
