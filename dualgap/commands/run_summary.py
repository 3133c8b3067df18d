"""The end-of-run summary of ``dualgap run``, in the user's terms.

For the last record ``T`` of a trajectory it says, for each constraint ``i``, whether
``E_rho E_{pi_T} h_i >= 0`` holds (met) and by how much; ``J(pi_T)`` against ``P*``; how far
``lam_T`` is from ``lam*`` (``||lam_T - lam*||_2``) and why the two can differ for this
algorithm and policy class (``docs/theory.md``: with ``nu > 0`` the class's own ``lam*_p``
differs from ``lam*``, and this command does not compute ``lam*_p``); and where the files went.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: a slack within this of 0 is reported as "met with equality" (the solver's own tolerance)
EQUALITY_TOL = 1e-6


def _vec(v) -> str:
    return "(" + ", ".join(f"{float(x):.4g}" for x in np.atleast_1d(v)) + ")"


def _why_lam_differs(tr, args: argparse.Namespace) -> list[str]:
    """Which ``lam*`` this run's ``lam`` should approach, and what keeps it away."""
    algo = args.algorithm
    policy = getattr(args, "policy", "exact")
    noise = getattr(args, "feature_noise", 0.0)
    T = int(tr.config.get("iterations", tr.num_records - 1) or 0)
    if policy == "loglinear" and noise > 0:
        target = ("the log-linear class has nu > 0 (--feature-noise "
                  f"{noise:g}): its own lam*_p differs from lam*, and lam*_p is not computed "
                  "here (dualgap report --policy loglinear --feature-noise "
                  f"{noise:g} measures it; Lemma 4 bounds ||lam*_p - lam*||)")
    elif policy == "loglinear":
        target = ("the log-linear class without noise contains every pi_lam (nu = 0): "
                  "lam*_p = lam*")
    elif policy == "tabular":
        target = "the tabular class contains every pi_lam (nu = 0): lam*_p = lam*"
    else:
        target = "the policy step is the exact pi_lam: the target is lam*"
    causes = []
    if algo == "one-shot":
        causes.append(f"one-shot lam comes from {args.one_shot_samples} reference samples per "
                      "prompt and is never corrected, so it is not lam* by design (Theorem 4)")
    else:
        eta = next((tr.config[k] for k in ("eta", "step_size", "dual_step")
                    if tr.config.get(k) is not None), None)
        stopped = f"the run stopped after T = {T} steps"
        self_tuning = eta == "auto"  # caid's self-tuning dual step: no number
        if self_tuning:
            stopped += f" of the self-tuning dual step ({tr.config.get('step_rule')})"
        elif eta is not None:
            stopped += f" of size eta = {float(eta):.3g}"
            if tr.config.get("step_rule") == "sqrt":
                stopped += " / sqrt(t + 1)"
        if tr.num_records > 1:
            move = float(np.linalg.norm(tr.lam[-1] - tr.lam[-2]))
            if move > 1e-9:
                stopped += f", and lam still moved {move:.2g} in its last step"
                if self_tuning:
                    stopped += " (more --iterations brings it closer)"
                elif algo != "primal-dual" and not getattr(args, "samples", None):
                    stopped += " (more --iterations or a larger --step-size brings it closer)"
        causes.append(stopped)
        if getattr(args, "samples", None):
            causes.append(f"dual steps use {args.samples} sampled responses per prompt")
        if algo == "caid" and policy != "exact" and args.inner_steps is not None:
            causes.append(f"each policy step is only {args.inner_steps} inner iterations "
                          "(--inner-steps), so pi_t lags pi_lam_t and lam compensates")
        if algo == "primal-dual":
            causes.append("primal-dual iterates circle around the saddle point; the last one "
                          "need not be the closest")
    return ["  why they can differ: " + target + ";"] + [f"    {c};" for c in causes[:-1]] + [
        f"    {causes[-1]}."]


def run_summary(tr, problem, exact, args: argparse.Namespace, instance: str,
                out: Path, figure: Path | None) -> str:
    """The summary text (several lines) of one finished ``dualgap run``."""
    names = problem.names or tuple(f"g{i + 1}" for i in range(problem.num_constraints))
    slack = np.atleast_1d(tr.slack[-1])  # size = (m,)
    lines = [f"{args.algorithm} on {instance} {problem!r}: {tr.num_records} records, "
             f"{tr.time[-1]:.3g} s",
             f"policy step: {tr.config.get('policy_class') or 'exact pi_lam'}",
             "constraints at the last iterate (E h = "
             + ("E_pi g - E_ref g - b" if problem.relative else "E_pi g - b")
             + " >= 0 is met):"]
    width = max((len(n) for n in names), default=0)
    for i, name in enumerate(names):
        s = float(slack[i])
        if abs(s) <= EQUALITY_TOL:
            verdict = "met with equality"
        elif s > 0:
            verdict = f"met, by {s:.4g}"
        else:
            verdict = f"MISSED, short by {-s:.4g}"
        if exact is not None:
            active = float(exact.lam[i]) > 0
            verdict += ("  (active at the optimum: E h = 0 there)" if active
                        else "  (inactive at the optimum: lam*_i = 0)")
        lines.append(f"  {name.ljust(width)}  E h = {s:+.4g}  {verdict}")
    J = float(tr.objective[-1])
    if exact is not None:
        P = float(exact.primal_value)
        note = ("; above P*, which only an infeasible policy can reach" if J > P + 1e-9
                else "")
        lines.append(f"objective J(pi_T) = {J:.6g}; exact optimum P* = {P:.6g} "
                     f"(J - P* = {J - P:+.3g}{note})")
        lam, lam_star = np.atleast_1d(tr.lam[-1]), np.atleast_1d(exact.lam)
        dist = float(np.linalg.norm(lam - lam_star))
        lines.append(f"multipliers: lam_T = {_vec(lam)}, exact lam* = {_vec(lam_star)}, "
                     f"||lam_T - lam*||_2 = {dist:.3g}  ({', '.join(names)})")
        if dist > 1e-6:
            lines += _why_lam_differs(tr, args)
    else:
        lines.append(f"objective J(pi_T) = {J:.6g}")
        lines.append(f"multipliers: lam_T = {_vec(tr.lam[-1])}; lam* not computed (--no-exact)")
    files = f"files: trajectory {out}" + ("" if figure is None else f", figure {figure}")
    lines.append(files)
    lines.append("symbols: docs/problem.md and docs/theory.md")
    return "\n".join(lines)
