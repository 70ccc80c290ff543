#!/usr/bin/env bash
# The GPU figures of docs/performance.md on a machine with a CUDA GPU, in one
# call: alpool's CPU and wgpu paths side by side (select, stochastic
# batches, density alone and weighting margin, TypiClust, regression's std,
# igs, gsy and emcm, the disagreement strategies, BatchBALD, multi-label, the fused model, MC
# dropout from features), then
# PyTorch on the same card
# and the same files as the reference (python/bench/gpu_torch_reference.py).
#
#   scripts/device_bench.sh ALPOOL_BINARY [WORK_DIR]
#
# Sizes: ROWS (pool and multi-label rows, default 10M), SAMPLE_ROWS (rows of
# the T = 20 samples, 1M), FEATURE_ROWS (rows of the 784-wide features, 1M),
# EMBEDDING_ROWS (rows of the 128-wide embeddings for density, 2M).
# Each step runs even if one before it failed; each prints its own lines.
set -uo pipefail
bin=$(realpath "$1")
dir=${2:-/tmp/alpool-device}
rows=${ROWS:-10000000}
srows=${SAMPLE_ROWS:-1000000}
frows=${FEATURE_ROWS:-1000000}
erows=${EMBEDDING_ROWS:-2000000}
here=$(dirname "$(realpath "$0")")
mkdir -p "$dir"
start=$SECONDS
step() { printf '\n== [%4d s] %s\n' $((SECONDS - start)) "$*"; }
TIMEFORMAT='%R s'

step machine
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader 2>&1
lscpu | grep -m1 'Model name'
echo "$(nproc) CPUs, $(awk '/MemTotal/ {print int($2 / 1048576)}' /proc/meminfo) GiB"
"$bin" devices

step "select: CPU against GPU, ${rows} x 10"
"$bin" bench --rows "$rows" --classes 10 --device cpu,gpu --runs 5 --keep "$dir/pool.npy"
for d in cpu gpu; do
    "$bin" select "$dir/pool.npy" -s margin -k 1000 --device "$d" -q -o "$dir/$d.csv"
done
cmp -s "$dir/cpu.csv" "$dir/gpu.csv" && echo "margin: the same picks on the CPU and the GPU" ||
    echo "margin: THE PICKS DIFFER between the CPU and the GPU"
for d in cpu gpu cpu gpu cpu gpu; do
    printf 'whole process, select -s margin --device %s: ' "$d"
    time "$bin" select "$dir/pool.npy" -s margin -k 1000 --device "$d" -q -o "$dir/w.csv"
done

step "stochastic batch (power, beta 1): CPU against GPU, ${rows} x 10"
for d in cpu gpu; do
    "$bin" select "$dir/pool.npy" -s margin -k 1000 --stochastic power --beta 1 --seed 3 \
        --device "$d" -q -o "$dir/s$d.csv"
done
cmp -s "$dir/scpu.csv" "$dir/sgpu.csv" && echo "power: the same picks on the CPU and the GPU" ||
    echo "power: THE PICKS DIFFER between the CPU and the GPU"
for d in cpu gpu cpu gpu cpu gpu; do
    printf 'whole process, select -s margin --stochastic power --device %s: ' "$d"
    time "$bin" select "$dir/pool.npy" -s margin -k 1000 --stochastic power --beta 1 --seed 3 \
        --device "$d" -q -o "$dir/w.csv"
done

step "density: CPU against GPU, ${erows} x 128 embeddings"
python3 -c "
import numpy as np, sys
r = np.random.default_rng(0)
x = np.lib.format.open_memmap(sys.argv[1], mode='w+', dtype=np.float32, shape=(int(sys.argv[2]), 128))
for i in range(0, len(x), 1 << 20):
    x[i:i + (1 << 20)] = r.standard_normal((min(1 << 20, len(x) - i), 128), dtype=np.float32) + 0.3
x.flush()
" "$dir/emb.npy" "$erows"
for d in cpu gpu; do
    "$bin" select --embeddings "$dir/emb.npy" -s density -k 1000 --device "$d" -q -o "$dir/d$d.csv"
done
cmp -s "$dir/dcpu.csv" "$dir/dgpu.csv" && echo "density: the same picks on the CPU and the GPU" ||
    echo "density: THE PICKS DIFFER between the CPU and the GPU"
for d in cpu gpu cpu gpu; do
    printf 'whole process, select -s density --device %s: ' "$d"
    time "$bin" select --embeddings "$dir/emb.npy" -s density -k 1000 --device "$d" -q -o "$dir/w.csv"
done

