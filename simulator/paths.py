"""Checks that an output path can be written, done before any work starts (the
simulator's, the profiler's and the apps' outputs): a ConfigError naming the field."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from simulator.errors import ConfigError

__all__ = ["check_output_dir", "check_output_file", "describe_os_error"]


def describe_os_error(err: OSError) -> str:
    """``<path>: <reason>`` for a file-system error (no Python type names)."""
    reason = err.strerror or str(err)
    return f"{err.filename}: {reason}" if err.filename is not None else reason


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (a dangling link counts as existing)."""
    here = path
    while not (here.exists() or here.is_symlink()) and here.parent != here:
        here = here.parent
    return here


def _probe(field: str, value: str, directory: Path) -> None:
    """Create and remove a scratch file in ``directory``; ConfigError when that fails."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-check-", dir=directory)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise ConfigError(field, value, f"cannot be written: {directory} does not accept "
                          f"new files ({err.strerror or err})") from None


def check_output_dir(field: str, path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` is, or can be created as, a directory we can write files in;
    creates nothing (a scratch file is made and removed in the nearest existing
    directory). Returns the path; ConfigError naming ``field`` otherwise."""
    value = str(path)
    if not value:
        raise ConfigError(field, value, "must be a directory path")
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(field, value, "is an existing file, not a directory; give a "
                          "directory path (it is created when missing)")
    base = _existing_ancestor(p.absolute())
    if not base.is_dir():
        raise ConfigError(field, value, f"cannot be created: {base} is a file, not a "
                          "directory")
    _probe(field, value, base)
    return p


def check_output_file(field: str, path: str | os.PathLike[str]) -> Path:
    """Check that a file can be written at ``path`` (its directory is created when
    missing); creates nothing. Returns the path; ConfigError naming ``field`` otherwise."""
    value = str(path)
    if not value:
        raise ConfigError(field, value, "must be a file path")
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(field, value, "is a directory; give the path of a file (in it, "
                          "or elsewhere)")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise ConfigError(field, value, "exists and is not writable")
        return p
    base = _existing_ancestor(p.absolute().parent)
    if not base.is_dir():
        raise ConfigError(field, value, f"cannot be created: {base} is a file, not a "
                          "directory")
    _probe(field, value, base)
    return p
