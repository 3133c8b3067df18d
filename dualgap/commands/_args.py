"""argparse types shared by the command modules: a bad value is reported by argparse as
``argument --OPTION: expected ..., got 'TEXT'``, naming the option as the user typed it."""

from __future__ import annotations

import argparse
import math

__all__ = ["positive_int", "nonneg_int", "positive_float", "nonneg_float"]


def positive_int(text: str) -> int:
    """argparse type: an integer ``>= 1``."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    """argparse type: an integer ``>= 0``."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _float(text: str, lowest: float, strict: bool) -> float:
    want = f"a finite number {'>' if strict else '>='} {lowest:g}"
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
    if not math.isfinite(v) or v < lowest or (strict and v == lowest):
        raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a finite float ``> 0`` (the error names the option as typed)."""
    return _float(text, 0.0, strict=True)


def nonneg_float(text: str) -> float:
    """argparse type: a finite float ``>= 0``."""
    return _float(text, 0.0, strict=False)
