"""Atomic file writes (a reader never sees a half-written file, an interruption loses nothing) and strict JSON.

Every JSON file and line the package writes is strict: NaN and infinities become ``null``, since
bare ``NaN`` is not JSON (a browser's ``JSON.parse`` and most tools refuse it).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_parent(path: str | Path, name: str) -> Path:
    """``path`` as a Path; ``ValueError`` naming ``name`` if its nearest existing ancestor is a file.

    Nothing could be written there, and a job would find out only after its work.
    """
    path = Path(path)
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"{name}: {str(existing)!r} is a file, so {str(path)!r} cannot be written")
    return path


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_utf8(path: str | Path, name: str) -> str:
    """The text of ``path`` without a byte-order mark (spreadsheets write one: a CSV's header went unrecognised);
    not UTF-8: a one-line ``ValueError`` naming ``name`` and the file (the codec's own names neither)."""
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name}: {str(path)!r} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                         "save it as UTF-8") from None


def load_saved(path: str | Path, *, what: str, missing: str, version: int | tuple[int, ...], key: str,
               name: str = "path") -> dict[str, Any]:
    """A dict written with :func:`save_torch` (a ``"format"`` version and ``key`` among its entries), read weights-only.

    ``version``: the format, or the formats, this version of the package reads. ``ValueError``
    naming ``name`` when the file is missing (``"<name>: <missing> at <path>"``), unreadable, not
    ``what`` (e.g. "a simplifier written by Simplifier.save"), or in a format above every one read
    here (a newer package wrote it: the message says so rather than failing later on its contents).
    """
    versions = (version,) if isinstance(version, int) else tuple(version)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{name}: {missing} at {str(path)!r}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        # The class only: torch's text runs to several lines and advises weights_only=False, which would run the file's code.
        kind = type(err).__name__
        raise ValueError(f"{name}: {str(path)!r} is not {what} ({kind}: not a weights-only checkpoint of this kind)") from None
    fmt = saved.get("format") if isinstance(saved, dict) else None
    # the format first: a newer version's file may name its entries otherwise
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > max(versions):
        formats = f"formats {' and '.join(map(str, versions))}" if len(versions) > 1 else f"format {versions[0]}"
        raise ValueError(f"{name}: {str(path)!r} is {what} in format {fmt}, written by a newer simplebits-audit; "
                         f"this version reads {formats}")
    if fmt not in versions or key not in saved:
        raise ValueError(f"{name}: {str(path)!r} is not {what}")
    return saved


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, infinities) replaced by ``None``, recursively.

    Dicts, lists and tuples are rebuilt (tuples as lists); other values are returned as they are.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def dumps_json(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``obj`` (non-finite floats as ``null``; UTF-8 characters kept)."""
    return json.dumps(strict_json(obj), indent=indent, ensure_ascii=False, allow_nan=False)


def save_json(obj: Any, path: str | Path) -> Path:
    """Write strict JSON (indented, UTF-8) atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(dumps_json(obj, indent=2) + "\n", encoding="utf-8"))
