"""Algorithms on tabular models: dual descent, CAID, one-shot and primal-dual (README "Algorithms").

Every algorithm returns a :class:`Trajectory` (multipliers, objective, slacks, ``D(lam_t)``,
the policy step's estimate of ``D_p(lam_t)``, best iterates, time) that
:mod:`dualgap.plots.trajectories` draws and that serializes to JSON.

* :func:`dual_descent`: projected (sub)gradient descent on ``D`` in distribution space, exact or
  sampled gradients (numpy only);
* :func:`caid`: iterative dualization with an inexact, warm-started policy step (torch for a
  policy class);
* :func:`one_shot`: ``lam`` from the exact solver on an empirical instance, one policy step;
* :func:`primal_dual`: simultaneous / alternating gradient steps with a linear, log or PID
  multiplier (torch).

The update equations are in each module's docstring.  ``dualgap.algorithms`` itself imports
numpy only; torch is imported by the functions that need a policy class.
"""

from __future__ import annotations

from .caid import CAID_STARTS, caid, caid_update_rule
from .dual_descent import dual_descent, projected_step
from .estimators import estimate_slack, sampled_slack, slack_second_moment
from .multipliers import (
    MULTIPLIER_KINDS,
    LinearMultiplier,
    LogMultiplier,
    Multiplier,
    PIDMultiplier,
    dual_update_rule,
    make_multiplier,
)
from .one_shot import one_shot, one_shot_multiplier
from .primal_dual import PRIMAL_DUAL_MODES, PRIMAL_OPTIMIZERS, primal_dual
from .trajectory import STEP_RULES, Trajectory, step_size_schedule

__all__ = [
    "Trajectory",
    "STEP_RULES",
    "step_size_schedule",
    "dual_descent",
    "projected_step",
    "caid",
    "caid_update_rule",
    "CAID_STARTS",
    "one_shot",
    "one_shot_multiplier",
    "primal_dual",
    "PRIMAL_DUAL_MODES",
    "PRIMAL_OPTIMIZERS",
    "estimate_slack",
    "sampled_slack",
    "slack_second_moment",
    "Multiplier",
    "LinearMultiplier",
    "LogMultiplier",
    "PIDMultiplier",
    "MULTIPLIER_KINDS",
    "make_multiplier",
    "dual_update_rule",
]

