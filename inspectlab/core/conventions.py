"""The counting conventions: each peer's name, its unit, and what it counts (the formulas are
`inspectlab.analysis.conventions`). One home for the names, so that the CLI's choices, the reports' columns
and the analysis agree."""

from __future__ import annotations

from inspectlab.core.errors import InspectlabError

CONVENTIONS = ("inspectlab", "torch", "fvcore", "torchinfo")
UNITS = {"inspectlab": "FLOPs", "torch": "FLOPs", "fvcore": "MACs", "torchinfo": "MACs"}
DESCRIPTIONS = {
    "inspectlab": "2 × MACs of conv/matmul/attention; bias, norm, activation, pooling... apart",
    "torch": "FlopCounterMode: 2 × MACs of conv, mm/addmm/bmm/baddbmm and fused attention only",
    "fvcore": "MACs of conv/matmul (no bias) + batch/group/layer norm, 2-D upsampling, adaptive avg pool",
    "torchinfo": "per leaf module: params × output positions (Conv) or params × batch; no functional ops",
}
FORWARD_ONLY = ("fvcore", "torchinfo")  # conventions with no backward count


def check_convention(convention: str) -> str:
    """The convention's name, or one user error naming the valid ones."""
    if convention not in CONVENTIONS:
        raise InspectlabError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return convention


def convention_key(convention: str) -> str:
    """The column of a convention's total: "fvcore_macs", "torch_flops", ..."""
    return f"{check_convention(convention)}_{UNITS[convention].lower()}"
