#!/usr/bin/env bash
# inspectlab explore: one self-contained HTML page to browse a model. Run from the repository root.
# Usage: examples/explore.sh [OUTPUT_FOLDER]   (default: a temporary folder, removed at the end)
# The drawings need Graphviz's `dot` program (apt-get install graphviz). Open the pages in any browser.
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
if [ $# -ge 1 ]; then out=$1; mkdir -p "$out"; else out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
if ! command -v dot >/dev/null; then echo "no Graphviz: skipping (apt-get install graphviz)"; exit 0; fi

# ResNet-18: depths 0 to 2 (the page opens at 2: the stem, each stage's blocks, the head).
inspectlab explore resnet18 --input 1,3,224,224 --depth 2 -o "$out/resnet18.html" --force

# DeepLabV3+ on ResNet-50 at 512²: depths 0 to 3; the ASPP branches show their dilation rates (6, 12, 18).
inspectlab explore deeplabv3plus_resnet50 --input 1,3,512,512 --depth 3 -o "$out/deeplabv3plus_resnet50.html" --force

# From Python, with each module's time (a real run on the CPU: per-layer hooks at the deepest level).
python - "$out" <<'PYTHON'
import sys

from inspectlab import api

page = api.explore("lenet5", depth=1, latency=True, min_time=0.1, output=f"{sys.argv[1]}/lenet5.html", force=True)
print(page.path, "depths", page.depths, f"{len(page.html) / 1024:.0f} KiB")
PYTHON
ls -l "$out"
