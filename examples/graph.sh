#!/usr/bin/env bash
# inspectlab graph from the shell: the pictures of docs/graphs.md. Run from the repository root.
# Usage: examples/graph.sh [OUTPUT_FOLDER]   (default: a temporary folder, removed at the end)
# SVG/PNG need Graphviz's `dot` program (apt-get install graphviz); the dot source needs nothing.
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
if [ $# -ge 1 ]; then out=$1; mkdir -p "$out"; else out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi

# The dot source on stdout: no `dot` program needed. Count its nodes and edges.
inspectlab graph resnet18 --input 1,3,224,224 --depth 1 --format dot | grep -c -- '->'

if ! command -v dot >/dev/null; then echo "no Graphviz: skipping SVG/PNG (apt-get install graphviz)"; exit 0; fi

# ResNet-50 at depth 2: the stem, each stage as its first block + "Bottleneck ×k"; fits one A4 page.
inspectlab graph resnet50 --input 1,3,224,224 --depth 2 --format png -o "$out/resnet50.png" --force
# The same with MACs and receptive fields on every box.
inspectlab graph resnet50 --input 1,3,224,224 --depth 2 --show params,flops,rf --format svg \
    -o "$out/resnet50_rf.svg" --force
# UNet at depth 1: the four skips run from the encoder to the decoder.
inspectlab graph unet --input 1,3,512,512 --depth 1 --format png -o "$out/unet.png" --force
# HRNetV2-W32: parallel branches at depth 2; the fusion inside each module at depth 3 (one module ×4 kept).
inspectlab graph hrnetv2_w32 --input 1,3,224,224 --depth 2 --format png -o "$out/hrnetv2_w32.png" --force
inspectlab graph hrnetv2_w32 --input 1,3,224,224 --depth 3 --format svg -o "$out/hrnetv2_w32_depth3.svg" --force
# DeepLabV3+ at depth 3: the five ASPP branches and the low-level skip into the decoder.
inspectlab graph deeplabv3plus_resnet50 --input 1,3,512,512 --depth 3 --format png \
    -o "$out/deeplabv3plus_resnet50.png" --force
ls -l "$out"