step "typiclust (k-means on the GPU): CPU against GPU, ${erows} x 128 embeddings, B = 1000, 10 Lloyd iterations"
for d in cpu gpu; do
    printf 'whole process, select -s typiclust --device %s: ' "$d"
    time "$bin" select --embeddings "$dir/emb.npy" -s typiclust -k 1000 --iterations 10 \
        --device "$d" -v -o "$dir/t$d.csv" 2>&1 | grep -E 'k-means|phases'
done
cmp -s "$dir/tcpu.csv" "$dir/tgpu.csv" && echo "typiclust: the same picks on the CPU and the GPU" ||
    echo "typiclust: THE PICKS DIFFER between the CPU and the GPU"

step "density weighting margin: CPU against GPU, ${erows} x 10 probabilities beside the embeddings"
python3 -c "
import numpy as np, sys
r = np.random.default_rng(1)
p = np.lib.format.open_memmap(sys.argv[1], mode='w+', dtype=np.float32, shape=(int(sys.argv[2]), 10))
for i in range(0, len(p), 1 << 20):
    z = np.exp(r.standard_normal((min(1 << 20, len(p) - i), 10)))
    p[i:i + (1 << 20)] = z / z.sum(axis=1, keepdims=True)
p.flush()
" "$dir/wprobs.npy" "$erows"
for d in cpu gpu cpu gpu; do
    printf 'whole process, select -s margin --density-beta 1 --device %s: ' "$d"
    time "$bin" select "$dir/wprobs.npy" --embeddings "$dir/emb.npy" -s margin --density-beta 1 \
        -k 1000 --device "$d" -q -o "$dir/w$d.csv"
done
cmp -s "$dir/wcpu.csv" "$dir/wgpu.csv" && echo "weighted: the same picks on the CPU and the GPU" ||
    echo "weighted: THE PICKS DIFFER between the CPU and the GPU"

step "regression: std over T = 20 predictions of ${srows} rows; igs over ${srows} x 64, 20 labeled, k = 200; gsy and emcm, k = 1000"
python3 -c "
import numpy as np, sys
d, n = sys.argv[1], int(sys.argv[2])
r = np.random.default_rng(2)
mu = r.standard_normal(n) * 3 + 5
np.save(f'{d}/reg20.npy', (mu + r.standard_normal((20, n)) * np.abs(r.standard_normal(n))).astype(np.float32))
x = r.standard_normal((n, 64), dtype=np.float32)
np.save(f'{d}/xr.npy', x)
pred = x @ r.standard_normal(64) * 0.1 + 5
np.save(f'{d}/pred.npy', pred)
np.save(f'{d}/pred32.npy', pred.astype(np.float32))
y = np.full(n, np.nan)
i = r.choice(n, 20, replace=False)
y[i] = pred[i] + r.standard_normal(20) * 0.1
np.save(f'{d}/y.npy', y)
" "$dir" "$srows"
for d in cpu gpu cpu gpu; do
    printf 'whole process, select -s std --device %s: ' "$d"
    time "$bin" select "$dir/reg20.npy" --input regression-samples -s std -k 1000 --device "$d" \
        -q -o "$dir/std$d.csv"
done
cmp -s "$dir/stdcpu.csv" "$dir/stdgpu.csv" && echo "std: the same picks on the CPU and the GPU" ||
    echo "std: THE PICKS DIFFER between the CPU and the GPU"
for d in cpu gpu; do
    printf 'whole process, select -s igs --device %s: ' "$d"
    time "$bin" select "$dir/pred.npy" --input regression -s igs --embeddings "$dir/xr.npy" \
        --targets "$dir/y.npy" -k 200 --device "$d" -q -o "$dir/igs$d.csv"
done
cmp -s "$dir/igscpu.csv" "$dir/igsgpu.csv" && echo "igs: the same picks on the CPU and the GPU" ||
    echo "igs: THE PICKS DIFFER between the CPU and the GPU"
for d in cpu gpu; do
    printf 'whole process, select -s gsy -k 1000 --device %s: ' "$d"
    time "$bin" select "$dir/pred.npy" --input regression -s gsy \
        --targets "$dir/y.npy" -k 1000 --device "$d" -q -o "$dir/gsy$d.csv"
done
cmp -s "$dir/gsycpu.csv" "$dir/gsygpu.csv" && echo "gsy: the same picks on the CPU and the GPU" ||
    echo "gsy: THE PICKS DIFFER between the CPU and the GPU"
