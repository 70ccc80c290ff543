#!/usr/bin/env bash
# Writes the seeds of the npy, init, model, part and exclusions targets from
# real files: the `alpool` command's own outputs, NumPy's .npy files and
# rows of the digits set in ../shared/data. (labels and server: see
# label_studio.py.) Run from the repository root after `cargo build --release`.
set -euo pipefail
out=${1:-fuzz/seeds}
bin=${ALPOOL:-target/release/alpool}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"/{npy,init,model,part,exclusions,exact,coldstart}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" - "$out/npy" "$tmp" <<'PY'
import sys, numpy as np
out, tmp = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
p = rng.dirichlet(np.ones(3), 6)
np.save(f"{out}/probs-f32.npy", p.astype(np.float32))
np.save(f"{out}/probs-f16.npy", p.astype(np.float16))
np.save(f"{out}/probs-f64.npy", p)
np.save(f"{out}/logits-fortran.npy", np.asfortranarray(rng.normal(size=(4, 3)).astype(np.float32)))
np.save(f"{out}/samples-tnc.npy", rng.dirichlet(np.ones(3), (2, 4)).astype(np.float32))
np.save(f"{out}/indices-i64.npy", np.array([0, 3, 5], dtype=np.int64))
np.save(f"{out}/images-u8.npy", rng.integers(0, 255, (3, 8), dtype=np.uint8))
np.save(f"{out}/scalar.npy", np.float32(1.0))
digits = np.load("../shared/data/digits/X.npy")[:4]
np.save(f"{out}/digits-rows.npy", digits)
x = rng.normal(size=(40, 4)).astype(np.float32)
y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
np.save(f"{tmp}/x.npy", x); np.save(f"{tmp}/y.npy", y)
np.save(f"{tmp}/p.npy", rng.dirichlet(np.ones(3), 20).astype(np.float32))
PY
# exact: small pools for each strategy family (the target's header bytes,
# then one byte a value), wide enough for the sixteen-row lanes.
"$py" - "$out/exact" <<'PY'
import sys, numpy as np
out = sys.argv[1]
rng = np.random.default_rng(1)
# (strategy byte, width byte, k, flags, rows per chunk byte, rows)
for name, head, rows in [
    ("margin-f32", (1, 3, 5, 0, 7), 40),
    ("entropy-f16-base2", (2, 8, 7, 2 | 4, 20), 33),
    ("ratio-f32", (3, 4, 6, 0, 9), 30),
    ("random-excluded", (4, 5, 10, 8, 12), 30),
    ("least-confidence-logits-excluded", (0, 2, 3, 1 | 8, 3), 25),
    ("mean-entropy-20-labels", (5, 19, 12, 4, 40), 70),
    ("max-entropy-37-labels", (6, 36, 9, 8, 16), 35),
    ("min-margin-f16", (7, 7, 6, 2, 5), 48),
    ("cardinality-20-labels", (8, 19, 11, 0, 63), 40),
    ("adaptive-20-labels", (9, 19, 15, 0, 33), 64),
    ("avg-score-logits", (10, 5, 4, 1, 2), 30),
    ("max-score-16-labels", (11, 15, 8, 8, 17), 50),
    # Disagreement: T = 2 + (flags >> 4) % 6 samples a row, N x T x C.
    ("bald-t6", (12, 8, 9, 0x40, 9), 30),
    ("mean-std-f16", (13, 1, 5, 0x12, 4), 40),
    ("variation-ratio-ties", (14, 0, 12, 0x58, 30), 40),
    ("vote-entropy", (15, 2, 7, 0x30, 6), 30),
    ("consensus-entropy-base2", (16, 3, 6, 0x04, 13), 30),
    ("kl-mean", (17, 8, 8, 0x20, 9), 30),
    ("kl-max", (18, 4, 10, 0x50, 11), 30),
    # Stochastic batches: a k byte of 128 | kind << 5 | k, β from byte 4.
    ("margin-softmax-batch", (1, 3, 128 | 7, 0, 12), 60),
    ("entropy-power-batch", (2, 6, 128 | 32 | 9, 8, 40), 50),
    ("least-confidence-softrank-batch", (0, 4, 128 | 64 | 6, 0, 3), 40),
    ("bald-power-batch", (12, 5, 128 | 32 | 5, 0x30, 20), 30),
    ("mean-entropy-softmax-batch", (5, 19, 128 | 8, 0, 24), 40),
]:
    w = head[1] % 40 + 1 if 5 <= head[0] < 12 else head[1] % 24 + 2
    t = 2 + (head[3] >> 4) % 6 if head[0] >= 12 else 1
    body = rng.integers(0, 256, rows * t * w, dtype=np.uint8)
    edges = rng.random(body.size) < 0.3
    body[edges] = rng.integers(0, 10, edges.sum())  # the definitions' edges
    open(f"{out}/{name}", "wb").write(bytes(head) + body.tobytes())
