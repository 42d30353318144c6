#!/usr/bin/env bash
# inspectlab memory: will it fit? Inference and training-step peaks from meta traces, from the shell and from
# Python. Run from the repository root after `make demo`. Takes about 30 s on a laptop CPU (meta traces only, no real run).
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The peak of one inference forward (what `summary` calls "estimated peak inference memory"), where it is.
inspectlab memory deeplabv3plus_resnet50 --input 1,3,512,512 --depth 1

# One steady-state training step: parameters, gradients, optimizer state, activations saved for backward,
# and the peak with its phase, op and module; the per-module table of what each module saves.
inspectlab memory resnet18 --input 8,3,224,224 --train --optimizer adamw --depth 1

# bfloat16 autocast and activation checkpointing of the encoder's blocks change what is saved.
inspectlab memory unet --input 2,3,256,256 --train --optimizer sgd --amp bf16 --grad-checkpoint 'down*' --depth 0

# The largest batch that fits 1 GiB (4 traces); the estimate at it and at the next batch is printed.
inspectlab memory mobilenet_v3_large --input 8,3,224,224 --train --budget 1GiB --depth 0

# An HTML page with the memory timeline inline, and the timeline as a PNG.
inspectlab memory resnet18 --input 4,3,160,160 --train -f html -o "$out/memory.html" --plot "$out/timeline.png"

# From Python.
python - <<'PY'
import inspectlab

report = inspectlab.memory("resnet50", (16, 3, 224, 224), train=True, optimizer="adamw", depth=1)
t = report.totals  # the JSON document's totals (report.to_dict() is the whole document)
print(f"peak {t['peak_bytes'] / 2**30:.2f} GiB in {t['peak_phase']} at {t['peak_op']}")
for row in sorted(report.layers[1:], key=lambda row: -row.saved_bytes)[:3]:
    print(f"{row.name:10} saves {row.saved_bytes / 2**20:7.1f} MiB for backward")

# the largest square input at batch 2 that fits 256 MiB, for inference
side = inspectlab.memory("resnet18", (2, 3, 224, 224), budget=256 * 2**20, solve="size").totals["max_size"]
print(f"resnet18 inference at batch 2 fits 256 MiB up to {side}×{side}")
PY
