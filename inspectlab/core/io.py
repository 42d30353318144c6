"""Files: the one cache folder, and the one atomic writer (all or nothing, never over a file without force).

A write fills a temporary file beside its target and renames it onto the target when it succeeds; when it
fails the temporary file is removed: on an exception, on Ctrl-C (KeyboardInterrupt) and on SIGTERM. SIGTERM
would otherwise kill the process without unwinding, so while an atomic write is in progress in the main
thread, a SIGTERM whose handler is the default one raises `Terminated` (a SystemExit of code 143, the status
a shell reports for a process that SIGTERM killed) and the write unwinds. The handler is installed when the
outermost write starts and put back when it ends; a handler of the caller's (or SIG_IGN) is left alone, and
nothing changes outside a write or in other threads. SIGKILL cannot be caught: it may leave a hidden
`.NAME.*.tmp` file (safe to delete), never a half-written NAME.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from inspectlab.core.errors import InspectlabError


def cache_dir() -> Path:
    """Where inspectlab keeps derived data: $INSPECTLAB_CACHE_DIR, else $XDG_CACHE_HOME/inspectlab, else
    ~/.cache/inspectlab."""
    if os.environ.get("INSPECTLAB_CACHE_DIR"):
        return Path(os.environ["INSPECTLAB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inspectlab"


def check_writable(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse to overwrite an existing file unless forced; the folder must exist."""
    target = Path(path)
    if target.exists() and not force:
        raise InspectlabError(f"{target} exists; use --force to overwrite it")
    if not target.parent.exists():
        raise InspectlabError(f"folder {target.parent} does not exist")
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------------------------------
# SIGTERM unwinds an atomic write


class Terminated(SystemExit):
    """SIGTERM arrived during an atomic write: raised in the main thread so that the write unwinds (its
    temporary files are removed); the process then exits with status 128 + SIGTERM = 143."""


_writes = 0  # atomic writes in progress in the main thread
_installed = False  # whether the outermost of them installed `_on_sigterm`


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated(128 + signum)


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While the block runs in the main thread, a SIGTERM with the default handler raises `Terminated`
    instead of killing the process; reentrant (only the outermost block installs and restores)."""
    global _writes, _installed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _writes == 0:
        _installed = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        if _installed:
            signal.signal(signal.SIGTERM, _on_sigterm)
    _writes += 1
    try:
        yield
    finally:
        _writes -= 1
        if _writes == 0 and _installed:
            _installed = False
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:  # the block did not install one of its own
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


# --------------------------------------------------------------------------------------------------
# the atomic writer


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike[str]], force: bool = False) -> Iterator[list[Path]]:
    """Temporary paths beside each of `paths` (all checked first) for a writer to fill. When the block
    succeeds they are renamed onto their targets one after another, in the order given; when anything fails
    (an exception, Ctrl-C, SIGTERM: also a failed rename), the temporaries not yet renamed are removed. No
    target is ever half-written, but several targets are replaced in turn, not at once: files that belong
    together must say so themselves (a dump's manifest, renamed last, records its tensor file's sha256)."""
    targets = [check_writable(path, force) for path in paths]
    pending: list[Path] = []  # temporaries not yet renamed, in the order of `targets`' tail
    with sigterm_unwinds():
        try:
            for target in targets:
                handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
                pending.append(Path(name))
                os.close(handle)
            yield list(pending)
            mode = 0o666 & ~_umask()  # mkstemp makes them 0600; a new file gets the usual mode
            for target in targets:
                os.chmod(pending[0], mode)
                os.replace(pending[0], target)
                pending.pop(0)
        except BaseException:
            for temporary in pending:
                temporary.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` for a writer to fill; renamed onto `path` when the block succeeds,
    removed when it fails (also on Ctrl-C and SIGTERM), so that `path` is never half-written."""
    with atomic_paths([path], force) as (temporary,):
        yield temporary


def write_atomic(path: str | os.PathLike[str], data: str | bytes, force: bool = False) -> Path:
    """Write text or bytes to `path` all or nothing (see `atomic_path`)."""
    with atomic_path(path, force) as temporary:
        if isinstance(data, bytes):
            temporary.write_bytes(data)
        else:
            temporary.write_text(data)
    return Path(path)
