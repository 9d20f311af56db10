"""Evidence integrity: the one place that hashes evidence, names it, writes it and checks it.

- Names never come from input: stored frames are content-addressed (``{sha256}.{ext}``) or named by the
  server; `confined` refuses any name that is not one plain file name inside the folder (``..``,
  separators, NUL, a symlink leading out).
- Writes are atomic (temporary file + rename in the same folder) and confined to their folder.
- `Verifier.verify` checks a stored file against the SHA-256 recorded when it was saved. A verified result
  is remembered per file identity (device, inode, size, mtime, ctime), so the many Range requests of a
  clip being played hash it once, and any change to the file (which moves its ctime) is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_EXT = re.compile(r"[a-z0-9]{1,8}")
_CHUNK = 1 << 20


class IntegrityError(Exception):
    """A stored evidence file no longer matches the SHA-256 recorded for it."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def confined(root: str | os.PathLike[str], name: str) -> Path:
    """`root/name` when `name` is one plain file name that stays inside `root` (symlinks resolved); else ValueError."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
        raise ValueError(f"not a plain file name: {name!r}")
    base = Path(root).resolve()
    path = base / name
    if path.resolve().parent != base:
        raise ValueError(f"{name!r} leads outside {base}")
    return path


def write_confined(root: str | os.PathLike[str], name: str, data: bytes) -> tuple[Path, str]:
    """Writes `data` atomically as `root/name` (created if missing); returns (path, sha256). Blocking."""
    Path(root).mkdir(parents=True, exist_ok=True)
    path = confined(root, name)
    tmp = confined(root, f".{uuid.uuid4().hex}.part")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path, sha256_bytes(data)


def write_content_addressed(root: str | os.PathLike[str], data: bytes, ext: str) -> tuple[str, str]:
    """Stores `data` as `root/{sha256}.{ext}` (kept when already there intact); returns (name, sha256). Blocking."""
    if not _EXT.fullmatch(ext):
        raise ValueError(f"bad extension {ext!r}")
    digest = sha256_bytes(data)
    name = f"{digest}.{ext}"
    path = confined(root, name)
    with contextlib.suppress(OSError):
        if path.is_file() and not path.is_symlink() and sha256_file(path) == digest:
            return name, digest
    write_confined(root, name, data)
    return name, digest


class Verifier:
    """Checks files against their recorded SHA-256, remembering files that passed (bounded). Thread-safe."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._ok: OrderedDict[tuple[str, str], tuple[int, int, int, int, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hashed = 0  # files hashed (not answered from memory): for tests and figures

    def verify(self, path: str | os.PathLike[str], expected: str) -> bool:
        """True when the file's content has the SHA-256 `expected`. Blocking (hashes in the calling thread)."""
        if not SHA256_HEX.fullmatch(expected or ""):
            return False
        key = (os.fspath(path), expected)
        try:
            st = os.stat(path)
        except OSError:
            return False
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            if self._ok.get(key) == ident:
                self._ok.move_to_end(key)
                return True
        try:
            digest = sha256_file(path)
            after = os.stat(path)
        except OSError:
            return False
        self.hashed += 1
        if digest != expected:
            with self._lock:
                self._ok.pop(key, None)
            return False
        if (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns) == ident:
            with self._lock:
                self._ok[key] = ident
                while len(self._ok) > self.max_entries:
                    self._ok.popitem(last=False)
        return True
