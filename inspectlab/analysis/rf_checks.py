"""Invariants every field of the receptive-field walk must satisfy, checked on each op's outputs as the walk
goes (receptive_field.Walk.step and Walk.merge). A violation is a bug in a rule: the field becomes unknown,
"inconsistent: ...", with a note, rather than being printed as a number.

- **Extent.** The units of a map of n units at stride J span about J·n input pixels, and they cover the
  input: for a stack of convolutions and pools (any padding, ceil mode aside) J·n + r - 2P lies in
  [H0 + 1, H0 + J] (r: the field, P: the effective padding, H0: the input's size), and a resize keeps J·n.
  The check is looser, by a factor FACTOR = 2: J·n - 2·max(P, 0) <= 2·H0 + Jmax, Jmax the coarsest stride
  of the walk so far (one unit of it: a 1-px input through five stride-2 convolutions is one unit at stride
  32, then maybe resized; the padding's virtual units: a padding of 2 on a map of 2 units at stride 8 makes 4
  units), and 2·J·n + r >= H0 (an unpadded stack at a small input has few units and a
  large field); a map at stride 0 (one unit resized with align_corners=True: every unit reads it) is not
  checked. A map made from a crop of less than half the input (x[..., 40:100] of 224), or from three
  images side by side along an image axis, breaks it by design; none of 30 zoo, torchvision and timm CNNs
  does at inputs of 1 to 333 px (docs/receptive-field.md; tests/test_rf_layout.py checks 16 of them).
- **Growth.** A unit's field is the union of the fields of the input units it reads, so the smallest field
  over an op's output units is at least the smallest over its inputs' units (per axis, all paths).
- **Merges.** The field of a merge (add, mul, cat over channels...) is at least each input's, per axis, as
  the largest over units; a global input counts its local field for nothing (the merge is global, and its
  `rf` is then the local field of the other paths, as documented).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from inspectlab.analysis.rf_fields import FieldInfo

FACTOR = 2
_EPS = 1e-9


def extent_problem(info: FieldInfo, input_size: Sequence[int], coarsest: Fraction = Fraction(1)) -> str | None:
    """What is wrong with the stride × units of a map against the input's size (None: nothing); `coarsest`:
    the largest stride of a map so far."""
    for k, (axis, h0) in enumerate(zip(info.axes, input_size, strict=False)):
        size = axis.summary().size if axis.packed is not None and axis.units else None
        if size is None:
            continue
        jump = abs(axis.jump)
        if jump == 0:  # every unit reads the same units (a single unit upsampled with align_corners=True)
            continue
        span = jump * axis.units
        padding = max(axis.summary().padding or 0.0, 0.0)
        if span - 2 * padding > FACTOR * h0 + max(jump, coarsest) or FACTOR * span + size < h0:
            return (f"stride {axis.jump} × {axis.units} units = {float(span):g} px is not within ×{FACTOR} of the "
                    f"input's {h0} px (field {size:g} px) on axis {k}")
    return None


def growth_problem(inputs: Sequence[FieldInfo], info: FieldInfo) -> str | None:
    """Whether some output unit's field is smaller than every input unit's (None: no)."""
    for k, axis in enumerate(info.axes):
        smallest = axis.summary().smallest
        if smallest is None:
            continue
        before = [f.axes[k].summary().smallest for f in inputs if not f.unknown and len(f.axes) > k]
        floor = min((v for v in before if v is not None), default=None)
        if floor is not None and smallest < floor - _EPS:
            return f"a unit's field ({smallest:g} px) is smaller than every input unit's ({floor:g} px) on axis {k}"
    return None


def field_problem(inputs: Sequence[FieldInfo], info: FieldInfo, input_size: Sequence[int],
                  coarsest: Fraction = Fraction(1)) -> str | None:
    """The first invariant an op's output breaks (None: none)."""
    if info.unknown or not info.axes:
        return None
    return growth_problem(inputs, info) or extent_problem(info, input_size, coarsest)


def coarsest_stride(infos: Sequence[FieldInfo], so_far: Fraction) -> Fraction:
    """The largest stride of a map with a per-unit table among `infos`, and `so_far`."""
    jumps = [abs(a.jump) for f in infos for a in f.axes if a.packed is not None]
    return max([so_far, *jumps])


def merge_problem(inputs: Sequence[FieldInfo], merged: FieldInfo) -> str | None:
    """Whether a merge's field is smaller than one of its (non-global) inputs' (None: no)."""
    for f in inputs:
        if f.is_global or f.unknown:
            continue
        for k, (axis, out) in enumerate(zip(f.axes, merged.axes, strict=False)):
            before, after = axis.summary().size, out.summary().size
            if before is not None and (after is None or after < before - _EPS):
                return (f"the merged field ({'none' if after is None else f'{after:g} px'}) is smaller than an "
                        f"input's ({before:g} px) on axis {k}")
    return None
