"""Files all or nothing (issue 13, part 4): a dump's tensor file and its manifest are one unit, and an
interrupted write leaves no temporary file.

- Faults are injected at each step of `write_dump` (an exception raised from the writer: during the tensor
  write, while hashing it, during the manifest write, at either rename, after both), never by timing: after
  each, either the old pair is intact and reads back, or the reader refuses the pair; no `.tmp` is left.
- SIGTERM unwinds an atomic write like Ctrl-C: a real subprocess, blocked inside its writer until it has
  been signalled (no race), exits 143, leaves no temporary file and the target untouched.
- The SIGTERM handler exists only while a write is in progress in the main thread, nested writes included.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from cli_helpers import assert_one_line_error, run_cli

from inspectlab.core import io
from inspectlab.core.errors import InspectlabError
from inspectlab.runtime import dump_writer
from inspectlab.runtime.capture import capture
from inspectlab.runtime.dump_writer import manifest_path, read_dump, read_tensors, write_dump

ROOT = Path(__file__).resolve().parents[1]
OLD = {"a#0": torch.arange(6.0).reshape(2, 3), "b#0": torch.ones(4)}
NEW = {"a#0": torch.full((2, 3), 7.0), "b#0": torch.zeros(4), "c#0": torch.ones(1)}


class Fault(Exception):
    """The injected failure."""


@pytest.fixture
def default_sigterm():
    """SIGTERM at its default handler for the test (as in a fresh `inspectlab` process), restored after."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


