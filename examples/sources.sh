#!/usr/bin/env bash
# Models from other libraries: timm:NAME (timm.create_model, pretrained=False) and smp:ARCH
# (segmentation_models_pytorch, encoder_weights=None). Nothing is ever downloaded; both are optional extras
# (pip install 'inspectlab[timm]', 'inspectlab[smp]'; `make test` installs them).
# Run from the repository root after `make test` (or `pip install -e ".[all]"`):  bash examples/sources.sh
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
run() { echo "\$ $*"; "$@"; echo; }

# A timm classifier at its own default input (timm's pretrained config: 1x3x224x224 for resnet50).
run inspectlab summary timm:resnet50 --depth 1
# A timm backbone as a feature extractor: a list of three feature maps (strides 8, 16, 32).
run inspectlab summary timm:convnext_tiny --arg features_only=true --arg out_indices=1,2,3 --depth 1
# An smp segmentation network with a ResNet-34 encoder and 2 classes, at 1x3x512x512 (H, W divisible by 32).
run inspectlab summary smp:Unet --arg encoder_name=resnet34 --arg classes=2 --depth 1 --columns name,type,output,params,macs,pct
# Another model's own default input: EfficientNet-B3's 1x3x288x288.
run inspectlab flops timm:efficientnet_b3

# A weights argument that would download is refused with one line and exit code 2 (a local file is loaded).
echo "\$ inspectlab summary smp:Unet --arg encoder_weights=imagenet"
inspectlab summary smp:Unet --arg encoder_weights=imagenet || echo "(exit code $?)"
