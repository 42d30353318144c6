"""inspectlab's Python API on a model of your own: summary, flops conventions and the raw Trace."""

import torch
from torch import nn

import inspectlab


class TinySegmenter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.encoder(x))
        return nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear")


model = TinySegmenter()
report = inspectlab.summary(model, input_size=(1, 3, 256, 256), depth=2)
print(report.to_dataframe()[["name", "type", "output_shapes", "macs", "other_flops"]])
print(report.totals)

conventions = inspectlab.flops(model, (1, 3, 256, 256), compare=True)
for row in conventions.layers:
    print(f"{row['convention']:<11} {row['total']:>14,} {row['unit']:<6} peer: {row['peer']}")

trace = inspectlab.trace(model, (1, 3, 256, 256))  # runs on the meta device: no memory, any size
upsample = next(op for op in trace.ops if "upsample" in op.name)
print(upsample.name, "ran in", trace.calls[upsample.module_call].label, "from", upsample.function)
