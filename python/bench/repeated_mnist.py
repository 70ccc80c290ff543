"""Repeated MNIST (Kirsch, van Amersfoort and Gal 2019, BatchBALD's
section 5.1): each training image three times, each copy with its own
isotropic Gaussian noise, so that a batch of the top-b BALD scores holds
copies of the same few images and a batch-aware acquisition can show what
it adds.

Usage: python repeated_mnist.py DATA_DIR OUT_DIR [--rows N] [--copies C]
       [--noise S] [--test N] [--seed S]

Writes OUT_DIR/X.npy (float32 in [0, 1] pixel units, the copies first,
then the test rows without noise) and OUT_DIR/y.npy (int64), and prints
the `--test-rows` range for `alpool simulate`. The noise is the paper's:
standard deviation 0.1 of the normalized images (MNIST's std 0.3081), so
0.1 x 0.3081 in pixel units, drawn from a fixed seed. The pool is the
first N training rows, the test set the first N official test rows
(rows 60,000 on of ``mnist/X.npy``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

MNIST_STD = 0.3081


def build(
    data: Path, rows: int, copies: int, noise: float, test: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    x = np.load(data / "mnist" / "X.npy", mmap_mode="r")
    y = np.load(data / "mnist" / "y.npy")
    if rows > 60000 or test > 10000:
        raise SystemExit("at most 60,000 training and 10,000 test rows")
    train = np.asarray(x[:rows], dtype=np.float32) / 255.0
    rng = np.random.default_rng(seed)
    pool = [
        train + rng.normal(0.0, noise * MNIST_STD, train.shape).astype(np.float32)
        for _ in range(copies)
    ]
    held = np.asarray(x[60000 : 60000 + test], dtype=np.float32) / 255.0
    features = np.concatenate([*pool, held]).astype(np.float32)
    labels = np.concatenate([np.tile(y[:rows], copies), y[60000 : 60000 + test]])
    return features, labels.astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the folder holding mnist/X.npy and mnist/y.npy")
    ap.add_argument("out", type=Path)
    ap.add_argument("--rows", type=int, default=4000, help="training images repeated")
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--noise", type=float, default=0.1, help="std of the normalized images")
    ap.add_argument("--test", type=int, default=2000, help="official test rows held out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    features, labels = build(a.data, a.rows, a.copies, a.noise, a.test, a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    np.save(a.out / "X.npy", features)
    np.save(a.out / "y.npy", labels)
    first = a.rows * a.copies
    print(f"{len(labels)} rows; pool 0..{first}, --test-rows {first}..{first + a.test}")


if __name__ == "__main__":
    main()
