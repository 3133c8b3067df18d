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

__all__ = ["AlignmentProblem", "NPZ_FIELDS"]

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


def _as_float_array(name: str, value: object, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be read as a float array ({exc})") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    return arr


def _check_finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}: {int(bad.sum())} non-finite value(s), "
            f"first {float(arr[idx])!r} at index {idx}"
        )


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
        r = _as_float_array("reward", self.reward, 2)
        X, Y = r.shape
        if X == 0 or Y == 0:
            raise ValueError(f"reward: needs at least one prompt and one response, got {r.shape}")
        ref = _as_float_array("reference", self.reference, 2)
        if ref.shape != (X, Y):
            raise ValueError(f"reference: shape {ref.shape} does not match reward {r.shape}")
        g = np.asarray(self.utilities, dtype=np.float64) if self.utilities is not None else None
        if g is None or (g.ndim == 1 and g.size == 0):
            g = np.zeros((0, X, Y))
        g = _as_float_array("utilities", g, 3)
        if g.shape[1:] != (X, Y):
            raise ValueError(f"utilities: shape {g.shape} does not match (m, X, Y) = (m, {X}, {Y})")
        m = g.shape[0]
        b = _as_float_array(
            "thresholds",
            np.atleast_1d(self.thresholds)
            if m
            else np.asarray(self.thresholds, dtype=np.float64).reshape(-1),
            1,
        )
        if b.shape != (m,):
            raise ValueError(f"thresholds: shape {b.shape} does not match m = {m} utilities")
        for name, arr in (("reward", r), ("utilities", g), ("thresholds", b), ("reference", ref)):
            _check_finite(name, arr)
        try:
            beta = float(self.beta)
        except (TypeError, ValueError):
            raise ValueError(f"beta: must be a positive float, got {self.beta!r}") from None
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
            rho = _as_float_array("prompt_weights", self.prompt_weights, 1)
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
            names = tuple(str(n) for n in names)
            if len(names) != m:
                raise ValueError(f"names: {len(names)} names for m = {m} constraints")
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
        eps_arr = np.broadcast_to(np.asarray(eps, dtype=np.float64), (self.num_constraints,))
        return self.replace(thresholds=self.thresholds + eps_arr)

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
        """Read an instance in the npz schema :data:`NPZ_FIELDS`; errors name the field."""
        path = Path(path)
        if not path.exists():
            raise ValueError(f"file: {str(path)!r} does not exist")
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"file: {str(path)!r} is not a readable .npz archive ({exc})"
            ) from None
        with data:
            keys = set(data.files)
            unknown = keys - set(NPZ_FIELDS)
            if unknown:
                raise ValueError(
                    f"{path.name}: unknown field(s) {sorted(unknown)}; known: {sorted(NPZ_FIELDS)}"
                )
            for req in ("reward", "reference", "beta"):
                if req not in keys:
                    raise ValueError(f"{path.name}: missing required field {req!r}")
            kw: dict[str, object] = {k: data[k] for k in keys}
        X, Y = np.shape(kw["reward"])[:2] if np.ndim(kw["reward"]) == 2 else (0, 0)
        kw.setdefault("utilities", np.zeros((0, X, Y)))
        kw.setdefault("thresholds", np.zeros(0))
        for scalar in ("beta", "relative"):
            if scalar in kw:
                arr = np.asarray(kw[scalar])
                if arr.ndim != 0:
                    raise ValueError(f"{scalar}: expected a scalar, got shape {arr.shape}")
                kw[scalar] = arr.item()
        if "names" in kw:
            kw["names"] = tuple(str(n) for n in np.asarray(kw["names"]).reshape(-1))
        return cls(**kw)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        kind = "relative" if self.relative else "absolute"
        return (
            f"AlignmentProblem(X={self.num_prompts}, Y={self.num_responses}, "
            f"m={self.num_constraints}, beta={self.beta:g}, {kind}, "
            f"thresholds={np.array2string(self.thresholds, precision=4)})"
        )