def document(name: str, label: str) -> dict:
    return {"file": name, "file_size": None, "file_sha256": None, "label": label}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def same(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> bool:
    return set(left) == set(right) and all(torch.equal(left[k], right[k]) for k in left)


# --------------------------------------------------------------------------------------------------
# injected faults at each step of write_dump


def inject(monkeypatch, stage: str, fmt: str, target: Path, error: BaseException) -> None:
    """Make the step `stage` of writing `target` (and its manifest) raise `error`."""
    manifest = manifest_path(target)
    if stage == "tensor write":  # the format's own writer leaves a partial file, then fails
        def partial(*args, **kwargs):
            destination = args[1] if fmt != "npz" else args[0]
            if hasattr(destination, "write"):
                destination.write(b"PK\x03\x04 partial")
            else:
                Path(destination).write_bytes(b"partial")
            raise error

        owner, name = {"safetensors": (safetensors.torch, "save_file"), "npz": (np, "savez"),
                       "pt": (torch, "save")}[fmt]
        monkeypatch.setattr(owner, name, partial)
    elif stage == "digest":
        monkeypatch.setattr(dump_writer, "file_digest", lambda path: (_ for _ in ()).throw(error))
    elif stage == "manifest write":
        real_write_text = Path.write_text

        def half(self, data, *args, **kwargs):
            real_write_text(self, data[: len(data) // 2], *args, **kwargs)
            raise error

        monkeypatch.setattr(Path, "write_text", half)
    else:
        real_replace = os.replace
        before = {"tensor rename": target, "manifest rename": manifest}.get(stage)

        def replace(source, destination):
            if before is not None and Path(destination) == before:
                raise error
            real_replace(source, destination)
            if stage == "after both renames" and Path(destination) == manifest:
                raise error

        monkeypatch.setattr(os, "replace", replace)


STAGES = ["tensor write", "digest", "manifest write", "tensor rename", "manifest rename", "after both renames"]
OUTCOME = {"tensor write": "old", "digest": "old", "manifest write": "old", "tensor rename": "old",
           "manifest rename": "refused", "after both renames": "new"}


@pytest.mark.parametrize("error", [Fault("injected"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
@pytest.mark.parametrize("fmt", ["safetensors", "npz", "pt"])
@pytest.mark.parametrize("stage", STAGES)
def test_a_fault_at_each_step_leaves_the_old_pair_or_a_refused_one(tmp_path, monkeypatch, default_sigterm,
                                                                    stage, fmt, error):
    target = tmp_path / f"feats.{fmt}"
    write_dump(OLD, document(target.name, "old"), target)
    old_bytes, old_manifest = target.read_bytes(), json.loads(manifest_path(target).read_text())
    inject(monkeypatch, stage, fmt, target, error)
    with pytest.raises(type(error)):
        write_dump(NEW, document(target.name, "new"), target, force=True)
    monkeypatch.undo()

    assert temporaries(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == [target.name,
                                                                                         target.name + ".json"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    outcome = OUTCOME[stage]
    if outcome == "refused":  # the new tensor file beside the old manifest: never read as one dump
        assert target.read_bytes() != old_bytes
        for reader in (read_dump, read_tensors):
            with pytest.raises(InspectlabError, match="are not one dump") as caught:
                reader(target)
            assert len(str(caught.value).splitlines()) == 1
        return
    tensors, manifest = read_dump(target)
    expected = OLD if outcome == "old" else NEW
    assert manifest["label"] == outcome and same(tensors, expected) and same(read_tensors(target), expected)
    if outcome == "old":
        assert target.read_bytes() == old_bytes and manifest == old_manifest


@pytest.mark.parametrize("stage", STAGES)
def test_a_fault_on_a_first_dump_leaves_nothing_or_no_pair(tmp_path, monkeypatch, stage):
    target = tmp_path / "feats.safetensors"
    inject(monkeypatch, stage, "safetensors", target, Fault("injected"))
    with pytest.raises(Fault):
        write_dump(NEW, document(target.name, "new"), target)
    monkeypatch.undo()
    left = sorted(p.name for p in tmp_path.iterdir())
    if OUTCOME[stage] == "old":
        assert left == []
    elif OUTCOME[stage] == "refused":  # a complete tensor file, but no manifest to vouch for it
        assert left == [target.name]
        with pytest.raises(InspectlabError, match="has no manifest"):
            read_dump(target)
        assert same(read_tensors(target), NEW)
    else:
        assert left == [target.name, target.name + ".json"] and same(read_dump(target)[0], NEW)


def test_several_targets_are_renamed_in_order_and_the_rest_removed(tmp_path, monkeypatch):
    first, second = tmp_path / "one.txt", tmp_path / "two.txt"
    real_replace = os.replace

    def replace(source, destination):
        if Path(destination) == second:
            raise Fault("injected")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Fault), io.atomic_paths([first, second]) as (a, b):
        a.write_text("1")
        b.write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.txt"] and first.read_text() == "1"


def test_both_files_are_checked_before_either_is_written(tmp_path):
    target = tmp_path / "feats.safetensors"
    manifest_path(target).write_text("keep me")
    with pytest.raises(InspectlabError, match="--force"):
        write_dump(NEW, document(target.name, "new"), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name + ".json"]


# --------------------------------------------------------------------------------------------------
# the reader refuses a pair that is not one dump


def test_the_manifest_records_the_tensor_files_size_and_sha256(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    with capture(model, ["0", "1"]) as cap:
        model(torch.ones(2, 3))
    path = tmp_path / "feats.safetensors"
    cap.save(str(path))
    manifest = json.loads(manifest_path(path).read_text())
    data = path.read_bytes()
    assert manifest["file_size"] == len(data) and manifest["file_sha256"] == hashlib.sha256(data).hexdigest()
    tensors, again = read_dump(path)
    assert again == manifest and same(tensors, cap.tensors())
    assert same(read_dump(manifest_path(path))[0], tensors)  # the manifest's path works too


def test_a_swapped_truncated_or_altered_file_is_refused(tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    write_dump(OLD, document(one.name, "one"), one)
    write_dump(NEW, document(two.name, "two"), two)
    os.replace(manifest_path(one), manifest_path(two))  # one's manifest beside two's tensors
    with pytest.raises(InspectlabError, match="are not one dump"):
        read_dump(two)
    write_dump(NEW, document(two.name, "two"), two, force=True)
    data = bytearray(two.read_bytes())
    two.write_bytes(data[:-1])
    with pytest.raises(InspectlabError, match="are not one dump"):
        read_tensors(two)
    data[-1] ^= 1  # same size, other bytes: the sha256 tells
    two.write_bytes(bytes(data))
    with pytest.raises(InspectlabError, match="are not one dump"):
        read_tensors(two)


def test_a_manifest_that_vouches_for_no_file_is_refused(tmp_path):
    target = tmp_path / "feats.safetensors"
    write_dump(OLD, document(target.name, "old"), target)
    stats_only = {**document(target.name, "stats"), "file": None}  # a --stats-only manifest, with --force
    dump_writer.write_manifest(stats_only, manifest_path(target), force=True)
    with pytest.raises(InspectlabError, match="describes no tensor file"):
        read_tensors(target)
    manifest_path(target).write_text(json.dumps(document(target.name, "no checksum")))
    with pytest.raises(InspectlabError, match="records no size and sha256"):
        read_dump(target)
    manifest_path(target).write_text("{not json")
    with pytest.raises(InspectlabError, match="is not a dump manifest"):
        read_dump(target)
    assert same(read_tensors(target, check=False), OLD)  # the tensors alone, on request
    manifest_path(target).unlink()
    assert same(read_tensors(target), OLD)  # a file without a manifest is read alone
    with pytest.raises(InspectlabError, match="has no manifest"):
        read_dump(target)


def test_the_cli_reports_a_failed_dump_in_one_line_and_leaves_no_readable_stale_pair(tmp_path, monkeypatch):
    out = tmp_path / "f.safetensors"
    first = run_cli("dump", "lenet5", "-l", "conv1", "-o", str(out), "--seed", "1")
    assert first.exit_code == 0, first.output
    old_bytes = out.read_bytes()
    inject(monkeypatch, "manifest rename", "safetensors", out, OSError(28, "No space left on device"))
    assert_one_line_error(run_cli("dump", "lenet5", "-l", "conv1", "-o", str(out), "--seed", "2", "--force"),
                          "No space left on device")
    monkeypatch.undo()
    assert temporaries(tmp_path) == [] and out.read_bytes() != old_bytes
    with pytest.raises(InspectlabError, match="are not one dump"):
        read_tensors(out)


# --------------------------------------------------------------------------------------------------
# SIGTERM unwinds a write


def test_the_sigterm_handler_is_there_only_during_a_write(tmp_path, default_sigterm):
    seen = []
    with io.atomic_path(tmp_path / "outer") as outer:
        seen.append(signal.getsignal(signal.SIGTERM))
        io.write_atomic(tmp_path / "inner", "nested")  # a nested write does not restore it early
        seen.append(signal.getsignal(signal.SIGTERM))
        outer.write_text("outer")
    seen.append(signal.getsignal(signal.SIGTERM))
    assert seen == [io._on_sigterm, io._on_sigterm, signal.SIG_DFL]
    with pytest.raises(Fault), io.atomic_path(tmp_path / "failed"):
        raise Fault("injected")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and temporaries(tmp_path) == []


@pytest.mark.parametrize("handler", [signal.SIG_IGN, lambda signum, frame: None], ids=["ignored", "own"])
def test_a_handler_of_the_callers_is_left_alone(tmp_path, handler):
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with io.atomic_path(tmp_path / "f") as temporary:
            assert signal.getsignal(signal.SIGTERM) is handler
            temporary.write_text("x")
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_write_in_another_thread_changes_no_handler(tmp_path, default_sigterm):
    seen = []

    def write():
        with io.atomic_path(tmp_path / "f") as temporary:
            seen.append(signal.getsignal(signal.SIGTERM))
            temporary.write_text("x")

    worker = threading.Thread(target=write)
    worker.start()
    worker.join()
    assert seen == [signal.SIG_DFL] and (tmp_path / "f").read_text() == "x"


def _terminated_while_blocked(script: str, *args: str, ready: Path) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter; once it has written `ready` (it then blocks inside its writer),
    send it SIGTERM; return its result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-c", script, *args, str(ready)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists(), process.communicate(timeout=60)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


BLOCK = '''
import sys, time
from pathlib import Path

def block():
    """Tell the test we are inside the writer, then wait for its SIGTERM (a minute at most)."""
    Path(sys.argv[-1]).write_text("ready")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.01)
    sys.exit("not terminated")
'''

NESTED_WRITE = BLOCK + '''
from inspectlab.core.io import atomic_path
outer_target, inner_target = Path(sys.argv[1]), Path(sys.argv[2])
with atomic_path(outer_target, force=True) as outer:
    outer.write_bytes(b"new outer, half written")
    with atomic_path(inner_target, force=True) as inner:
        inner.write_bytes(b"new inner, half written")
        block()
'''


def test_sigterm_during_nested_writes_removes_both_temporaries(tmp_path):
    outer, inner = tmp_path / "outer.bin", tmp_path / "inner.bin"
    outer.write_bytes(b"old outer")
    inner.write_bytes(b"old inner")
    result = _terminated_while_blocked(NESTED_WRITE, str(outer), str(inner), ready=tmp_path / "ready")
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inner.bin", "outer.bin", "ready"]
    assert (outer.read_bytes(), inner.read_bytes()) == (b"old outer", b"old inner")


DUMP_WRITE = BLOCK + '''
import safetensors.torch
import torch
from inspectlab.runtime import dump_writer
target, stage = Path(sys.argv[1]), sys.argv[2]
if stage == "tensor write":
    def save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial" * 1000)
        block()
    safetensors.torch.save_file = save_file
else:  # the tensor file is complete and hashed; the manifest is being written
    dump_writer.to_json = lambda document: block()
document = {"file": target.name, "file_size": None, "file_sha256": None, "label": "new"}
dump_writer.write_dump({"a#0": torch.full((2, 3), 7.0)}, document, target, force=True)
'''


@pytest.mark.parametrize("stage", ["tensor write", "manifest write"])
def test_sigterm_during_a_dump_leaves_the_old_pair_and_no_temporary(tmp_path, stage):
    target = tmp_path / "feats.safetensors"
    write_dump(OLD, document(target.name, "old"), target)
    before = (target.read_bytes(), manifest_path(target).read_bytes())
    result = _terminated_while_blocked(DUMP_WRITE, str(target), stage, ready=tmp_path / "ready")
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name, target.name + ".json", "ready"]
    assert (target.read_bytes(), manifest_path(target).read_bytes()) == before
    tensors, manifest = read_dump(target)
    assert manifest["label"] == "old" and same(tensors, OLD)
