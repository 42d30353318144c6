#!/usr/bin/env bash
# The zoo and the three ways to name a model: a zoo name (with --arg builder arguments), tv:NAME for any
# torchvision model (never downloads weights), and path/to/file.py:factory or package.module:factory.
# Run from the repository root with the package installed:  bash examples/zoo.sh
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
run() { echo "\$ $*"; "$@"; echo; }

# The zoo: name, family, params (counted on the meta device), default input, description.
run inspectlab list
# The same as JSON, e.g. for a script: the three largest models.
echo "\$ inspectlab list --format json | (three largest)"
inspectlab list --format json | python -c '
import json, sys
for row in sorted(json.load(sys.stdin), key=lambda r: -r["params"])[:3]:
    print("%-28s %12s" % (row["name"], format(row["params"], ",")))'
echo

# The module hierarchy, two levels deep, with own and total params per node.
run inspectlab tree unet --depth 1
# Builder arguments: 5 classes instead of 2 (the 1x1 head gains 3 x (64 + 1) = 195 params).
run inspectlab tree unet --depth 0 --arg num_classes=5
# Any torchvision model, built without weights.
run inspectlab tree tv:resnet18 --depth 1
# A user's own model: a factory in a file, with its arguments.
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
model_file="$workdir/my_model.py"
cat > "$model_file" <<'EOF'
from torch import nn


def small_cnn(width: int = 16, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes),
    )
EOF
run inspectlab tree "$model_file:small_cnn" --arg width=32
# The same loader reads a factory from an importable module.
run inspectlab tree inspectlab.models.unet:unet --depth 0 --arg bilinear=false

# Errors are one line and exit code 2 (add --debug before the command for a traceback).
echo "\$ inspectlab tree hrnetv2_w23"
inspectlab tree hrnetv2_w23 || echo "(exit code $?)"
