"""Feature dump files: tensor statistics, the three formats (safetensors, npz, pt), the JSON manifest, the
size estimate from the Trace, and the receptive field of every module call output.

Every file is written atomically (a temporary file beside the target, then a rename), and an existing
file is never replaced without `force`. A tensor file and its manifest are one unit: the manifest, renamed
into place last, records the tensor file's size and sha256, and `read_dump` / `read_tensors` refuse a pair
that does not match (docs/dump.md, "Files: all or nothing").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Collection, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspectlab.analysis.receptive_field import field_columns, field_rows, receptive_fields
from inspectlab.core.errors import InspectlabError
from inspectlab.core.io import atomic_path, atomic_paths, write_atomic
from inspectlab.render.formats import human_bytes, to_json
from inspectlab.tracing.records import TensorInfo

if TYPE_CHECKING:
    import torch

    from inspectlab.tracing.records import Trace

FORMATS = {".safetensors": "safetensors", ".npz": "npz", ".pt": "pt"}
DEFAULT_MAX_BYTES = 2_000_000_000  # 2 GB
GRAD_SUFFIX = ".grad"  # a gradient is stored under its activation's key + this suffix
RF_KEYS = ("rf", "rf_min", "stride", "padding", "global")
_NPZ_WIDENED = {"bfloat16": "float32"}  # numpy has no bfloat16: stored as float32


def format_of(path: str | os.PathLike[str]) -> str:
    """The format a file name asks for, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InspectlabError(f"unknown dump format {suffix or Path(path).name!r}: name the file "
                              f"*.safetensors, *.npz or *.pt")
    return FORMATS[suffix]


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """feats.safetensors -> feats.safetensors.json (a .json path is its own manifest)."""
    target = Path(path)
    return target if target.suffix.lower() == ".json" else target.with_name(target.name + ".json")


# --------------------------------------------------------------------------------------------------
# statistics


def tensor_stats(tensor: torch.Tensor) -> dict[str, Any]:
    """min, max, mean, std (population: correction 0), fraction of exact zeros and count of non-finite
    values, over all elements; computed in float32 (float64 for float64), the variance in two passes."""
    import torch

    values = tensor.detach()
    count = values.numel()
    if count == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "zero_fraction": None, "nonfinite": 0}
    flat = (values if values.dtype == torch.float64 else values.float()).reshape(-1)
    low, high = torch.aminmax(flat)  # a NaN anywhere makes both NaN, an infinity one of them infinite
    mean = flat.sum() / count
    centred = flat - mean
    variance = torch.dot(centred, centred) / count  # (torch.std_mean and count_nonzero are ~10× slower)
    zeros = int((values == 0).sum(dtype=torch.int64))
    finite = math.isfinite(float(low)) and math.isfinite(float(high))
    nonfinite = 0 if finite else int(count - torch.isfinite(flat).sum(dtype=torch.int64))
    return {"min": _number(low), "max": _number(high), "mean": _number(mean), "std": _number(variance.sqrt()),
            "zero_fraction": zeros / count, "nonfinite": nonfinite}


def _number(value: torch.Tensor) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------------------------------
# tensor files


def write_tensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str], force: bool = False,
                  metadata: Mapping[str, str] | None = None) -> Path:
    """Write named tensors (moved to the CPU, made contiguous) in the format the suffix names."""
    fmt = format_of(path)
    plain = _plain(tensors)
    with atomic_path(path, force) as temporary:
        _save(plain, fmt, temporary, metadata)
    return Path(path)


def _plain(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}


def _save(plain: Mapping[str, torch.Tensor], fmt: str, temporary: Path, metadata: Mapping[str, str] | None) -> None:
    import torch

    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(dict(plain), str(temporary), metadata=dict(metadata or {}))
    elif fmt == "npz":
        import numpy as np

        arrays = {key: (value.float() if value.dtype == torch.bfloat16 else value).numpy()
                  for key, value in plain.items()}
        with open(temporary, "wb") as stream:
            np.savez(stream, **arrays)
    else:
        torch.save(dict(plain), temporary)


