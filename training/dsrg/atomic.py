"""Atomic text and byte output (stdlib only: tools/resolve_settings.py runs before set-up has built the
project's environment). A file either exists complete or not at all."""
import json
import os
import tempfile
from pathlib import Path


def current_umask():
    """The process's file-creation mask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data):
    """Write `data` to `path` through a temporary file in the same folder and an atomic rename.

    The file gets the mode an ordinary `open(path, "w")` would give (0666 less the umask; mkstemp's
    own 0600 would hide every output from colleagues on a shared server). A failed write (a full
    disk, a read-only folder) leaves no partial file and is an OSError naming `path` and the cause.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from error
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError):
            raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from error
        raise


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
