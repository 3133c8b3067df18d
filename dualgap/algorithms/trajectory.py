"""The trajectory every algorithm returns, its JSON form, and the step-size rules.

Record ``t`` pairs a multiplier with the policy of the policy step taken at it::

    lam[t]         = lam_t                                   size = (T+1, m)
    objective[t]   = J(pi_t) = E_rho[E_{pi_t} r - beta KL(pi_t || pi_ref)]
    slack[t]       = E_rho E_{pi_t} h                        size = (T+1, m)   (>= 0: met)
    dual_value[t]  = D(lam_t), the closed-form distribution-space dual (an upper bound on
                     D_p(lam_t) for every policy class, Lemma 3)
    lagrangian[t]  = L(pi_t, lam_t) = J(pi_t) + lam_t^T slack[t]: a lower estimate of
                     D_p(lam_t) = max_theta L(pi_theta, lam_t) (equal to D(lam_t) when pi_t is
                     the exact Lagrangian maximizer pi_{lam_t})
    direction[t]   = u_t, the (exact or sampled) slack the dual step after record t used
                     (NaN on records followed by no dual step)
    second_moment[t] = E ||u_hat_t||^2 at pi_t, the exact second moment of the sampled
                     slack (the S^2 of the stochastic bound; NaN when u_t is exact)
    time[t]        = seconds from the start to the end of record t

Two "best iterate so far" indices are kept (``s <= t``):

    best_dual[t]     = argmin_s lagrangian[s]    (the best iterate of the stochastic
                       dual-descent theorem, measured by the algorithm's own D_p estimate)
    best_feasible[t] = argmax_s objective[s] over records with min_i slack[s]_i >= -feas_tol,
                       or, when there is none yet, argmin_s max_i (-slack[s]_i)

Numbers are float64; JSON writes NaN as ``null`` and reads it back as NaN.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dual import dual_value, policy_terms
from ..problem import AlignmentProblem
from .estimators import second_moment

__all__ = ["Trajectory", "TrajectoryRecorder", "step_size_schedule", "STEP_RULES",
           "best_dual_index", "best_feasible_index", "problem_summary"]

#: step-size rules accepted by the algorithms (``eta_t`` for dual step ``t = 0, 1, ...``)
STEP_RULES = ("constant", "sqrt", "smooth")

_ARRAYS = ("lam", "objective", "slack", "dual_value", "lagrangian", "direction",
           "second_moment", "time", "best_dual", "best_feasible")


def best_dual_index(lagrangian_values: np.ndarray) -> np.ndarray:
    """``argmin_{s <= t} lagrangian[s]`` for every ``t`` (NaN entries never win)."""
    v = np.where(np.isnan(lagrangian_values), np.inf, lagrangian_values)
    out = np.zeros(v.shape[0], dtype=np.int64)
    best = 0
    for t in range(v.shape[0]):  # sequential by nature; T is the number of iterations
        if v[t] < v[best]:
            best = t
        out[t] = best
    return out


def best_feasible_index(objective_values: np.ndarray, slack: np.ndarray,
                        feas_tol: float) -> np.ndarray:
    """Best feasible iterate so far (highest objective with ``min slack >= -feas_tol``),
    or the least-violating one while none is feasible."""
    T1 = objective_values.shape[0]
    viol = np.maximum(-slack, 0.0).max(axis=1) if slack.shape[1] else np.zeros(T1)
    out = np.zeros(T1, dtype=np.int64)
    best = 0
    for t in range(T1):
        ok_t, ok_b = viol[t] <= feas_tol, viol[best] <= feas_tol
        if ok_t and (not ok_b or objective_values[t] > objective_values[best]):
            best = t
        elif not ok_t and not ok_b and viol[t] < viol[best]:
            best = t
        out[t] = best
    return out


def problem_summary(problem: AlignmentProblem) -> dict:
    """Sizes and settings of an instance, for the JSON header."""
    return {
        "num_prompts": problem.num_prompts, "num_responses": problem.num_responses,
        "num_constraints": problem.num_constraints, "beta": problem.beta,
        "relative": problem.relative, "thresholds": problem.thresholds.tolist(),
        "names": list(problem.names or ()),
    }


def step_size_schedule(rule: str, step_size: float | None,
                       smoothness: Callable[[], float] | None = None) -> Callable[[int], float]:
    """``t -> eta_t`` for the dual step ``t = 0, 1, ...``:

    * ``"constant"``: ``eta_t = eta``;
    * ``"sqrt"``: ``eta_t = eta / sqrt(t + 1)``;
    * ``"smooth"``: ``eta_t = 1 / L_D`` (``smoothness()`` gives ``L_D``; ``step_size`` must be
      None, or it scales: ``eta_t = step_size / L_D``).
    """
    if rule not in STEP_RULES:
        raise ValueError(f"step_rule: must be one of {STEP_RULES}, got {rule!r}")
    if rule == "smooth":
        if smoothness is None:
            raise ValueError("step_rule: 'smooth' needs the smoothness bound L_D")
        L = float(smoothness())
        if not (math.isfinite(L) and L > 0):
            raise ValueError(f"step_rule: smoothness bound L_D = {L!r} is not a positive float")
        scale = 1.0 if step_size is None else float(step_size)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"step_size: must be a positive float, got {step_size!r}")
        return lambda t: scale / L
    if step_size is None:
        raise ValueError(f"step_size: required for step_rule {rule!r}")
    eta = float(step_size)
    if not (math.isfinite(eta) and eta > 0):
        raise ValueError(f"step_size: must be a positive float, got {step_size!r}")
    if rule == "constant":
        return lambda t: eta
    return lambda t: eta / math.sqrt(t + 1.0)


@dataclass
class Trajectory:
    """What an algorithm did, record by record (see the module docstring for each field).

    Attributes:
        algorithm: ``"dual_descent"``, ``"caid"``, ``"one_shot"`` or ``"primal_dual"``.
        config: the algorithm's settings (JSON-ready).
        problem: :func:`problem_summary` of the instance.
        exact: the exact distribution-space answer when known: ``{"lam": lam*,
            "dual_value": D*, "primal_value": P*}``.
        extra: algorithm-specific results (e.g. one-shot's empirical ``lam_hat``), JSON-ready.
        policy: the last record's policy ``(X, Y)`` (not written to JSON unless asked).
        theta: the last parameters (policy classes only; not written to JSON).
    """

    algorithm: str
    lam: np.ndarray
    objective: np.ndarray
    slack: np.ndarray
    dual_value: np.ndarray
    lagrangian: np.ndarray
    direction: np.ndarray
    second_moment: np.ndarray
    time: np.ndarray
    best_dual: np.ndarray
    best_feasible: np.ndarray
    config: dict = field(default_factory=dict)
    problem: dict = field(default_factory=dict)
    exact: dict | None = None
    extra: dict = field(default_factory=dict)
    policy: np.ndarray | None = field(default=None, repr=False)
    theta: object | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ views
    @property
    def num_records(self) -> int:
        """``T + 1``."""
        return int(self.lam.shape[0])

    @property
    def violation(self) -> np.ndarray:
        """``max_i max(0, -slack[t]_i)``, shape ``(T+1,)``."""
        if self.slack.shape[1] == 0:
            return np.zeros(self.num_records)
        return np.maximum(-self.slack, 0.0).max(axis=1)

    def first_within(self, violation_tol: float, objective_tol: float,
                     target: float | None = None) -> int | None:
        """First record with violation ``<= violation_tol`` and ``|J - target| <= objective_tol``
        (``target`` defaults to ``exact["primal_value"]``); None if never."""
        if target is None:
            if not self.exact:
                raise ValueError("target: no exact primal value stored; pass target=")
            target = float(self.exact["primal_value"])
        ok = (self.violation <= violation_tol) & (np.abs(self.objective - target) <= objective_tol)
        hits = np.flatnonzero(ok)
        return int(hits[0]) if hits.size else None

    # ------------------------------------------------------------------- JSON
    def to_dict(self, include_policy: bool = False) -> dict:
        """A JSON-ready dict (NaN as None); the policy only when asked for."""
        out: dict = {"algorithm": self.algorithm, "config": self.config,
                     "problem": self.problem, "exact": _jsonable(self.exact),
                     "extra": _jsonable(self.extra)}
        for k in _ARRAYS:
            out[k] = _jsonable(getattr(self, k))
        if include_policy and self.policy is not None:
            out["policy"] = _jsonable(self.policy)
        return out

    def to_json(self, path: str | Path | None = None, include_policy: bool = False) -> str:
        """The JSON text; written to ``path`` when given."""
        text = json.dumps(self.to_dict(include_policy), allow_nan=False, indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict) -> Trajectory:
        known = set(_ARRAYS) | {"algorithm", "config", "problem", "exact", "extra", "policy"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"trajectory: unknown field(s) {sorted(unknown)}")
        missing = [k for k in (*_ARRAYS, "algorithm") if k not in data]
        if missing:
            raise ValueError(f"trajectory: missing field(s) {missing}")
        arrays = {}
        for k in _ARRAYS:
            dtype = np.int64 if k.startswith("best") else np.float64
            arr = np.array(_nan_back(data[k]), dtype=dtype)
            if k in ("lam", "slack", "direction") and arr.ndim == 1:
                arr = arr.reshape(arr.shape[0], 0)
            arrays[k] = arr
        exact = data.get("exact")
        if exact is not None:
            exact = {k: (np.asarray(v, float) if isinstance(v, list) else v)
                     for k, v in exact.items()}
        policy = data.get("policy")
        return cls(algorithm=data["algorithm"], config=data.get("config", {}),
                   problem=data.get("problem", {}), exact=exact, extra=data.get("extra", {}),
                   policy=None if policy is None else np.asarray(policy, float), **arrays)

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> Trajectory:
        """Read what :meth:`to_json` wrote (a path or the text itself)."""
        p = Path(path_or_text) if not str(path_or_text).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(path_or_text)
        return cls.from_dict(json.loads(text))


def _jsonable(v: object) -> object:
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "f":
            return [_jsonable(x) for x in v] if v.ndim else _jsonable(float(v))
        return v.tolist()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _nan_back(v: object) -> object:
    if v is None:
        return math.nan
    if isinstance(v, list):
        return [_nan_back(x) for x in v]
    return v


class TrajectoryRecorder:
    """Builds a :class:`Trajectory` record by record (used by every algorithm).

    ``record(lam, policy, direction=None, lagrangian_value=None)`` evaluates ``J``, the slack
    and ``D(lam)`` exactly on the table; ``lagrangian_value`` is the policy step's own
    ``L(pi_theta, lam)`` when it has one (otherwise it is computed from the policy).
    """

    def __init__(self, problem: AlignmentProblem, algorithm: str, config: dict,
                 exact: dict | None = None, feas_tol: float = 1e-6) -> None:
        self.problem, self.algorithm, self.config = problem, algorithm, config
        self.exact, self.feas_tol = exact, float(feas_tol)
        self._rows: dict[str, list] = {k: [] for k in
                                       ("lam", "objective", "slack", "dual_value", "lagrangian",
                                        "direction", "second_moment", "time")}
        self._t0 = time.perf_counter()
        self._paused = 0.0
        self.policy: np.ndarray | None = None

    def pause(self) -> _Pause:
        """Context manager: time spent inside (diagnostics) is not counted in ``time``."""
        return _Pause(self)

    def record(self, lam: np.ndarray, policy: np.ndarray, direction: np.ndarray | None = None,
               lagrangian_value: float | None = None, samples: int | None = None) -> np.ndarray:
        """Append record ``t`` and return its exact slack ``E_rho E_pi h``; ``samples`` = the
        ``N`` of a sampled ``u_t`` (its exact second moment at ``policy`` is recorded)."""
        elapsed = time.perf_counter() - self._t0 - self._paused
        with self.pause():
            p = self.problem
            lam = np.array(lam, dtype=np.float64)
            # objective and constraint_slack from one validation of the policy
            pi, obj, slack = policy_terms(p, policy)
            # (lam is validated by dual_value below)
            lag = (obj + float(lam.reshape(-1) @ slack) if lagrangian_value is None
                   else float(lagrangian_value))
            rows = self._rows
            rows["lam"].append(lam)
            rows["objective"].append(obj)
            rows["slack"].append(slack)
            rows["dual_value"].append(dual_value(p, lam))
            rows["lagrangian"].append(lag)
            rows["direction"].append(np.full(p.num_constraints, np.nan) if direction is None
                                     else np.asarray(direction, dtype=np.float64))
            rows["second_moment"].append(
                np.nan if samples is None else second_moment(p, pi, slack, samples))
            rows["time"].append(elapsed)
            self.policy = policy
        return slack

    def finish(self, extra: dict | None = None, theta: object | None = None) -> Trajectory:
        m = self.problem.num_constraints
        r = self._rows
        T1 = len(r["lam"])
        lam = np.array(r["lam"]).reshape(T1, m)
        slack = np.array(r["slack"]).reshape(T1, m)
        obj = np.array(r["objective"], dtype=np.float64)
        lag = np.array(r["lagrangian"], dtype=np.float64)
        return Trajectory(
            algorithm=self.algorithm, lam=lam, objective=obj, slack=slack,
            dual_value=np.array(r["dual_value"], dtype=np.float64), lagrangian=lag,
            direction=np.array(r["direction"]).reshape(T1, m),
            second_moment=np.array(r["second_moment"], dtype=np.float64),
            time=np.array(r["time"], dtype=np.float64),
            best_dual=best_dual_index(lag),
            best_feasible=best_feasible_index(obj, slack, self.feas_tol),
            config={**self.config, "feas_tol": self.feas_tol},
            problem=problem_summary(self.problem), exact=self.exact, extra=extra or {},
            policy=self.policy, theta=theta,
        )


class _Pause:
    def __init__(self, rec: TrajectoryRecorder) -> None:
        self.rec = rec

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.rec._paused += time.perf_counter() - self.start
