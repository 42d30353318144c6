#!/usr/bin/env bash
# inspectlab compare and sweep from the shell, then the same from Python. Run from the repository root after
# `make demo`. Takes about a minute on a laptop CPU (the latency runs are short: 3 timed iterations).
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Three backbones side by side at one input size, on the terminal (meta device: no compute, no memory).
inspectlab compare resnet50 hrnetv2_w32 mobilenet_v3_large --input 1,3,512,512

# Builder arguments after a colon, a peer's convention as an extra column, a failing model (its row says why).
inspectlab compare deeplabv3plus_resnet50:output_stride=8 deeplabv3plus_resnet50:output_stride=16 no_such_model \
  --input 1,3,256,256 --convention fvcore

# A report: Markdown with PNG plots beside it, one self-contained HTML page, and the raw numbers as CSV.
inspectlab compare lraspp_mobilenet_v3_large unet --input 1,3,256,256 --latency --warmup 1 --iters 3 \
  -o "$out/seg.md" -o "$out/seg.html" -o "$out/seg.csv"
ls "$out"

# How MACs, memory (and latency) grow with the input: the fitted exponent of MACs vs pixels is 1 for a
# fully convolutional network.
inspectlab sweep deeplabv3plus_resnet50 --sizes 224,512,1024,2048
inspectlab sweep unet --sizes 64,128,256 --latency --warmup 0 --iters 2 -o "$out/sweep.html"

# The same from Python: DataFrames.
python - <<'EOF'
import pandas as pd

import inspectlab

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 12)
frame = inspectlab.compare(["resnet18", "mobilenet_v3_large", "unet:bilinear=false"], (1, 3, 224, 224))
print(frame[["model", "params", "macs", "peak_bytes", "output_stride", "rf", "rf_global", "macs_per_param"]])
sweep = inspectlab.sweep("unet", [128, 256, 512])
print(sweep[["size", "macs", "activation_bytes"]])
print("MACs ∝ pixels^%.4f" % sweep.attrs["exponents"]["macs"])
EOF
