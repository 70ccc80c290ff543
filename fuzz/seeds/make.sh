#!/usr/bin/env bash
# Writes the seeds of the npy, init, model, part and exclusions targets from
# real files: the `alpool` command's own outputs, NumPy's .npy files and
# rows of the digits set in ../shared/data. (labels and server: see
# label_studio.py.) Run from the repository root after `cargo build --release`.
set -euo pipefail
out=${1:-fuzz/seeds}
bin=${ALPOOL:-target/release/alpool}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"/{npy,init,model,part,exclusions}
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
