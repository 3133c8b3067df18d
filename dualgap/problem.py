"""The constrained alignment problem on a finite prompt/response table.

Notation (docs/problem.md): prompts ``x`` with weights ``rho(x)``, responses ``y``, reference policy
``pi_ref(y|x)`` (zeros allowed: such responses are outside the support), reward ``r(x, y)``,
utilities ``g_i(x, y)`` (``i = 1..m``), thresholds ``b_i`` and KL coefficient ``beta > 0``.

Every constraint is written ``E_rho E_pi h_i >= 0`` with ``h_i = g_i - c_i`` and

* ``c_i = E_rho E_ref g_i + b_i`` (``relative=True``: improvement over ``pi_ref``, the paper's),
* ``c_i = b_i`` (``relative=False``: absolute level).

This module imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

__all__ = ["AlignmentProblem", "NPZ_FIELDS", "as_real_array", "as_real_scalar"]

#: Fields of the ``.npz`` instance format read by :meth:`AlignmentProblem.load` and
#: ``dualgap solve``.  Required: ``reward``, ``reference``, ``beta``; the others are optional.
NPZ_FIELDS: dict[str, str] = {
    "reward": "float array (X, Y): r(x, y)",
    "utilities": "float array (m, X, Y): g_i(x, y); omit or shape (0, X, Y) for m = 0",
    "thresholds": "float array (m,): b_i",
    "beta": "float scalar > 0: KL coefficient",
    "reference": "float array (X, Y): pi_ref(y|x), rows sum to 1, zeros = outside the support",
    "prompt_weights": "float array (X,): rho(x), sums to 1 (default uniform)",
    "relative": "bool scalar: True for E_pi g - E_ref g >= b (default), False for E_pi g >= b",
    "names": "str array (m,): constraint names (optional, for reports)",
}

_PROB_ATOL = 1e-9


def _describe_dtype(arr: np.ndarray) -> str:
    kind = arr.dtype.kind
    what = {"i": "integers", "u": "integers", "f": "floats", "b": "booleans",
            "c": "complex numbers", "O": "Python objects", "U": "strings", "S": "byte strings",
            "M": "dates", "m": "time deltas", "V": "raw records"}
    return f"{what.get(kind, 'values')} (dtype {arr.dtype})"


def as_real_array(name: str, value: object, ndim: int | None = None) -> np.ndarray:
    """``value`` as a float64 array; only real numbers (float or int dtypes) are accepted.

    Strings, booleans, complex numbers and object arrays raise ``ValueError`` naming ``name``
    (nothing is coerced: ``"0.5"`` is not a number, and an imaginary part is never dropped).
    """
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be read as an array of numbers ({exc})") from None
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: must hold real numbers (float or int), got "
                         f"{_describe_dtype(arr)}")
    arr = arr.astype(np.float64, copy=False)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    return arr


def as_real_scalar(name: str, value: object) -> float:
    """``value`` as a Python float; only a real number (not a bool, str or complex) passes."""
    arr = np.asarray(value) if not isinstance(value, (str, bytes)) else None
    if arr is None or arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: must be a real number (float or int), got {value!r}")
    return float(arr)


def _check_finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}: {int(bad.sum())} non-finite value(s), "
            f"first {float(arr[idx])!r} at index {idx}"
        )


def _check_names(names: object, m: int) -> tuple[str, ...]:
    """``m`` unique, non-empty strings (``str`` or numpy ``str_``)."""
    if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
        raise ValueError(f"names: expected a sequence of {m} strings, got {names!r}")
    out = tuple(names)
    if len(out) != m:
        raise ValueError(f"names: {len(out)} names for m = {m} constraints")
    seen: set[str] = set()
    for i, n in enumerate(out):
        if not isinstance(n, str):
            raise ValueError(f"names: name {i} is {n!r} ({type(n).__name__}), not a string")
        if not n.strip():
            raise ValueError(f"names: name {i} is empty")
        if n in seen:
            raise ValueError(f"names: duplicate name {n!r}")
        seen.add(n)
    return tuple(str(n) for n in out)


@dataclass(frozen=True, eq=False)
class AlignmentProblem:
    """``max_pi E_rho[E_pi r - beta KL(pi || pi_ref)]  s.t.  E_rho E_pi h_i >= 0``.

    Args:
        reward: ``r``, shape ``(X, Y)``.
        utilities: ``g``, shape ``(m, X, Y)``; ``m = 0`` is allowed (unconstrained).
        thresholds: ``b``, shape ``(m,)``.
        beta: KL coefficient, ``> 0``.
        reference: ``pi_ref``, shape ``(X, Y)``; rows sum to 1; zeros are outside the support.
        prompt_weights: ``rho``, shape ``(X,)``, sums to 1; default uniform.
        relative: constraints on the improvement over ``pi_ref`` (True) or on the level (False).
        names: optional constraint names used in reports and error messages.

    Raises:
        ValueError: naming the field and the offending value, for wrong shapes, NaN/inf,
            negative or non-normalized probabilities, or ``beta <= 0``.
    """

    reward: np.ndarray
    utilities: np.ndarray
    thresholds: np.ndarray
    beta: float
    reference: np.ndarray
    prompt_weights: np.ndarray | None = None
    relative: bool = True
    names: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        r = as_real_array("reward", self.reward, 2)
        X, Y = r.shape
        if X == 0 or Y == 0:
            raise ValueError(f"reward: needs at least one prompt and one response, got {r.shape}")
        ref = as_real_array("reference", self.reference, 2)
        if ref.shape != (X, Y):
            raise ValueError(f"reference: shape {ref.shape} does not match reward {r.shape}")
        g = as_real_array("utilities", self.utilities) if self.utilities is not None else None
        if g is None or (g.ndim == 1 and g.size == 0):
            g = np.zeros((0, X, Y))
        g = as_real_array("utilities", g, 3)
        if g.shape[1:] != (X, Y):
            raise ValueError(f"utilities: shape {g.shape} does not match (m, X, Y) = (m, {X}, {Y})")
        m = g.shape[0]
        b = as_real_array(
            "thresholds",
            np.atleast_1d(self.thresholds)
            if m
            else as_real_array("thresholds", self.thresholds).reshape(-1),
            1,
        )
        if b.shape != (m,):
            raise ValueError(f"thresholds: shape {b.shape} does not match m = {m} utilities")
        for name, arr in (("reward", r), ("utilities", g), ("thresholds", b), ("reference", ref)):
            _check_finite(name, arr)
        if isinstance(self.beta, (str, bytes, bool, np.bool_)) or np.ndim(self.beta) != 0:
            raise ValueError(f"beta: must be a positive finite float, got {self.beta!r}")
        beta = as_real_scalar("beta", self.beta)
        if not np.isfinite(beta) or beta <= 0:
            raise ValueError(f"beta: must be a positive finite float, got {beta!r}")
        if (ref < 0).any():
            idx = tuple(int(i) for i in np.argwhere(ref < 0)[0])
            raise ValueError(
                f"reference: negative probability {float(ref[idx])!r} at (x, y) = {idx}"
            )
        sums = ref.sum(axis=1)
        bad = np.abs(sums - 1.0) > _PROB_ATOL * max(1.0, Y**0.5)
        if bad.any():
            x = int(np.argmax(bad))
            raise ValueError(f"reference: row x = {x} sums to {float(sums[x])!r}, not 1")
        if self.prompt_weights is None:
            rho = np.full(X, 1.0 / X)
        else:
            rho = as_real_array("prompt_weights", self.prompt_weights, 1)
            if rho.shape != (X,):
                raise ValueError(f"prompt_weights: shape {rho.shape} does not match X = {X}")
            _check_finite("prompt_weights", rho)
            if (rho < 0).any():
                x = int(np.argmax(rho < 0))
                raise ValueError(f"prompt_weights: negative weight {float(rho[x])!r} at x = {x}")
            if abs(rho.sum() - 1.0) > _PROB_ATOL * max(1.0, X**0.5):
                raise ValueError(f"prompt_weights: sum to {float(rho.sum())!r}, not 1")
        if not isinstance(self.relative, (bool, np.bool_)):
            raise ValueError(f"relative: must be a bool, got {self.relative!r}")
        names = self.names
        if names is not None:
            names = _check_names(names, m)
        else:
            names = tuple(f"g{i + 1}" for i in range(m))
        set_(self, "reward", r)
        set_(self, "utilities", g)
        set_(self, "thresholds", b)
        set_(self, "beta", beta)
        set_(self, "reference", ref)
        set_(self, "prompt_weights", rho)
        set_(self, "relative", bool(self.relative))
        set_(self, "names", names)

    # ------------------------------------------------------------------ sizes
    @property
    def num_prompts(self) -> int:
        """``X``."""
        return self.reward.shape[0]

    @property
    def num_responses(self) -> int:
        """``Y``."""
        return self.reward.shape[1]

    @property
    def num_constraints(self) -> int:
        """``m``."""
        return self.utilities.shape[0]

    # --------------------------------------------------------- derived arrays
    @cached_property
    def support(self) -> np.ndarray:
        """Boolean ``(X, Y)``: ``pi_ref(y|x) > 0``."""
        return self.reference > 0

    @cached_property
    def log_reference(self) -> np.ndarray:
        """``log pi_ref`` with ``-inf`` outside the support, shape ``(X, Y)``."""
        with np.errstate(divide="ignore"):
            return np.log(self.reference)

    @cached_property
    def reference_utilities(self) -> np.ndarray:
        """``E_rho E_ref g_i``, shape ``(m,)``."""
        return np.einsum("x,xy,ixy->i", self.prompt_weights, self.reference, self.utilities)

    @cached_property
    def offsets(self) -> np.ndarray:
        """``c`` with ``h_i = g_i - c_i``: ``E_ref g + b`` (relative) or ``b`` (absolute)."""
        if self.relative:
            return self.reference_utilities + self.thresholds
        return self.thresholds.copy()

    @property
    def h(self) -> np.ndarray:
        """``h = g - c``, shape ``(m, X, Y)`` (a new array each call)."""
        return self.utilities - self.offsets[:, None, None]

    @cached_property
    def score_bound(self) -> float:
        """``M = max over the support of |r| and |h_i|`` (docs/theory.md)."""
        s = self.support
        M = float(np.abs(self.reward[s]).max())
        for i in range(self.num_constraints):
            M = max(M, float(np.abs(self.utilities[i][s] - self.offsets[i]).max()))
        return M

    @cached_property
    def normalized(self):  # -> dualgap.scaling.Normalization
        """This problem in normalized units (scores of size one), see :mod:`dualgap.scaling`.

        Raises ``ValueError`` naming the field when float64 cannot hold the normalization.
        """
        from .scaling import normalize

        return normalize(self)

    @cached_property
    def entry_bounds(self) -> tuple[float, np.ndarray]:
        """``(max |r|, max |g_i|)`` over the whole table (support or not), shapes () and (m,)."""
        g = [float(np.abs(gi).max()) for gi in self.utilities]  # one (X, Y) temporary at a time
        return float(np.abs(self.reward).max()), np.array(g, dtype=np.float64).reshape(-1)

    # ------------------------------------------------------------- variants
    def replace(self, **changes: object) -> AlignmentProblem:
        """A copy with some fields changed (validated again)."""
        fields = dict(
            reward=self.reward,
            utilities=self.utilities,
            thresholds=self.thresholds,
            beta=self.beta,
            reference=self.reference,
            prompt_weights=self.prompt_weights,
            relative=self.relative,
            names=self.names,
        )
        unknown = set(changes) - set(fields)
        if unknown:
            raise ValueError(f"replace: unknown field(s) {sorted(unknown)}")
        fields.update(changes)
        return AlignmentProblem(**fields)  # type: ignore[arg-type]

    def as_absolute(self) -> AlignmentProblem:
        """The same problem with absolute constraints ``E_pi g >= c``."""
        return self.replace(thresholds=self.offsets, relative=False)

    def tightened(self, eps: float | np.ndarray) -> AlignmentProblem:
        """The problem with constraints ``E_rho E_pi h_i >= eps_i`` (perturbation ``P*(eps)``)."""
        m = self.num_constraints
        eps_arr = as_real_array("eps", eps)
        if eps_arr.shape not in ((), (m,)):
            raise ValueError(f"eps: expected a scalar or {m} values (one per constraint), got "
                             f"shape {eps_arr.shape}")
        _check_finite("eps", eps_arr.reshape(-1))
        return self.replace(thresholds=self.thresholds + np.broadcast_to(eps_arr, (m,)))

    # ------------------------------------------------------------------- I/O
    def save(self, path: str | Path) -> None:
        """Write the instance in the npz schema :data:`NPZ_FIELDS`."""
        np.savez(
            path,
            reward=self.reward,
            utilities=self.utilities,
            thresholds=self.thresholds,
            beta=np.float64(self.beta),
            reference=self.reference,
            prompt_weights=self.prompt_weights,
            relative=np.bool_(self.relative),
            names=np.asarray(self.names, dtype=str),
        )

    @classmethod
    def load(cls, path: str | Path) -> AlignmentProblem:
        """Read an instance in the npz schema :data:`NPZ_FIELDS`.

        Every problem with the file (missing, empty, not a zip, truncated, a ``.npy`` array,
        object arrays, a missing or unknown field, strings where numbers belong) raises a
        ``ValueError`` whose one-line message names the file and what is wrong.
        """
        path = Path(path)
        fields = _read_npz(path)
        try:
            return cls(**fields)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def __repr__(self) -> str:
        kind = "relative" if self.relative else "absolute"
        return (
            f"AlignmentProblem(X={self.num_prompts}, Y={self.num_responses}, "
            f"m={self.num_constraints}, beta={self.beta:g}, {kind}, "
            f"thresholds={np.array2string(self.thresholds, precision=4)})"
        )


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip
_NUMERIC_FIELDS = ("reward", "utilities", "thresholds", "beta", "reference", "prompt_weights")


def _read_npz(path: Path) -> dict[str, object]:
    """The fields of an ``.npz`` instance file, checked field by field (see ``load``)."""
    import zipfile
    import zlib

    from .errors import UserError

    if not path.exists():
        raise UserError(f"{path}: file does not exist")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an .npz file")
    with open(path, "rb") as fh:
        head = fh.read(6)
    if not head:
        raise UserError(f"{path}: file is empty")
    if head.startswith(b"\x93NUMPY"):
        raise UserError(f"{path}: is a single .npy array, not an .npz archive of the fields "
                        f"{sorted(NPZ_FIELDS)} (write one with numpy.savez or "
                        "AlignmentProblem.save)")
    if not head.startswith(_ZIP_MAGIC):
        raise UserError(f"{path}: is not an .npz archive (a zip of .npy arrays); it starts with "
                        f"{head!r}")
    fields: dict[str, object] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            unknown = keys - set(NPZ_FIELDS)
            if unknown:
                raise UserError(f"{path}: unknown field(s) {sorted(unknown)}; known: "
                                f"{sorted(NPZ_FIELDS)}")
            for key in sorted(keys):
                try:
                    fields[key] = data[key]
                except ValueError as exc:
                    if "Object arrays" in str(exc):
                        raise UserError(f"{path}: field {key!r} holds Python objects (an object "
                                        "array); store numbers, bools or strings") from None
                    raise UserError(f"{path}: field {key!r} cannot be read ({exc})") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise UserError(f"{path}: is a damaged or truncated .npz archive ({exc})") from None
    for req in ("reward", "reference", "beta"):
        if req not in fields:
            raise UserError(f"{path}: missing required field {req!r}")
    for key in _NUMERIC_FIELDS:
        arr = fields.get(key)
        if arr is not None and np.asarray(arr).dtype.kind not in "iuf":
            raise UserError(f"{path}: field {key!r} holds {_describe_dtype(np.asarray(arr))}, "
                            "expected real numbers")
    if "relative" in fields and np.asarray(fields["relative"]).dtype.kind != "b":
        raise UserError(f"{path}: field 'relative' holds "
                        f"{_describe_dtype(np.asarray(fields['relative']))}, expected a bool")
    if "names" in fields and np.asarray(fields["names"]).dtype.kind != "U":
        raise UserError(f"{path}: field 'names' holds "
                        f"{_describe_dtype(np.asarray(fields['names']))}, expected strings")
    reward = np.asarray(fields["reward"])
    X, Y = reward.shape if reward.ndim == 2 else (0, 0)
    utilities = fields.get("utilities")
    m = int(np.shape(utilities)[0]) if utilities is not None and np.ndim(utilities) == 3 else 0
    if m and "thresholds" not in fields:
        raise UserError(f"{path}: missing field 'thresholds' (needed for the {m} constraints "
                        "in 'utilities')")
    if "thresholds" in fields and np.size(fields["thresholds"]) and "utilities" not in fields:
        raise UserError(f"{path}: field 'thresholds' has {np.size(fields['thresholds'])} "
                        "value(s) but the field 'utilities' is missing")
    fields.setdefault("utilities", np.zeros((0, X, Y)))
    fields.setdefault("thresholds", np.zeros(0))
    for scalar in ("beta", "relative"):
        if scalar in fields:
            arr = np.asarray(fields[scalar])
            if arr.ndim != 0:
                raise UserError(f"{path}: field {scalar!r} must be a scalar, got shape "
                                f"{arr.shape}")
            fields[scalar] = arr.item()
    if "names" in fields:
        fields["names"] = tuple(str(n) for n in np.asarray(fields["names"]).reshape(-1))
    return fields
