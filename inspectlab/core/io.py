"""Files: the one cache folder, and the one atomic writer (all or nothing, never over a file without force)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` for a writer to fill; renamed onto `path` when the block succeeds,
    removed when it fails, so that `path` is never half-written."""
    target = check_writable(path, force)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it 0600; a new file gets the usual mode
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: str | bytes, force: bool = False) -> Path:
    """Write text or bytes to `path` all or nothing (see `atomic_path`)."""
    with atomic_path(path, force) as temporary:
        if isinstance(data, bytes):
            temporary.write_bytes(data)
        else:
            temporary.write_text(data)
    return Path(path)
