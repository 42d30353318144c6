#!/usr/bin/env bash
# Hugging Face transformers models: hf:MODEL_TYPE is AutoConfig.for_model(MODEL_TYPE, **args), then
# AutoModel.from_config (or the Auto class --arg task=... names). Random init, nothing downloaded; an optional
# extra (pip install 'inspectlab[hf]'; `make test` installs it). Inputs are named per model (input_ids,
# pixel_values) and can be typed: --input [NAME=]SHAPE[:DTYPE].
# Run from the repository root after `make test` (or `pip install -e ".[all]"`):  bash examples/hf.sh
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
run() { echo "\$ $*"; "$@"; echo; }

# BERT with 2 layers at its default input: input_ids, 1x128 token ids (int64 zeros), traced on the meta device.
run inspectlab summary hf:bert --arg num_hidden_layers=2 --depth 1
# Token ids of another length, and a mask, by name (keyword arguments of forward).
run inspectlab flops hf:bert --arg num_hidden_layers=2 --input input_ids=1,64:int64 --input attention_mask=1,64:int64
# ViT-Base at its config's image size: pixel_values 1x3x224x224.
run inspectlab summary hf:vit --depth 1
# SegFormer (MiT-b0) for semantic segmentation: logits at a quarter of the input.
run inspectlab summary hf:segformer --arg task=semantic-segmentation --input pixel_values=1,3,512,512 --depth 1 --columns name,type,output,params,macs,pct
# Token ids have no pixels: rf says so in one line (exit code 2).
echo "\$ inspectlab rf hf:bert --arg num_hidden_layers=2"
inspectlab rf hf:bert --arg num_hidden_layers=2 || echo "(exit code $?)"