PY
# coldstart: MaxHerding, ProbCover, TypiClust, k-means and density pools
# (width, k, σ or δ and flags bytes, then one byte a value): clustered
# grids with duplicates, a few far and tiny values.
"$py" - "$out/coldstart" <<'PY'
import sys, numpy as np
out = sys.argv[1]
rng = np.random.default_rng(2)
for name, head, n in [
    ("narrow-sigma", (2, 9, 112, 0), 60),
    ("wide-sigma", (3, 11, 150, 1), 80),
    ("labeled-far", (1, 5, 128, 1), 120),
    ("probcover-unit", (2, 9, 49, 4), 80),
    ("probcover-labeled", (1, 7, 100, 5), 100),
    ("probcover-at-a-distance", (2, 11, 128, 12), 90),
    ("typiclust", (2, 10, 0, 16), 120),
    ("typiclust-labeled", (3, 6, 0, 17), 90),
    ("kmeans-labeled", (1, 9, 0, 33), 100),
    ("density-labeled", (4, 12, 0, 65), 80),
    ("probcover-purity", (2, 9, 1, 132), 60),
    ("maxherding-purity-labeled", (1, 7, 2, 129), 80),
]:
    d = 1 + head[0] % 6
    body = rng.integers(0, 16, n * d, dtype=np.uint8)
    body[rng.random(body.size) < 0.05] = rng.integers(240, 255, 1)[0]
    body[d : 4 * d] = body[:d].tolist() * 3  # duplicate rows
    open(f"{out}/{name}", "wb").write(bytes(head) + body.tobytes())
PY
# Format versions 2 and 3 differ from 1 in the header length's width.
"$py" -c "
import numpy as np, io, sys
from numpy.lib import format as f
b = io.BytesIO(); f.write_array(b, np.eye(3, dtype=np.float32), version=(2, 0))
open(sys.argv[1], 'wb').write(b.getvalue())" "$out/npy/v2.npy"
"$bin" train --features "$tmp/x.npy" --labels "$tmp/y.npy" --hidden 4 --epochs 1 --out "$tmp/m.safetensors" >/dev/null
{ cat "$tmp/m.json"; printf '\n%%%%\n'; cat "$tmp/m.safetensors"; } > "$out/model/trained"
"$bin" select "$tmp/p.npy" -k 4 --strategy margin --row-offset 100 --out "$tmp/a.alpart" >/dev/null
cp "$tmp/a.alpart" "$out/part/margin"
"$bin" select "$tmp/p.npy" -k 3 --strategy random --seed 7 --out "$tmp/b.alpart" >/dev/null
cp "$tmp/b.alpart" "$out/part/random"
printf '# labeled\n0\n5 # a comment\n\n63\n' > "$out/exclusions/commented"
# init: the rows byte, then ids, seed labels and item data split at %% lines.
printf '\x04i0\ni1\n\ni2\ni3\n%%%%\nid,label\ni0,cat\ni2,dog\n%%%%\n{"id": "i0", "text": "a"}\n{"id": "i3", "image": "https://x/3.jpg"}\n' > "$out/init/three-files"
printf '\x02a\nb\n' > "$out/init/ids-only"
