#!/usr/bin/env bash
# inspectlab rf from the shell: receptive fields per layer, their check against autograd, and the
# effective receptive field. Run from the repository root after `make demo` (a few minutes on a CPU).
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Analytic fields on the whole graph: ResNet-50's stages (35 / 91 / 267 / 427 px at strides 4 / 8 / 16 / 32),
# UNet's shortest (skip) and longest (bottleneck) paths, HRNet's branches, DeepLabV3+ with its global ASPP.
inspectlab rf tv:resnet50 --input 1,3,224,224 --depth 1
inspectlab rf unet --input 1,3,512,512 --layers 'up*' --depth 1 --format markdown
inspectlab rf hrnetv2_w18 --input 1,3,512,512 --layers 'stage?' --depth 1 --format csv
inspectlab rf deeplabv3plus_resnet50 --input 1,3,512,512 --depth 1 --format json > "$out/deeplab.json"
python -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['totals'], len(d['notes']), 'notes')" \
    "$out/deeplab.json"

# Measured with autograd on a linear, positive copy of the model (exit code 1 if any row differs).
inspectlab rf lenet5 --empirical --units first,centre,last
inspectlab rf resnet18 --input 1,3,448,448 --depth 1 --empirical
inspectlab rf unet --arg base_c=8 --input 1,3,256,256 --depth 1 --empirical

# Effective receptive field (Luo et al. 2016) of ResNet-18's layer4 at random initialisation.
inspectlab rf resnet18 --input 1,3,448,448 --layers layer4 --erf "$out/erf.png" --samples 4
ls -l "$out/erf.png"
