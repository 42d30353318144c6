#!/usr/bin/env bash
# inspectlab stages and compare --stages: the feature pyramid of a backbone, from the shell and from Python.
# Run from the repository root after `make demo`. Takes about 15 s on a laptop CPU (meta-device traces only).
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The pyramid of a classifier's backbone (the pooled head is not a stage), of an encoder-decoder (only its
# downsampling path) and of HRNet (its four parallel branches).
inspectlab stages tv:resnet50
inspectlab stages unet --input 1,3,256,256
inspectlab stages hrnetv2_w18 --input 1,3,256,256 --format markdown

# A timm features_only model names its own stages (feature_info), if timm is installed.
if python -c "import timm" 2>/dev/null; then
  inspectlab stages timm:resnet50 --arg features_only=true --arg out_indices=1,2,3
fi

# The same rows as JSON, read back.
inspectlab stages resnet18 --input 1,3,512,512 --format json -o "$out/stages.json"
python -c "import json,sys; d=json.load(open(sys.argv[1])); print([(r['name'], r['stride'], r['channels']) for r in d['layers']])" "$out/stages.json"

# Backbones side by side, stride by stride (-o stages.md/.html/.csv writes a report, as compare does).
inspectlab compare resnet18 mobilenet_v3_large hrnetv2_w18 unet --stages --input 1,3,512,512

# From Python.
python - <<'PY'
import inspectlab

report = inspectlab.stages("mobilenet_v3_large", (1, 3, 224, 224))
for row in report.layers:
    print(f"{row.name:12} stride {row.stride:>2}  {row.channels:>4} ch  {row.cumulative_macs / 1e6:8.1f} MMACs so far")
frame = inspectlab.compare(["resnet18", "resnet50"], (1, 3, 224, 224), stages=True)
print(frame[["model", "s8_channels", "s8_macs", "s16_channels", "s16_macs"]])
PY