def file_digest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """{"file_size": bytes, "file_sha256": hex digest} of a file, as a manifest records its tensor file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"file_size": size, "file_sha256": digest.hexdigest()}


def read_tensors(path: str | os.PathLike[str], check: bool = True) -> dict[str, torch.Tensor]:
    """Read a dump written by `write_tensors` back as named CPU tensors (npz: bfloat16 comes back float32).

    When a manifest lies beside the file (`manifest_path`), it must describe this very file (its size and
    sha256), else InspectlabError: a tensor file and a manifest of two different dumps are never read as one.
    A file without a manifest is read alone; `check=False` reads the file without looking at any manifest."""
    if check and manifest_path(path).exists():
        return read_dump(path)[0]
    return _load(path)


def read_dump(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A dump's tensors and its manifest (`path`: the tensor file or its manifest), checked to be one unit:
    InspectlabError when the manifest is missing or unreadable, describes no tensor file (--stats-only), or
    records a size or sha256 other than the tensor file's (a dump interrupted between its two files)."""
    given = Path(path)
    target = manifest_path(given)
    if not target.exists():
        raise InspectlabError(f"{target} does not exist: {given} has no manifest to be checked against")
    try:
        manifest = json.loads(target.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InspectlabError(f"{target} is not a dump manifest: {exc}") from None
    if not isinstance(manifest, dict) or not manifest.get("file"):
        raise InspectlabError(f"{target} describes no tensor file (a --stats-only manifest?)"
                              + ("" if given == target else f": it is not the manifest of {given}"))
    tensors = given if given != target else target.with_name(str(manifest["file"]))
    if not tensors.exists():
        raise InspectlabError(f"{tensors}, the tensor file of {target}, does not exist")
    recorded = {key: manifest.get(key) for key in ("file_size", "file_sha256")}
    if None in recorded.values():
        raise InspectlabError(f"{target} records no size and sha256 of its tensor file (an older inspectlab wrote "
                              f"it?): cannot tell that {tensors.name} belongs to it; read_tensors(path, check=False) "
                              f"reads the tensors alone")
    actual = file_digest(tensors)
    if actual != recorded:
        raise InspectlabError(
            f"{tensors} and {target} are not one dump: the manifest records {recorded['file_size']:,} bytes "
            f"(sha256 {str(recorded['file_sha256'])[:12]}…), the file has {actual['file_size']:,} "
            f"(sha256 {actual['file_sha256'][:12]}…); a dump interrupted between its two files? write it again")
    return _load(tensors), manifest


def _load(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    import torch

    fmt = format_of(path)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if fmt == "npz":
        import numpy as np

        with np.load(path) as arrays:
            return {key: torch.from_numpy(arrays[key].copy()) for key in arrays.files}
    return torch.load(path, map_location="cpu", weights_only=True)


def stored_dtype(dtype: str, fmt: str) -> str:
    """The dtype a tensor has in a file of format `fmt`."""
    return _NPZ_WIDENED.get(dtype, dtype) if fmt == "npz" else dtype


def write_manifest(document: Mapping[str, Any], path: str | os.PathLike[str], force: bool = False) -> Path:
    return write_atomic(path, to_json(document), force)


def write_dump(tensors: Mapping[str, torch.Tensor], document: MutableMapping[str, Any] | None,
               path: str | os.PathLike[str], force: bool = False) -> list[str]:
    """The tensor file and, when `document` is given, its manifest beside it, as one unit; returns the paths
    written. Both are checked before either is written. The tensor file is written to a temporary file, its
    size and sha256 recorded in `document` (`file_size`, `file_sha256`, in place), the manifest written to a
    second temporary file, and only then are both renamed into place, the manifest last. A failure before
    the renames (also Ctrl-C, SIGTERM) leaves the old files as they were and no temporary file; a kill
    between the two renames leaves the new tensor file beside the old manifest, which `read_dump` refuses."""
    target = manifest_path(path)
    if document is None:
        return [str(write_tensors(tensors, path, force, {"manifest": target.name}))]
    fmt = format_of(path)
    plain = _plain(tensors)
    with atomic_paths([path, target], force) as (tensor_file, manifest_file):
        _save(plain, fmt, tensor_file, {"manifest": target.name})
        document.update(file_digest(tensor_file))
        manifest_file.write_text(to_json(document))
    return [str(path), str(target)]


# --------------------------------------------------------------------------------------------------
# planning from the Trace: size and receptive fields


def estimate_bytes(trace: Trace, names: Collection[str], grads: bool, fmt: str | None = None) -> int:
    """Bytes of the output tensors of every call of the modules `names` (doubled with gradients), as the
    file of format `fmt` stores them."""
    def stored(info: TensorInfo) -> int:
        widened = fmt is not None and stored_dtype(info.dtype, fmt) != info.dtype
        return info.numel * (4 if widened else info.element_size)

    total = sum(stored(trace.tensors[t]) for call in trace.calls
                if call.name in names and not call.implicit for t in call.outputs)
    return total * (2 if grads else 1)


def check_size(estimate: int, max_bytes: int, folder: str | os.PathLike[str] | None) -> None:
    """Refuse a dump larger than `max_bytes`, or than the free space of `folder` (None: nothing written)."""
    if estimate > max_bytes:
        raise InspectlabError(
            f"the dump would hold {human_bytes(estimate)} ({estimate:,} bytes, estimated from the trace), "
            f"above --max-bytes {max_bytes:,}: select fewer layers or a smaller input, "
            f"use --stats-only, or raise --max-bytes")
    if folder is not None:
        free = shutil.disk_usage(folder).free
        if estimate > free:
            raise InspectlabError(
                f"the dump would hold {human_bytes(estimate)} but {folder} has {human_bytes(free)} free")


def receptive_field_lookup(trace: Trace) -> tuple[dict[tuple[str, int, int], dict[str, Any]], list[str]]:
    """(module name, call number, output position) -> rf, rf_min, stride, padding, global (per input axis,
    input pixels), from inspectlab.analysis.receptive_field; and notes when the fields are not known."""
    try:
        fields = receptive_fields(trace)
    except InspectlabError as exc:
        return {}, [f"no receptive fields: {exc}"]
    lookup = {}
    for row in field_rows(fields):
        call = trace.calls[row.call]
        if call.implicit:
            continue
        columns = field_columns(row.field)
        if columns["rf"] is not None:
            lookup[(call.name, call.call, row.output)] = {key: columns[key] for key in RF_KEYS}
    return lookup, []


# --------------------------------------------------------------------------------------------------
# the manifest

CONVENTIONS = {
    "key": "MODULE#k[PATH]: the output of call k (from 0) of module MODULE ((root) is the model), PATH the key "
           "path inside a dict/list/tuple output; a gradient is stored under its activation's key + '.grad'",
    "stats": "min, max, mean, std (population, correction 0) and zero_fraction over all elements, computed in "
             "float32; nonfinite counts NaN and infinities",
    "rf": "per input axis (H, W), in input pixels: rf the largest field of a unit through all paths, rf_min "
          "through the shortest path, stride the input pixels between neighbouring units, padding how far the "
          "field of unit 0 starts before pixel 0; unit i then covers pixels "
          "[i*stride - padding, i*stride - padding + rf - 1]; null when unknown",
}


def build_manifest(entries: Collection[Any], header: Mapping[str, Any], file: str | None,
                   fields: Mapping[tuple[str, int, int], Any] | None = None) -> dict[str, Any]:
    """The JSON document beside a dump: `header` items, conventions, and one record per captured tensor
    (`entries` are runtime.capture.Entry objects, with their tensors or their statistics)."""
    fmt = format_of(file) if file and Path(file).suffix.lower() != ".json" else None
    records = []
    for entry in entries:
        stats = entry.stats if entry.stats is not None else tensor_stats(entry.value)
        grad_stats = entry.grad_stats if entry.grad_stats is not None else (
            tensor_stats(entry.grad) if entry.grad is not None else None)
        records.append({
            "key": entry.key, "layer": entry.layer, "type": entry.type, "call": entry.call, "path": entry.path,
            "shape": list(entry.shape), "dtype": entry.dtype,
            "stored_dtype": stored_dtype(entry.dtype, fmt) if fmt else None, "bytes": entry.bytes, **stats,
            **(fields or {}).get((entry.layer, entry.call, entry.position), dict.fromkeys(RF_KEYS)),
            "grad": None if grad_stats is None else {"key": entry.key + GRAD_SUFFIX, **grad_stats},
        })
    stored = sum(r["bytes"] for r in records) + sum(r["bytes"] for r in records if r["grad"] is not None)
    return {
        "file": Path(file).name if fmt else None, "file_size": None, "file_sha256": None,  # by write_dump
        "format": fmt, **header, "conventions": CONVENTIONS,
        "tensors": len(records) + sum(r["grad"] is not None for r in records), "total_bytes": stored,
        "entries": records,
    }
