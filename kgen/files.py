"""Writing files so that a kill at any moment leaves the old version or the new one, never half of
one, with the permissions the umask gives; checksums; reading JSON with one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable


def umask() -> int:
    """The process's umask (Linux: read from /proc, so nothing is changed even for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class FileError(ValueError):
    """A file kgen reads is missing or corrupt; the message is for the user."""


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)``, then rename tmp_path to ``path`` (atomic on one file system), with the
    mode a plain open() would have given (mkstemp's temporary file is private: 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix="".join(path.suffixes) or ".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of_arrays(*arrays) -> str:
    """sha256 over numpy arrays: each one's dtype, shape and C-order bytes, in order (equal arrays,
    equal digest; any changed value, dtype or shape, another)."""
    import numpy as np

    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_checksum(path: Path, digest: str) -> None:
    """``path``'s sidecar in sha256sum's format ("<hex>  <name>"), so `sha256sum -c` checks it too."""
    atomic_write(checksum_path(path), lambda tmp: tmp.write_text(f"{digest}  {Path(path).name}\n"))


def checksum_problem(path: Path) -> str | None:
    """Why ``path`` does not match its recorded checksum, or None when it does."""
    try:
        recorded = checksum_path(path).read_text().split()[0]
    except (OSError, IndexError):
        return "no recorded checksum"
    try:
        actual = sha256_of(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None if actual == recorded else "checksum mismatch"


def archive_problem(path: Path) -> str | None:
    """Why the .keras archive ``path`` is damaged (a zip whose members fail their CRC-32, or not a
    zip at all), or None when every member reads back intact."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None if bad is None else f"member {bad} fails its CRC-32 check"


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def slug(text: str) -> str:
    """A dataset name or path as part of a file name: 'mnist', '/data/faces/' -> 'faces'."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", Path(text).stem if os.sep in text else text).strip("_") or "data"


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileError(f"{path} is corrupt ({exc})") from None


