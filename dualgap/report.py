"""The gap report: every quantity of docs/theory.md measured for a policy class, each statement
checked.

:func:`gap_report` measures ``P*, D*`` (exact), ``D*_p`` (point estimate and certified lower
bound), ``P*_p`` (lower estimate), ``lam*``, ``lam*_p``, ``lam*_nu`` and ``nu`` with
:mod:`dualgap.gaps`, and checks each statement of :mod:`dualgap.theory` as a :class:`GapRow`
that says on which side each estimate errs.  The same code decides every table that shows
these theorems (the core's notebooks and CLI, and any caller outside the core).
Imports torch when :func:`gap_report` runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .assumptions import perturbed_feasibility, segment_curvature, utility_span
from .dual import constraint_slack, dual_value, lagrangian_policy
from .problem import AlignmentProblem
from .report_rows import KINDS, GapReport, GapRow, kind_of
from .theory import (
    bound_holds,
    dual_curvature,
    lemma1_curvature,
    lemma3_bounds,
    lemma4_bound,
    lemma4_segment_bound,
    lemma5_bound,
    lowerbound_holds,
    optimality_gaps,
    smoothness_bound,
    theorem1_assumption,
    theorem1_bounds,
    theorem2_bounds,
    tightened_multiplier,
)

__all__ = ["GapRow", "GapReport", "gap_report", "gap_sweep", "sweep_counts", "Target",
           "NU_SIDE", "SEARCH_MODES", "KINDS", "kind_of"]


#: how every ``nu`` errs (one text, used by every row that has ``nu`` in its bound)
NU_SIDE = ("nu: an upper estimate per target (a fitted theta is a witness: easier), the max "
           "over finitely many targets (harder)")
NU_NOTE = ("nu is an upper estimate for each target (the best of the witnesses found: the fit, "
           "the Lagrangian maximizers found at that lam), which makes every bound in nu easier "
           "to satisfy; it is a max over finitely many targets pi_lam (harder)")

#: where :func:`gap_report` runs a Lagrangian search for Lemma 3: at every target, or only at
#: the targets the bundle did not evaluate (then ``D_p`` there is the bundle's estimate)
SEARCH_MODES = ("all", "new")


@dataclass
class Target:
    """One multiplier ``lam`` of the report and what was found there.

    ``d_p``: the best lower estimate of ``D_p(lam)`` (max over the searches and every cut);
    ``theta``: the parameter attaining it; ``nu``, ``nu_1``, ``nu_kl``: the smallest measured
    gap to ``pi_lam`` among the witnesses (``fit``, the searches, the best cut's theta).
    """

    label: str
    lam: np.ndarray
    d_p: float = -math.inf
    theta: object = field(default=None, repr=False)
    nu: float = math.inf
    nu_1: float = math.inf
    nu_kl: float = math.inf
    fit: object = field(default=None, repr=False)
    #: ``D_p(lam)`` from one local search at the class's default start (not the fit witness)
    cold: float = math.nan


def gap_report(problem: AlignmentProblem, policy_class: object, *, starts: int | None = None,
               seed: int = 0, tol: float = 1e-8, grid: tuple[float, ...] = (0.0, 0.5, 1.5, 2.0),
               cvxpy_check: bool = True, fit_steps: int = 300, fit_objective: str = "nu",
               fit_at: tuple[str, ...] | None = None, fit_warm: bool = False,
               search: str = "all", dual_options: dict | None = None,
               primal_options: dict | None = None, extra_thetas: tuple | list = (),
               cold_search: bool = True, segment_points: int = 201,
               progress: bool = False) -> GapReport:
    """Measure ``P*, D*, P*_p, D*_p, lam*, lam*_p, nu`` and check every statement of docs/theory.md.

    Targets: ``pi_lam`` for ``lam`` in ``{s lam* : s in grid} + {lam*, lam*_p, lam*_nu}``
    (``lam*_nu`` depends on ``nu``: computed from the ``nu`` of the other targets, its own
    target added, and recomputed once if ``nu`` grew).  At each target:

    * a fit (:meth:`~dualgap.policies.PolicyClass.fit`, ``fit_objective``, ``fit_steps``; from
      the class's start, or from the bundle's best theta there when ``fit_warm``), for the
      labels in ``fit_at`` (default: every target; ``fit_steps = 0``: none);
    * ``D_p(lam)`` from below: the best of the searches (``search="all"``: at every target;
      ``"new"``: only where the bundle did not evaluate ``lam``) warm-started at the bundle's
      best theta and at the fit, and of every cut (so the upper side of Lemma 3 is guaranteed by
      its own proof, ``D - L(theta_w) <= K(lam) nu(theta_w)`` for every witness ``theta_w``);
    * ``nu`` of the target: the smallest measured gap among the witnesses (the fit, the
      searches' maximizers, the best cut's theta): every theta is a valid witness.

    ``dual_options`` / ``primal_options`` go to :func:`~dualgap.gaps.parametrized_dual` and
    :func:`~dualgap.gaps.parametrized_primal` (their cost knobs); ``extra_thetas`` (parameters
    of the class found elsewhere, e.g. a training run's iterates) add cuts and primal
    candidates.  Theorem 4's one-shot policy is the maximizer found at ``lam*``.

    ``cold_search``: also one local search per searched target from the class's default start
    (its value is neither a cut nor a witness), for the informative ``Lemma 3 (cold search)``
    rows.  ``segment_points``: the grid of ``[lam*, lam*_p]`` on which ``mu_seg`` (Lemma 4,
    A5) is measured.  Every row has a ``kind`` (:mod:`dualgap.report_rows`).
    """
    from tqdm.auto import tqdm

    from . import gaps
    from .policies import PolicyClass, small_problem_threads
    from .solver import solve

    if not isinstance(policy_class, PolicyClass):
        raise ValueError(f"policy_class: expected a PolicyClass, got "
                         f"{type(policy_class).__name__}")
    if search not in SEARCH_MODES:
        raise ValueError(f"search: must be one of {SEARCH_MODES}, got {search!r}")
    if int(fit_steps) != fit_steps or fit_steps < 0:
        raise ValueError(f"fit_steps: must be an integer >= 0, got {fit_steps!r}")
    extra = [policy_class.check_params(th).detach() for th in extra_thetas]
    t0 = time.perf_counter()
    notes: list[str] = []
    # stages: the exact solve, D*_p, P*_p, a fit and the searches at each target, lam*_nu, rows
    bar = tqdm(total=2 * len(grid) + 9, desc=f"gap report ({policy_class.name})",
               disable=not progress, leave=False, unit="stage")
    with small_problem_threads(problem):
        sol = solve(problem)
        m = problem.num_constraints
        M, beta = problem.score_bound, problem.beta
        L_D = smoothness_bound(problem)
        mu = dual_curvature(problem, sol.lam)
        P_cvx = None
        if cvxpy_check:
            from .reference import solve_primal_cvxpy

            P_cvx = solve_primal_cvxpy(problem).primal_value
        bar.update(1)
        dual = gaps.parametrized_dual(problem, policy_class, tol=tol, starts=starts, seed=seed,
                                      **(dual_options or {}))
        bar.update(1)
        primal = gaps.parametrized_primal(problem, policy_class, dual, starts=starts or 1,
                                          seed=seed, **(primal_options or {}))
        bar.update(1)
        targets = [Target(f"{s:g} lam*", s * sol.lam) for s in grid]
        targets += [Target("lam*", sol.lam.copy()), Target("lam*_p", dual.lam.copy())]
        searched = [np.asarray(c[0]) for c in dual.cuts]
        warm_won: list[str] = []

        def best_theta(lam: np.ndarray):
            vals = [J + lam @ s for _, _, J, s in dual.cuts]
            return dual.thetas[int(np.argmax(vals))]

        def fit_target(t: Target) -> None:
            if fit_steps and (fit_at is None or t.label in fit_at):
                t.fit = policy_class.fit(lagrangian_policy(problem, t.lam),
                                         theta0=best_theta(t.lam) if fit_warm else None,
                                         objective=fit_objective, steps=int(fit_steps),
                                         seed=seed)

        def witness(t: Target, theta) -> None:
            res = policy_class.measure(theta, lagrangian_policy(problem, t.lam))
            if res.nu < t.nu:
                t.nu, t.nu_1, t.nu_kl = res.nu, res.nu_1, res.nu_kl

        def search_targets(ts: list[Target]) -> list:
            """The searches at every target of ``ts`` (by ``search``) as one batch of the
            class's hook; each target's best lower estimate of D_p and its witnesses."""
            jobs = []  # (target, kind, start): warm (+ random starts), from the fit, cold
            for t in ts:
                if search == "all" or not any(np.array_equal(t.lam, s) for s in searched):
                    jobs.append((t, "warm", best_theta(t.lam)))
                    jobs += [(t, "warm", policy_class.init_params(seed + k))
                             for k in range(1, starts or 1)]
                    jobs += [(t, "fit", t.fit.theta)] if t.fit is not None else []
                    jobs += [(t, "cold", None)] if cold_search else []
            runs = gaps.lagrangian_max_batch(problem, policy_class, [j[0].lam for j in jobs],
                                             [j[2] for j in jobs])
            new_thetas = []
            for t in ts:
                mine = [(kind, r) for (tj, kind, _), r in zip(jobs, runs, strict=True)
                        if tj is t]
                warm = [r for kind, r in mine if kind == "warm"]
                found = [warm[int(np.argmax([r.value for r in warm]))]] if warm else []
                for kind, r in mine:
                    if kind == "fit":
                        if r.value > found[0].value + 1e-12 * (1 + abs(found[0].value)):
                            warm_won.append(t.label)
                        found.append(r)
                    elif kind == "cold":
                        t.cold = r.value
                th_cut = best_theta(t.lam)
                J, s = gaps.cut(problem, policy_class, th_cut)
                t.d_p, t.theta = J + float(t.lam @ s), th_cut
                for est in found:
                    if est.value > t.d_p:
                        t.d_p, t.theta = est.value, est.theta
                for th in [th_cut] + [e.theta for e in found] + ([t.fit.theta] if t.fit else []):
                    witness(t, th)
                new_thetas += [e.theta for e in found]
            return new_thetas

        for t in targets:
            fit_target(t)
            bar.update(1)
        # the primal's feasible theta is a cut too (so the D*_p estimate is never below it)
        new = [t.fit.theta for t in targets if t.fit is not None] + extra + (
            [primal.theta] if primal.found else [])
        dual = gaps.refine_dual(problem, policy_class, dual, new)
        new += search_targets(targets)
        bar.update(len(targets))
        nu = max(t.nu for t in targets)
        worst = max(targets, key=lambda t: t.nu).label
        tight = tightened_multiplier(problem, nu)
        if tight.feasible:
            t_nu = Target("lam*_nu", tight.lam.copy())
            fit_target(t_nu)
            new += search_targets([t_nu]) + ([t_nu.fit.theta] if t_nu.fit else [])
            targets.append(t_nu)
            if t_nu.nu > nu:
                notes.append(f"nu grew from {nu:.4g} to {t_nu.nu:.4g} with the target "
                             "pi_{lam*_nu}; lam*_nu recomputed once with the larger nu")
                t_nu.label = f"lam*_nu(nu={nu:.3g})"  # its rows name the nu they were at
                nu, worst = t_nu.nu, f"pi_{{{t_nu.label}}}"
                tight = tightened_multiplier(problem, nu)
        bar.update(1)
        # every theta found is a parameter too: more cuts for D_p, more primal candidates
        dual = gaps.refine_dual(problem, policy_class, dual, new)
        lam_p = dual.lam
        for t in targets:  # the final cuts can only raise each lower estimate of D_p
            k = int(np.argmax([J + t.lam @ s for _, _, J, s in dual.cuts]))
            v = dual.cuts[k][2] + float(t.lam @ dual.cuts[k][3])
            if v > t.d_p:
                t.d_p, t.theta = v, dual.thetas[k]
        for th in new:
            primal = gaps.with_candidate(problem, policy_class, primal, th)
        nu_1 = max(t.nu_1 for t in targets)
        nu_kl = max(t.nu_kl for t in targets)
        lam_nu = tight.lam if tight.feasible else None
        lams = [t.lam for t in targets]
        by_label = {t.label: t for t in targets}

        rows: list[GapRow] = []
        # Lemma 1
        top, bottom = lemma1_curvature(problem, lams) if m else (0.0, 0.0)
        rows.append(GapRow("Lemma 1 (smooth)", "max_k lambda_max(hess D(lam_k))", top, bound=L_D,
                           holds=bound_holds(top, L_D, None), kind="by construction",
                           why="Popoviciu: Var(u^T g) <= diam_x^2 / 4 bounds every hess D",
                           sides="exact eigenvalues on the lam grid; L_D a proved bound"))
        rows.append(GapRow("Lemma 1 (convex)", "min_k lambda_min(hess D(lam_k))", bottom,
                           lower=0.0, holds=bound_holds(bottom, None, 0.0),
                           kind="by construction", why="hess D is a covariance (PSD)",
                           sides="exact eigenvalues on the lam grid"))
        # Lemma 2
        res2 = (1.0 + float(np.abs(sol.lam).sum())) * sol.kkt_residual
        gap2 = sol.dual_value - sol.primal_value
        rows.append(GapRow("Lemma 2", "D(lam^) - J(pi_lam^) (exact solve)", gap2,
                           lower=-res2, bound=res2, holds=bound_holds(gap2, res2, -res2),
                           sides="the solver's resolution: D - J = lam^T E h is within "
                                 "+-(1 + ||lam||_1) x KKT residual of 0"))
        if P_cvx is not None:
            rows.append(GapRow("Lemma 2 (cvxpy)", "D* - P*_cvxpy", sol.dual_value - P_cvx,
                               kind="measured",
                               note="cvxpy/CLARABEL solves to about 1e-8; not a bound check"))
        # Lemma 3 at every target: the warm estimate (by construction) and the cold search
        why3 = ("D_p(lam) >= L(theta_w) for the witness theta_w of nu, and D - L(theta_w) <= "
                "K nu(theta_w) is the proof's own inequality; D_p <= D as a max over fewer "
                "policies")
        for t in targets:
            d_lam = dual_value(problem, t.lam)
            gap_l = d_lam - t.d_p
            lo, up = lemma3_bounds(problem, t.lam, nu)
            rows.append(GapRow(f"Lemma 3 at {t.label}", "D(lam) - D_p(lam)", gap_l, bound=up,
                               lower=lo, holds=bound_holds(gap_l, up, lo),
                               kind="by construction", why=why3,
                               witness={"lam": t.lam, "theta": _as_array(t.theta)},
                               sides="D_p lower estimate (warm searches and every cut, "
                                     "the fit witness among them); " + NU_SIDE))
            if math.isnan(t.cold):
                continue
            gap_c = d_lam - t.cold
            ok_c = bound_holds(gap_c, up, lo)
            kind_c, note_c = "informative", ""
            if not ok_c and bound_holds(gap_l, up, lo):
                ok_c, kind_c = None, "search failure"
                note_c = (f"the cold local search errs low on D_p by {t.d_p - t.cold:.3g} "
                          "(the warm estimate meets the bound): a search failure, not the "
                          "lemma's")
            rows.append(GapRow(f"Lemma 3 (cold search) at {t.label}", "D(lam) - D_p(lam)",
                               gap_c, bound=up, lower=lo, holds=ok_c, kind=kind_c,
                               note=note_c, witness={"lam": t.lam},
                               sides="D_p from one local search at the class's start (not "
                                     "the fit witness): errs low, harder for the upper bound; "
                                     + NU_SIDE))
        if warm_won:
            notes.append("Lemma 3: at " + ", ".join(warm_won) + " the search started "
                         "from the fit witness of pi_lam beat the bundle's thetas (the plain "
                         "local search underestimates D_p there)")
        # Theorem 1 (A4 measured: the margin found against M nu)
        assumption = theorem1_assumption(problem, nu, primal.margin)
        lo1, up1 = theorem1_bounds(problem, nu, lam_nu)
        a4 = {"margin found": primal.margin, "M nu": M * nu}
        if primal.found:
            d1 = dual.value - primal.value
            held1, kind1 = bound_holds(d1, up1, None), "informative"
            if not assumption:
                held1, kind1 = None, "assumption not met"
            elif lam_nu is None:
                held1, kind1 = None, "undecided: lam*_nu undefined"
            elif not held1:
                # P*_p is known only from below: an excess of D*_p - J(theta_f) cannot refute
                held1, kind1 = None, "undecided: P*_p has no upper estimate"
            rows.append(GapRow("Theorem 1 (upper)", "D*_p - P*_p", d1, bound=up1,
                               holds=held1, kind=kind1, witness={"A4": a4, "lam*_p": lam_p},
                               sides="P*_p lower estimate (a feasible theta): harder; D*_p "
                                     "point estimate (errs low via the inner search, high via "
                                     "the outer tolerance); " + NU_SIDE))
            d1l = dual.lower_bound - primal.value
            held, why = lowerbound_holds(d1l, dual.value - primal.value, lo1, dual)
            rows.append(GapRow("Theorem 1 (weak duality)", "D*_p(certified lower) - P*_p", d1l,
                               lower=lo1, holds=held, note=why if held is False else "",
                               kind=why if held is None else "by construction",
                               why="theta_f is a cut: D_p(lam) >= L(theta_f, lam) >= J(theta_f)"
                                   " for lam >= 0",
                               sides="D*_p certified lower bound: harder; P*_p lower estimate:"
                                     " easier"))
        else:
            notes.append("no feasible theta found: P*_p unknown, Theorem 1 not checked")
        # Theorem 2
        lo2, up2 = theorem2_bounds(problem, nu, lam_p, lam_nu)
        d2 = dual.value - sol.primal_value
        held2, kind2 = bound_holds(d2, up2, None), "by construction"
        if lam_nu is None:
            held2, kind2 = None, "undecided: lam*_nu undefined (tightened problem infeasible)"
        elif not held2:
            held2 = None
            kind2 = (f"undecided: the D*_p point estimate exceeds the bound by {d2 - up2:.2g} "
                     f"(bundle resolution {dual.value - dual.lower_bound:.2g})")
        rows.append(GapRow("Theorem 2 (upper)", "D*_p - P*", d2, bound=up2, holds=held2,
                           kind=kind2, why="D_p <= D pointwise, so D*_p <= D* = P* <= bound",
                           sides="P* exact; D*_p point estimate (errs high by at most the "
                                 "bundle gap when the inner search is exact); " + NU_SIDE))
        d2l = dual.lower_bound - sol.primal_value
        held, note = lowerbound_holds(d2l, dual.value - sol.primal_value, lo2, dual)
        rows.append(GapRow("Theorem 2 (lower)", "D*_p(certified lower) - P*", d2l, lower=lo2,
                           holds=held, kind=note if held is None else "informative",
                           note=note if held is False else "",
                           witness={"lam*_p": lam_p},
                           sides="D*_p certified lower bound: harder; " + NU_SIDE))
        # Lemma 4: the paper's form under A5 (measured) and the segment form
        dist = float(np.linalg.norm(lam_p - sol.lam))
        first_at_lam_p = len(rows)  # Lemmas 4-5 are measured at the estimate lam*_p
        lam_p_wrong = gaps.proves_not_a_minimizer(  # from the fit witness of pi_{lam*_p}
            problem, policy_class, lam_p, sol.dual_value,
            theta0=getattr(by_label["lam*_p"].fit, "theta", None))
        curv = segment_curvature(problem, sol.lam, lam_p, points=segment_points,
                                 budget=2 * segment_points)
        mu_seg, floor = curv.grid_min, mu * (1.0 - 1e-9)  # grid_min: an upper estimate
        # A5 met: certified (Lipschitz lower bound of mu_seg >= mu*_D); not met: some point of
        # the segment has lambda_min < mu*_D; otherwise undecided
        a5 = True if curv.certified_lower >= floor else (False if mu_seg < floor else None)
        wit4 = {"lam*": sol.lam, "lam*_p": lam_p, "mu*_D": mu, "mu_seg": mu_seg,
                "mu_seg certified lower": curv.certified_lower, "A5 met": a5}
        b4 = lemma4_bound(problem, nu, lam_p, mu)
        ok4 = bound_holds(dist, b4, None)
        rows.append(GapRow("Lemma 4", "||lam*_p - lam*||_2", dist, bound=b4,
                           holds=ok4 if a5 else None,
                           kind={True: "informative", False: "assumption not met",
                                 None: "undecided: A5 not decided"}[a5], witness=wit4,
                           note="" if a5 else (f"A5 {'not met' if a5 is False else 'undecided'}:"
                                               f" mu_seg in [{curv.certified_lower:.3g}, "
                                               f"{mu_seg:.3g}] vs mu*_D {mu:.3g}; the paper's "
                                               f"bound {'holds' if ok4 else 'fails'} here"),
                           sides="the paper's form with mu*_D at lam* (A5 measured on [lam*, "
                                 "lam*_p]: met only when certified, not met when a point is "
                                 "below mu*_D); lam*_p the bundle estimate (error of either "
                                 "sign, about sqrt(tol / mu)); " + NU_SIDE))
        b4s = lemma4_segment_bound(problem, nu, lam_p, mu_seg)
        rows.append(GapRow("Lemma 4 (segment)", "||lam*_p - lam*||_2", dist, bound=b4s,
                           holds=bound_holds(dist, b4s, None), witness=wit4,
                           sides="mu_seg the min of lambda_min(hess D) on a grid of the segment"
                                 " (an upper estimate: the bound errs low, harder); lam*_p the "
                                 "bundle estimate (either sign); " + NU_SIDE))
        # Lemma 5
        eps_exact = constraint_slack(problem, lagrangian_policy(problem, lam_p))
        d5 = float(np.linalg.norm(dual.slack - eps_exact))
        b5 = lemma5_bound(problem, nu, lam_p, L_D)
        a6 = min(perturbed_feasibility(problem, dual.slack, eps_exact).margins)
        rows.append(GapRow("Lemma 5", "||eps_p(lam*_p) - eps(lam*_p)||_2", d5, bound=b5,
                           holds=bound_holds(d5, b5, None) if a6 > 0 else None,
                           kind="by construction" if a6 > 0 else "assumption not met",
                           why="Pinsker on the maximizer's KL to pi_lam, which the fit-witness"
                               " cuts bound by K nu", witness={"lam*_p": lam_p, "A6 margin": a6},
                           note="" if a6 > 0 else f"A6 not met: margin {a6:.3g} <= 0",
                           sides="eps_p at the maximizer found (a different local maximizer "
                                 "would give a different value); L_D an upper bound: easier; "
                                 + NU_SIDE))
        if lam_p_wrong:  # a search from the fit witness finds D_p(lam*_p) > D* >= D*_p
            rows[first_at_lam_p:] = [replace(
                r, holds=None, kind="search failure", note="lam*_p is proven not a minimizer of "
                "D_p (a search from the fit witness of pi_{lam*_p} finds D_p(lam*_p) > D*): "
                "this row rests on a wrong estimate" + (f"; {r.note}" if r.note else ""))
                for r in rows[first_at_lam_p:]]
        # Theorems 3-4 (measured only)
        one_shot = policy_class.policy(by_label["lam*"].theta)
        for name, pol in (("Theorem 3 (multi-shot pi_p(lam*_p))", dual.policy),
                          ("Theorem 4 (one-shot pi_p(lam*))", one_shot)):
            og = optimality_gaps(problem, pol, sol)
            rows.append(GapRow(name, "J(pi) - P*", og.reward_gap, kind="measured",
                               note=f"compare with nu = {nu:.3g} and sqrt(nu) = "
                                    f"{math.sqrt(nu):.3g} (no constants recovered)"))
            rows.append(GapRow(name, "||[-E h]_+||_2 (violation)", og.violation,
                               kind="measured"))
            rows.append(GapRow(name, "||E h - E* h||_2", og.slack_distance, kind="measured"))

    quantities = {
        "P*": sol.primal_value, "D*": sol.dual_value,
        "P*_p (lower estimate)": primal.value if primal.found else math.nan,
        "D*_p (point estimate)": dual.value, "D*_p certified lower bound": dual.lower_bound,
        "lam*": sol.lam, "lam*_p": lam_p,
        "lam*_nu": lam_nu if lam_nu is not None else math.nan,
        "nu": nu, "nu_1": nu_1, "nu_KL": nu_kl, "nu attained at": worst,
        "M": M, "beta": beta, "L_D": L_D, "mu*_D": mu,
        "mu_seg": mu_seg, "A5 met (mu_seg >= mu*_D)": a5,
        "A1 utility span": utility_span(problem).min_eig, "A6 margin": a6,
        "Slater margin found (theta)": primal.margin,
        "Theorem 1 assumption (margin > M nu)": assumption,
        "bundle converged": dual.converged, "box certified": dual.box_certified,
    }
    if P_cvx is not None:
        quantities["P* (cvxpy)"] = P_cvx
    notes.append(NU_NOTE)
    bar.update(1)
    bar.close()
    return GapReport(problem=repr(problem), policy_class=repr(policy_class),
                     quantities=quantities, rows=rows, seconds=time.perf_counter() - t0,
                     notes=notes, targets=targets, instance=problem)


def _as_array(theta: object) -> np.ndarray | None:
    """A class parameter (a tensor) as a numpy array, for a row's witness."""
    return None if theta is None else np.asarray(theta.detach().cpu().numpy())  # type: ignore


def gap_sweep(problem: AlignmentProblem, policy_classes: list, *, progress: bool = True,
              failed_dir: str | None = None, **report_kw: object) -> list[GapReport]:
    """:func:`gap_report` for each class of a family (e.g. shrinking ``nu``), with a progress
    bar; keyword arguments go to :func:`gap_report`.  ``failed_dir``: each report with a failed
    row writes its instance there (``class<k>.npz`` + ``class<k>.failed.json``,
    :meth:`GapReport.save_failures`); :func:`sweep_counts` aggregates the kinds."""
    from tqdm import tqdm

    if not policy_classes:
        raise ValueError("policy_classes: need at least one policy class")
    if failed_dir is not None:
        from pathlib import Path

        from .errors import UserError

        fd = Path(failed_dir)
        if fd.exists() and not fd.is_dir():
            raise UserError(f"failed_dir: {str(fd)!r} exists and is not a folder")
        if not fd.parent.is_dir():
            raise UserError(f"failed_dir: parent folder of {str(fd)!r} does not exist")
    out = []
    for k, cls in enumerate(tqdm(policy_classes, desc="gap reports", disable=not progress)):
        rep = gap_report(problem, cls, **report_kw)  # type: ignore[arg-type]
        if failed_dir is not None:
            rep.save_failures(failed_dir, f"class{k}")
        out.append(rep)
    return out


def sweep_counts(reports: list[GapReport]) -> dict[str, dict[str, int]]:
    """Per statement (the row name up to " at "), how many rows of each kind over ``reports``:
    ``{statement: {kind: count}}`` with every kind of :data:`KINDS`."""
    out: dict[str, dict[str, int]] = {}
    for rep in reports:
        for r in rep.rows:
            name = r.statement.split(" at ", 1)[0]
            out.setdefault(name, dict.fromkeys(KINDS, 0))[kind_of(r)] += 1
    return out
