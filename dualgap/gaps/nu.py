"""The parametrization gap ``nu`` of docs/theory.md over a finite set of targets: any theta gives a
valid (upper) ``nu`` for its target.  Imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..dual import lagrangian_policy
from ..policies import FitResult, PolicyClass
from ..problem import AlignmentProblem
from .lagrangian import check_compatible, with_small_threads

__all__ = ["ParametrizationGap", "parametrization_gap", "proves_not_a_minimizer"]


@dataclass
class ParametrizationGap:
    """``nu`` of docs/theory.md over a finite set of targets (:func:`parametrization_gap`).

    Attributes:
        nu_1: ``max_targets max_x ||pi_theta - pi||_1``.
        nu_kl: ``max_targets max_x |KL(pi_theta || pi_ref) - KL(pi || pi_ref)|``.
        nu: ``max(nu_1, nu_kl)``.
        fits: one :class:`~dualgap.policies.FitResult` per target (its theta certifies it).
        labels: the targets' names; ``worst``: the label attaining ``nu``.
        per_target: ``nu`` of each target.

    Sides: each target's ``nu`` is an *upper* estimate of ``min_theta`` (any theta is a valid
    witness); the maximum over a finite set of targets is a *lower* estimate of the ``nu`` of
    all targets the theory quantifies over.
    """

    nu_1: float
    nu_kl: float
    nu: float
    fits: list[FitResult] = field(repr=False)
    labels: list[str]
    worst: str
    per_target: np.ndarray


@with_small_threads
def parametrization_gap(problem: AlignmentProblem, policy_class: PolicyClass,
                        targets: object, *, objective: str = "nu", steps: int = 300,
                        starts: int = 1, seed: int = 0) -> ParametrizationGap:
    """``nu_1``, ``nu_KL`` and ``nu`` of the class for ``targets``.

    ``targets``: a mapping ``label -> (X, Y) policy``, a sequence of policies, or a sequence
    of multipliers ``(m,)`` (then each target is ``pi_lam``, labelled by ``lam``).  Each target
    is fitted with :meth:`PolicyClass.fit` (arguments passed through).
    """
    check_compatible(problem, policy_class)
    X, Y = problem.reward.shape
    m = problem.num_constraints
    if isinstance(targets, dict):
        labels, pols = [str(k) for k in targets], [np.asarray(v, float) for v in targets.values()]
    else:
        items = list(targets)  # type: ignore[call-overload]
        if not items:
            raise ValueError("targets: need at least one target")
        labels, pols = [], []
        for k, v in enumerate(items):
            arr = np.asarray(v, dtype=np.float64)
            if arr.shape == (X, Y):
                labels.append(f"target {k}")
                pols.append(arr)
            elif arr.shape == (m,) or (m == 0 and arr.size == 0):
                labels.append("pi_lam, lam = " + np.array2string(arr, precision=4))
                pols.append(lagrangian_policy(problem, arr))
            else:
                raise ValueError(f"targets: item {k} has shape {arr.shape}; expected a policy "
                                 f"{(X, Y)} or a multiplier ({m},)")
    if not pols:
        raise ValueError("targets: need at least one target")
    fits = [policy_class.fit(pi, objective=objective, steps=steps, starts=starts, seed=seed)
            for pi in pols]
    per = np.array([f.nu for f in fits])
    k = int(np.argmax(per))
    return ParametrizationGap(
        nu_1=max(f.nu_1 for f in fits), nu_kl=max(f.nu_kl for f in fits), nu=float(per[k]),
        fits=fits, labels=labels, worst=labels[k], per_target=per)


def proves_not_a_minimizer(problem: AlignmentProblem, policy_class, lam: object,
                           d_star: float, *, theta0: object = None) -> bool:
    """Whether a search proves that ``lam`` does not minimize ``D_p`` (so a ``lam*_p`` estimate
    there is wrong).

    ``max_theta L(pi_theta, lam)`` is searched (:func:`~.lagrangian.lagrangian_max`, the class's
    warm budget) from ``theta0``: a fit witness of ``pi_lam`` the caller already has (e.g. the
    gap report's fit at its ``lam*_p``); ``None``: one is fitted here first
    (:func:`parametrization_gap`'s defaults).  Any start is valid: the value found is a lower
    bound of ``D_p(lam)``, and ``D*_p <= D*`` always (``D_p <= D``), so a value above
    ``D* = d_star`` (beyond float rounding) proves ``D_p(lam) > D*_p``.
    """
    from .lagrangian import lagrangian_max

    if theta0 is None:
        theta0 = parametrization_gap(problem, policy_class, [lam]).fits[0].theta
    value = lagrangian_max(problem, policy_class, lam, theta0=theta0).value
    return bool(value > d_star + 1e-12 * (1.0 + abs(d_star)))
