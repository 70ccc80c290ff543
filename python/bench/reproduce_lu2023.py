"""Lu et al. 2023's AUBC on Wisconsin diagnostic breast cancer (their `wdbc`,
scikit-learn's `load_breast_cancer`), reproduced through `alpool.compare`
under `protocol="lu2023"`: an RBF SVC, a stratified 40% test split, 20
initial labels, one query at a time until the pool is empty, 100 restarts.

    python python/bench/reproduce_lu2023.py [--jobs 2] [--out cmp-lu2023/]

Prints alpool's mean ± standard deviation of AUBC for uniform (random) and
uncertainty sampling (US-C: the SVC's own probabilities, least confidence,
which on two classes ranks as margin and entropy do) beside the figures
published in the authors' repository (github.com/ariapoy/active-learning-
benchmark, results/README.md, row Wdbc), and whether each lies within the
published standard deviation.
"""

from __future__ import annotations

import argparse
import time

from sklearn.datasets import load_breast_cancer

import alpool

# (mean, standard deviation) of AUBC over 100 experiments, row "Wdbc".
PUBLISHED = {"random": (0.9539, 0.013), "least-confidence": (0.9652, 0.0103)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    X, y = load_breast_cancer(return_X_y=True)
    t = time.perf_counter()
    r = alpool.compare(
        X,
        y,
        protocol="lu2023",
        strategies=list(PUBLISHED),
        n_jobs=a.jobs,
        name="wdbc (scikit-learn breast cancer)",
        out=a.out,
    )
    print(f"{time.perf_counter() - t:.0f} s")
    print(f"{'strategy':<18} {'alpool AUBC':>16} {'published':>16} {'within 1 sd':>12}")
    for s in r["comparison"]["strategies"]:
        m, sd = PUBLISHED[s["strategy"]]
        ok = abs(s["area_mean"] - m) <= sd
        print(
            f"{s['strategy']:<18} {s['area_mean']:.4f} ± {s['area_std']:.4f}"
            f" {m:.4f} ± {sd:.4f} {'yes' if ok else 'NO':>12}"
        )


if __name__ == "__main__":
    main()
