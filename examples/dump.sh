#!/usr/bin/env bash
# Feature dumps (docs/dump.md): draw a test picture, dump ResNet-18's stem and stages for it with their
# gradients, look at the manifest, and draw the 16 most active channels of each output.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK"

# a 320×240 test picture: a sky gradient, a sun, a house with a door and a window, a striped field
"$BIN/python" examples/scene.py "$WORK/scene.png"

# stem BatchNorm (before its in-place ReLU: negatives kept) and the output of every stage, with the
# gradient of class 281's logit; tensors + manifest, and one picture per output
"$BIN/inspectlab" dump resnet18 --image "$WORK/scene.png" --input 1,3,224,224 \
    --layers bn1 --layers 'layer?' --grads --target 281 \
    --out "$WORK/feats.safetensors" --png "$WORK/pictures" --force

# the manifest: one record per tensor (shape, statistics, receptive field, stride)
"$BIN/python" - "$WORK/feats.safetensors.json" <<'PY'
import json
import sys

manifest = json.load(open(sys.argv[1]))
for entry in manifest["entries"]:
    print(f"{entry['key']:<10} {'×'.join(map(str, entry['shape'])):<14} min {entry['min']:8.3f}  "
          f"rf {entry['rf']}  stride {entry['stride']}  grad std {entry['grad']['std']:.3g}")
PY

# the same layers, statistics only (no tensor kept), every 3×3 convolution of layer1
"$BIN/inspectlab" dump resnet18 --image "$WORK/scene.png" --layers 'layer1.*' --type Conv2d --stats-only
echo "files in $WORK"
