#!/usr/bin/env bash
# inspectlab summary and flops from the shell. Run from the repository root after `make demo`.
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Per-layer table at depth 1, then every layer of a torchvision model as JSON.
inspectlab summary unet --input 1,3,480,480 --depth 1
inspectlab summary tv:resnet50 --input 1,3,224,224 --depth 3 --format json -o "$out/resnet50.json"
python -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['totals'])" "$out/resnet50.json"

# Builder arguments, several conventions, and the backward pass.
inspectlab summary deeplabv3plus_resnet50 --arg output_stride=8 --input 1,3,512,512 --depth 1 --columns name,output,macs,pct
inspectlab flops tv:resnet50 --input 1,3,224,224 --compare
inspectlab flops resnet18 --input 1,3,224,224 --backward --convention torch
