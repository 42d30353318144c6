#!/usr/bin/env bash
# Saved models as model specs: a torch.export file (model.pt2) and a TorchScript archive (torch.jit.save).
# The .pt2 keeps the model's module hierarchy (torch.export.unflatten) and its example inputs (the default --input);
# a TorchScript module is analysed as a whole. A pickled whole module (torch.save(model)) is refused: loading it would
# run code from the file. Run from the repository root after `make test` (or `pip install -e ".[all]"`).
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
run() { echo "\$ $*"; "$@"; echo; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# The files as a training script saves them: the zoo's resnet18 exported at 1x3x224x224, a small network scripted,
# and the same network pickled whole.
python - <<'PY'
import warnings
import torch
from torch import nn
from inspectlab import api

warnings.simplefilter("ignore", FutureWarning)  # torch.jit.* is deprecated, and still what many files are
model = api.build_model("resnet18", device="cpu")
torch.export.save(torch.export.export(model, (torch.randn(1, 3, 224, 224),)), "resnet18.pt2")
small = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(16, 10)).eval()
torch.jit.save(torch.jit.script(small), "small.ts")
torch.save(small, "small_pickled.pt")
print("saved resnet18.pt2, small.ts and small_pickled.pt")
PY
echo

# The exported resnet18: its example input is the default --input, its rows are the model's own modules.
run inspectlab summary resnet18.pt2 --depth 1
# TorchScript: no hooks, so one row; the totals are those of the scripted network.
run inspectlab summary small.ts --input 1,3,64,64
# A pickled whole module is refused in one line, and exit code 2 (nothing in it is unpickled).
echo "\$ inspectlab summary small_pickled.pt"
inspectlab summary small_pickled.pt || echo "(exit code $?)"
