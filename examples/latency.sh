#!/usr/bin/env bash
# inspectlab latency from the shell. Run from the repository root. CPU only; the CUDA lines run when a GPU is there.
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
export OMP_NUM_THREADS=1

# Statistics, throughput and peak memory of one model, 1 thread, a fixed number of iterations.
inspectlab latency resnet18 --input 1,3,224,224 --threads 1 --warmup 3 --iters 20

# A batch sweep as JSON (conditions + raw samples), then the p50 of each batch.
inspectlab latency mobilenet_v3_large --batch 1,4 --threads 1 --iters 10 --format json \
  | python -c "import json,sys; d=json.load(sys.stdin); print([(r['batch'], round(r['stats']['p50_ms'], 2)) for r in d['results']])"

# bfloat16 by autocast, channels-last, as CSV.
inspectlab latency lenet5 --dtype bfloat16 --precision autocast --channels-last --iters 50 --format csv

# Per-layer breakdown with the roofline, at depth 1.
inspectlab latency resnet18 --input 1,3,224,224 --threads 1 --iters 10 --per-layer --depth 1

# On a GPU: fp16, CUDA-graph replay, and torch.compile.
if python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  inspectlab latency resnet50 --device cuda --dtype float16 --batch 1,8 --iters 200
  inspectlab latency resnet50 --device cuda --dtype float16 --cuda-graph --iters 200
  inspectlab latency resnet50 --device cuda --compile --iters 200
fi
