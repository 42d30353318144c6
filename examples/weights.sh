#!/usr/bin/env bash
# Trained weights on any command that builds a model: --weights FILE (a state_dict, or a checkpoint dict holding
# one under state_dict / model / model_state_dict; DataParallel's module. and torch.compile's _orig_mod. prefixes
# are stripped). Run from the repository root after `make demo`.
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A checkpoint as a training script saves it (here: lenet5's own initialisation, wrapped and prefixed).
python - "$work/ckpt.pt" <<'PY'
import sys, torch
from inspectlab import api
model = api.build_model("lenet5", device="cpu")
torch.save({"epoch": 12, "model_state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, sys.argv[1])
PY

# The features of the trained model, dumped with a manifest that names the weights file.
inspectlab dump lenet5 --input 1,1,32,32 --layers conv1 --weights "$work/ckpt.pt" -o "$work/conv1.safetensors"
python -c "import json,sys; print('weights:', json.load(open(sys.argv[1]))['weights'])" "$work/conv1.safetensors.json"

# Strict by default: a file that does not fit is one line naming the first keys; --non-strict loads what matches.
python - "$work/ckpt.pt" "$work/partial.pt" <<'PY'
import sys, torch
state = torch.load(sys.argv[1], weights_only=True)["model_state_dict"]
state.pop("module.fc3.bias")
torch.save(state, sys.argv[2])
PY
inspectlab summary lenet5 --depth 0 --weights "$work/partial.pt" || echo "(exit code $?)"
inspectlab summary lenet5 --depth 0 --weights "$work/partial.pt" --non-strict

# compare: one file per model, by the name it is given on the command line.
inspectlab compare lenet5 lenet5:num_classes=10 --weights "lenet5=$work/ckpt.pt"
