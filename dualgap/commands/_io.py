"""Shared helpers of the command modules: output paths checked before work, JSON that never fails.

* :func:`check_output_path` runs before a command does any work, so a typo in ``--out`` or
  ``--figure`` costs nothing but the error line.
* :func:`to_jsonable` / :func:`dumps` turn numpy scalars and arrays (and non-finite floats)
  into valid JSON, so ``--json`` output is always parseable as a whole.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import UserError


def check_output_path(path: str | os.PathLike | None, option: str) -> Path | None:
    """``path`` as a ``Path`` after checking that a file can be written there.

    Raises :class:`~dualgap.errors.UserError` naming ``option`` (for example ``--figure``) when
    the parent folder is missing or not writable, or when ``path`` is an existing folder.
    ``None`` passes through (the output is off).
    """
    if path is None:
        return None
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UserError(f"{option}: {str(path)!r} is a folder, not a file path")
    if not parent.is_dir():
        raise UserError(f"{option}: folder {str(parent)!r} of {str(path)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{option}: folder {str(parent)!r} is not writable")
    return p


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python numbers/lists; NaN and inf as strings.

    JSON has no NaN or infinity, so they become ``"nan"``, ``"inf"`` and ``"-inf"``.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy array/scalar
        return to_jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


def dumps(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``value`` (see :func:`to_jsonable`)."""
    return json.dumps(to_jsonable(value), indent=indent, allow_nan=False)