for d in cpu gpu cpu gpu; do
    printf 'whole process, select -s emcm --device %s: ' "$d"
    time "$bin" select "$dir/pred32.npy" --samples "$dir/reg20.npy" --input regression-samples \
        -s emcm --embeddings "$dir/xr.npy" -k 1000 --device "$d" -q -o "$dir/emcm$d.csv"
done
cmp -s "$dir/emcmcpu.csv" "$dir/emcmgpu.csv" && echo "emcm: the same picks on the CPU and the GPU" ||
    echo "emcm: THE PICKS DIFFER between the CPU and the GPU"

step "disagreement: T = 20 samples of ${srows} x 10"
"$bin" bench --samples 20 --rows "$srows" --classes 10 --device cpu,gpu --runs 3

step "batchbald: 100000 x 20 x 10 samples, batch 50, M = 10,000"
python3 -c "
import numpy as np, sys
r = np.random.default_rng(0)
z = r.normal(size=(1, 100000, 10)) * 1.5 + r.normal(size=(20, 100000, 10))
p = np.exp(z - z.max(-1, keepdims=True))
np.save(sys.argv[1], (p / p.sum(-1, keepdims=True)).astype(np.float32))
" "$dir/bb.npy"
for d in gpu cpu; do
    printf 'whole process, select -s batchbald -k 50 --device %s: ' "$d"
    time "$bin" select --samples "$dir/bb.npy" -s batchbald -k 50 --device "$d" -v -o "$dir/bb$d.csv"
done
cmp -s "$dir/bbcpu.csv" "$dir/bbgpu.csv" && echo "batchbald: the same picks on the CPU and the GPU" ||
    echo "batchbald: THE PICKS DIFFER between the CPU and the GPU"

step "multi-label: ${rows} x 20"
"$bin" bench --multilabel --rows "$rows" --labels 20 --device cpu,gpu --runs 3

step "fused model: features ${frows} x 784 -> MLP 256 -> margin top 1000"
python3 - "$dir" "$frows" <<'EOF'
import sys
import numpy as np
d, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
np.save(f"{d}/xtrain.npy", rng.random((20000, 784), dtype=np.float32))
np.save(f"{d}/ytrain.npy", rng.integers(0, 10, 20000))
x = np.lib.format.open_memmap(f"{d}/x.npy", "w+", np.float32, (n, 784))
for s in range(0, n, 100000):
    x[s : s + 100000] = rng.random((min(100000, n - s), 784), dtype=np.float32)
x.flush()
EOF
"$bin" train --features "$dir/xtrain.npy" --labels "$dir/ytrain.npy" --hidden 256 \
    --epochs 1 --min-steps 50 --scale none --out "$dir/m.safetensors" 2>&1 | tail -2
cat "$dir/x.npy" >/dev/null
for d in cpu gpu cpu gpu; do
    printf 'whole process, select --model --features -s margin --device %s: ' "$d"
    time "$bin" select --model "$dir/m.safetensors" --features "$dir/x.npy" -s margin -k 1000 \
        --device "$d" -q -o "$dir/m-$d.csv"
done
cmp -s "$dir/m-cpu.csv" "$dir/m-gpu.csv" && echo "fused: the same picks on the CPU and the GPU" ||
    echo "fused: THE PICKS DIFFER between the CPU and the GPU"

step "MC dropout: ${frows} x 784 -> MLP 256 (dropout 0.3) -> 20 passes -> bald and variation-ratio top 1000"
"$bin" train --features "$dir/xtrain.npy" --labels "$dir/ytrain.npy" --hidden 256 --dropout 0.3 \
    --epochs 1 --min-steps 50 --scale none --out "$dir/md.safetensors" 2>&1 | tail -2
for s in bald variation-ratio; do
    for d in cpu gpu; do
        printf 'whole process, select --model --features --mc-samples 20 -s %s --device %s: ' "$s" "$d"
        time "$bin" select --model "$dir/md.safetensors" --features "$dir/x.npy" --mc-samples 20 \
            --seed 1 -s "$s" -k 1000 --device "$d" -v -o "$dir/mc-$s-$d.csv" 2>&1 | grep -E "selected|phases"
    done
    cmp -s "$dir/mc-$s-cpu.csv" "$dir/mc-$s-gpu.csv" && echo "mc $s: the same picks on the CPU and the GPU" ||
        echo "mc $s: THE PICKS DIFFER between the CPU and the GPU"
done

step "PyTorch on the same card"
PYTHONUNBUFFERED=1 python3 "$here/../python/bench/gpu_torch_reference.py" --pool "$dir/pool.npy" \
    --picks "$dir/gpu.csv" --samples-rows "$srows" --model "$dir/m.safetensors" --features "$dir/x.npy"
step done
