"""Dual step rules against the peers of the field: iterations and policy steps to tolerance.

Usage::

    python benchmarks/dual_steps.py            # default set (~10 instances), README table
    python benchmarks/dual_steps.py --quick    # one small instance, tiny grids (smoke test)
    python benchmarks/dual_steps.py --instances 6,7 --out part.json --no-readme  # a part
    # parts joined: put their rows in one --out file, then --resume writes the README table

Methods (every run starts at ``lam = 0``, ``pi = pi_ref``):

* CAID with a self-tuning dual step (:class:`dualgap.dual_steps.DualStepper`: rules
  ``newton``, ``curvature``, ``empirical`` with Kesten's gain; no tuning): per iteration one
  policy step (the public :func:`dualgap.gaps.lagrangian_max`, ``INNER_STEPS`` inner steps,
  warm-started), then the dual step from the policy's samples (exact expectation, or ``N``
  draws per prompt).
* CAID with a fixed ``eta``: untuned ``eta = 1/L_D`` (:func:`dualgap.theory.smoothness_bound`,
  the safe choice of the theory) and tuned by a grid in hindsight.
* safe-rlhf's multiplier: Adam on ``log lam`` (loss ``-exp(log lam) * violation``), the policy
  step as CAID's; untuned: safe-rlhf's shipped ``lambda_lr = 0.1``, ``lambda_init = 1``.
* A PID multiplier (Stooke et al. 2020): ``lam = [Kp e + Ki sum e + Kd (e - e_prev)]_+`` with
  ``e = -u`` (the violation); untuned: ``Kp = Kd = 0, Ki = 1`` (plain dual ascent, eta = 1).
* cooper 1.0.1 (``cooper-optim``), driven through its API: the policy class's parameters with
  Adam on the primal (softmax per prompt for the tabular class), one ``roll()`` per
  iteration: GDA (SimultaneousOptimizer, SGD on the multiplier), nuPI (``Kp`` grid, ``Ki = 1``)
  and the augmented Lagrangian (AlternatingDualPrimalOptimizer, penalty ``c``, dual lr 1).
  cooper has no default step sizes; untuned = :data:`COOPER_UNTUNED`.

Tolerance ("converged at t"): ``|J(pi_t) - P*| < 1e-4 (1 + |P*|)`` and the largest violation
``< 1e-4`` (the issue's criterion on the demo instance: 3.6e-4, 1e-4), evaluated exactly (an
oracle no method sees), for the tabular class with the exact ``P*``; for a parametrized class
``P*`` is replaced by ``P_ref``, the best ``J`` with violation ``<= 1e-6`` of a long reference
run (60 CAID iterations, Newton rule, converged inner steps), and the criterion is one-sided:
``J >= P_ref - tol``.  With
sampled dual signals (``N`` draws per prompt) the tolerances are 10x looser and must hold for
``HOLD`` consecutive iterations (a noisy iterate otherwise touches the band by chance).
A tuned peer's "tuning runs" is the grid size, its "tuning steps" the policy steps of the whole
grid.  The ratio column is ``iterations / iterations of the best tuned peer``: one iteration is
one dual step (CAID-type: after a policy step of up to ``INNER_STEPS`` inner steps, a natural
step being exact for the tabular class; cooper: after one Adam step), the unit the issue
compares; the policy steps column counts the inner steps, so the costs per iteration differ.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

import dualgap as dg
from dualgap.dual_steps import (
    DUAL_STEP_RULES,
    DualStepper,
    dual_step,
    exact_samples,
    policy_samples,
)
from dualgap.gaps import lagrangian_max, policy_terms
from dualgap.instances import demo_problem, random_problem
from dualgap.policies import LogLinearPolicy, MLPPolicy, TabularPolicy, problem_features

ROOT = Path(__file__).resolve().parents[1]
INNER_STEPS = 5
HOLD = 5
REF_VIOLATION = 1e-6  # "feasible" in the reference run of a parametrized class (criterion: 1e-4)
#: cooper has no default step sizes: the untuned runs take Adam lr 0.1 on the primal and
#: (GDA, nuPI) dual lr 0.1, nuPI's Kp = 1, (ALM) penalty c = 1: round first tries
COOPER_UNTUNED = {"gda": (0.1, 0.1, 0.0), "nupi": (0.1, 0.1, 1.0), "alm": (0.1, 1.0, 0.0)}


# ------------------------------------------------------------------ instances
def instances(quick: bool) -> list[dict]:
    """``{"name", "problem", "cls", "samples"}``; ``cls(problem)`` builds the policy class."""
    if quick:
        p = random_problem(0, num_prompts=6, num_responses=8, num_constraints=2, tightness=0.9)
        return [{"name": "random 6x8 m=2 exact", "problem": p, "cls": TabularPolicy,
                 "samples": None}]
    demo = demo_problem()
    out = [{"name": "demo 40x256 m=2 exact", "problem": demo, "cls": TabularPolicy,
            "samples": None},
           {"name": "demo 40x256 m=2 N=16", "problem": demo, "cls": TabularPolicy,
            "samples": 16}]
    for m in (1, 2, 3):
        p = random_problem(10 + m, num_prompts=50, num_responses=100, num_constraints=m,
                           tightness=0.9, beta=0.2)
        out.append({"name": f"random 50x100 m={m} exact", "problem": p, "cls": TabularPolicy,
                    "samples": None})
    p3 = random_problem(13, num_prompts=50, num_responses=100, num_constraints=3,
                        tightness=0.9, beta=0.2)
    out.append({"name": "random 50x100 m=3 N=8", "problem": p3, "cls": TabularPolicy,
                "samples": 8})
    p1 = random_problem(11, num_prompts=50, num_responses=100, num_constraints=1,
                        tightness=0.9, beta=0.2)
    out.append({"name": "random 50x100 m=1 N=32", "problem": p1, "cls": TabularPolicy,
                "samples": 32})
    for m in (1, 2, 3):
        p = random_problem(20 + m, num_prompts=20, num_responses=30, num_constraints=m,
                           tightness=0.8, beta=0.3)
        feats = problem_features(p, noise=0.5, seed=m)
        out.append({"name": f"log-linear 20x30 m={m} (noise 0.5)", "problem": p,
                    "cls": lambda q, f=feats: LogLinearPolicy(q, f), "samples": None})
    p = random_problem(31, num_prompts=20, num_responses=30, num_constraints=2, tightness=0.8,
                       beta=0.3)
    feats = problem_features(p, noise=0.5, seed=3)
    out.append({"name": "MLP(8) 20x30 m=2 (noise 0.5)", "problem": p,
                "cls": lambda q, f=feats: MLPPolicy(q, f, hidden=8), "samples": None})
    return out


# ------------------------------------------------------------------ the criterion
class Criterion:
    def __init__(self, p_star: float, exact: bool, sampled: bool):
        scale = 10.0 if sampled else 1.0
        self.p_star, self.exact = p_star, exact
        self.tol = scale * 1e-4 * (1 + abs(p_star))
        self.viol = scale * 1e-4
        self.hold = HOLD if sampled else 1
        self.run = 0

    def __call__(self, J: float, slack: np.ndarray) -> bool:
        gap = abs(J - self.p_star) if self.exact else self.p_star - J
        ok = gap < self.tol and float(np.max(-slack, initial=0.0)) < self.viol
        self.run = self.run + 1 if ok else 0
        return self.run >= self.hold


def _terms(problem, pc, theta) -> tuple[float, np.ndarray]:
    with torch.no_grad():
        J, s = policy_terms(problem, pc, theta)
    return float(J), s.numpy().copy()


def _signal(problem, policy, samples, rng):
    return (exact_samples(problem, policy) if samples is None
            else policy_samples(problem, policy, samples, rng))


# ------------------------------------------------------------------ CAID-type loops
def caid_loop(inst, crit, update, max_iter: int, inner_steps: int | None = INNER_STEPS,
              seed: int = 0) -> dict:
    """Policy step at ``lam_t``, then ``lam_{t+1} = update(lam_t, samples, t)``.

    This is the hook CAID needs: ``update(lam, samples, t) -> (lam_next, record)`` called
    with the :class:`~dualgap.dual_steps.OnPolicySamples` of the new policy."""
    problem = inst["problem"]
    pc = inst["cls"](problem)
    rng = np.random.default_rng(seed)
    lam, theta = np.zeros(problem.num_constraints), pc.init_params()
    steps, fallbacks = 0, 0
    for t in range(max_iter):
        res = lagrangian_max(problem, pc, lam, theta0=theta, steps=inner_steps)
        theta, steps = res.theta, steps + res.steps
        J, s = _terms(problem, pc, theta)
        if crit(J, s):
            return {"iterations": t + 1, "policy_steps": steps, "lam": lam.tolist(),
                    "fallbacks": fallbacks, "converged": True, "J": J}
        lam, rec = update(lam, _signal(problem, res.policy, inst["samples"], rng), t)
        fallbacks += rec is not None and getattr(rec, "fallback", None) is not None
    return {"iterations": max_iter, "policy_steps": steps, "lam": lam.tolist(),
            "fallbacks": fallbacks, "converged": False, "J": J}


def rule_update(rule):
    stepper = DualStepper(rule)
    return lambda lam, s, t: stepper(s, lam)


def fixed_eta_update(eta):
    return lambda lam, s, t: (np.maximum(lam - eta * s.slack(), 0.0), None)


def adam_log_lambda_update(lr, init=1.0):
    """safe-rlhf: ``log_lambda`` a parameter, Adam on ``-exp(log_lambda) * (cost - limit)``."""
    state = {}

    def update(lam, s, t):
        if "p" not in state:
            state["p"] = torch.full((len(lam),), math.log(init), dtype=torch.float64,
                                    requires_grad=True)
            state["opt"] = torch.optim.Adam([state["p"]], lr=lr)
        viol = torch.as_tensor(-s.slack())
        state["opt"].zero_grad()
        (-(state["p"].exp() * viol).sum()).backward()
        state["opt"].step()
        return state["p"].detach().exp().numpy().copy(), None
    return update


def pid_update(kp, ki, kd):
    """``lam = [Kp e_t + Ki I_t + Kd (e_t - e_{t-1})]_+``, ``I_t = [I_{t-1} + e_t]_+``."""
    state = {"I": None, "e": None}

    def update(lam, s, t):
        e = -s.slack()
        state["I"] = np.maximum((0 if state["I"] is None else state["I"]) + e, 0.0)
        de = e - (e if state["e"] is None else state["e"])
        state["e"] = e
        return np.maximum(kp * e + ki * state["I"] + kd * de, 0.0), None
    return update


# ------------------------------------------------------------------ cooper peers
def cooper_run(inst, crit, kind: str, primal_lr: float, dual: float, max_iter: int,
               kp: float = 0.0, seed: int = 0) -> dict:
    import cooper
    problem = inst["problem"]
    pc = inst["cls"](problem)
    m = problem.num_constraints
    rng = np.random.default_rng(seed)
    theta = pc.init_params().detach().clone().requires_grad_(True)
    samples = inst["samples"]

    class CMP(cooper.ConstrainedMinimizationProblem):
        def __init__(self):
            super().__init__()
            mult = cooper.multipliers.DenseMultiplier(num_constraints=m, dtype=torch.float64)
            if kind == "alm":
                pen = cooper.penalty_coefficients.DensePenaltyCoefficient(
                    torch.full((m,), dual, dtype=torch.float64))
                self.c = cooper.Constraint(cooper.ConstraintType.INEQUALITY,
                                           formulation_type=cooper.formulations.AugmentedLagrangian,
                                           multiplier=mult, penalty_coefficient=pen)
            else:
                self.c = cooper.Constraint(cooper.ConstraintType.INEQUALITY, multiplier=mult)

        def compute_cmp_state(self):
            J, s = policy_terms(problem, pc, theta)
            viol = -s  # cooper: g(x) <= 0
            if samples is not None:  # the dual sees N draws per prompt; the primal is exact
                with torch.no_grad():
                    pol = pc.policy(theta.detach())
                u = policy_samples(problem, pol, samples, rng).slack()
                viol = viol + (torch.as_tensor(-u) - viol).detach()
            return cooper.CMPState(loss=-J, observed_constraints={
                self.c: cooper.ConstraintState(violation=viol)})

    cmp = CMP()
    primal = torch.optim.Adam([theta], lr=primal_lr)
    if kind == "gda":
        dual_opt = torch.optim.SGD(cmp.dual_parameters(), lr=dual, maximize=True)
        opt = cooper.optim.SimultaneousOptimizer(cmp, primal, dual_opt)
    elif kind == "nupi":
        dual_opt = cooper.optim.nuPI(cmp.dual_parameters(), lr=dual, Kp=kp, Ki=1.0,
                                     maximize=True)
        opt = cooper.optim.SimultaneousOptimizer(cmp, primal, dual_opt)
    else:
        dual_opt = torch.optim.SGD(cmp.dual_parameters(), lr=1.0, maximize=True)
        opt = cooper.optim.AlternatingDualPrimalOptimizer(cmp, primal, dual_opt)
    for t in range(max_iter):
        J, s = _terms(problem, pc, theta.detach())
        if crit(J, s):
            return {"iterations": t + 1, "policy_steps": t + 1, "converged": True, "J": J}
        opt.roll()
    return {"iterations": max_iter, "policy_steps": max_iter, "converged": False, "J": J}


# ------------------------------------------------------------------ driver
def _grid(quick):
    if quick:
        return {"eta": [0.3, 1.0], "adam": [0.1], "pid": [(0.0, 1.0, 0.0)],
                "primal": [0.1], "dual": [0.3], "kp": [1.0], "alm": [1.0]}
    return {"eta": [0.1, 0.3, 1.0, 3.0, 10.0], "adam": [0.01, 0.03, 0.1, 0.3],
            "pid": [(kp, ki, 0.0) for kp in (0.0, 1.0, 3.0) for ki in (0.3, 1.0, 3.0)],
            "primal": [0.1, 0.3], "dual": [0.03, 0.1, 0.3, 1.0], "kp": [0.0, 1.0],
            "alm": [0.1, 0.3, 1.0, 3.0]}


def reference(inst) -> tuple[float, bool]:
    """``(P*, exact)``: the exact ``P*`` for the tabular class, else ``P_ref``."""
    p = inst["problem"]
    if inst["cls"] is TabularPolicy:
        return float(dg.solve(p).primal_value), True
    pc = inst["cls"](p)
    lam, theta, best = np.zeros(p.num_constraints), pc.init_params(), -math.inf
    for _ in range(60):
        res = lagrangian_max(p, pc, lam, theta0=theta)
        theta = res.theta
        J, s = _terms(p, pc, theta)
        if float(np.max(-s, initial=0.0)) <= REF_VIOLATION:
            best = max(best, J)
        lam, _ = dual_step(exact_samples(p, res.policy), lam, "newton")
    if not math.isfinite(best):
        raise RuntimeError(f"{inst['name']}: the reference run found no feasible iterate")
    return best, False


def run_instance(inst, quick: bool, max_iter: int, caid_only: bool = False) -> list[dict]:
    """The rows of ``inst``: every method, or only the CAID rules (``caid_only``)."""
    grid = _grid(quick)
    p_star, exact = reference(inst)
    sampled = inst["samples"] is not None
    rows = []

    def crit():
        return Criterion(p_star, exact, sampled)

    def record(method, tuned, results, params, seconds):
        conv = [(r["policy_steps"], i) for i, r in enumerate(results) if r["converged"]]
        best = min(conv)[1] if conv else int(np.argmin([-r["J"] for r in results]))
        r = results[best]
        rows.append({"instance": inst["name"], "method": method, "tuned": tuned,
                     "converged": r["converged"], "iterations": r["iterations"],
                     "policy_steps": r["policy_steps"], "param": params[best],
                     "tuning_runs": len(results) if tuned else 0,
                     "tuning_steps": int(sum(x["policy_steps"] for x in results)) if tuned else 0,
                     "fallbacks": r.get("fallbacks", 0), "seconds": seconds})
        print(f"  {method}: {seconds:.1f} s", file=sys.stderr, flush=True)

    def timed(fn, params):
        t0 = time.perf_counter()
        res = [fn(q) for q in params]
        return res, time.perf_counter() - t0

    for rule in DUAL_STEP_RULES:
        res, sec = timed(lambda _, r=rule: caid_loop(inst, crit(), rule_update(r), max_iter),
                         [None])
        record(f"caid-{rule}", False, res, [None], sec)
    if caid_only:  # the caller joins them with the peers' rows (finish_rows)
        return rows
    L = float(dg.theory.smoothness_bound(inst["problem"]))
    res, sec = timed(lambda e: caid_loop(inst, crit(), fixed_eta_update(e), max_iter), [1 / L])
    record("fixed eta=1/L_D", False, res, [1 / L], sec)
    res, sec = timed(lambda e: caid_loop(inst, crit(), fixed_eta_update(e), max_iter),
                     grid["eta"])
    record("fixed eta (grid)", True, res, grid["eta"], sec)
    res, sec = timed(lambda lr: caid_loop(inst, crit(), adam_log_lambda_update(lr), max_iter),
                     [0.1])
    record("adam log-lambda lr=0.1", False, res, [0.1], sec)
    res, sec = timed(lambda lr: caid_loop(inst, crit(), adam_log_lambda_update(lr), max_iter),
                     grid["adam"])
    record("adam log-lambda (grid)", True, res, grid["adam"], sec)
    res, sec = timed(lambda k: caid_loop(inst, crit(), pid_update(*k), max_iter),
                     [(0.0, 1.0, 0.0)])
    record("pid Ki=1", False, res, [(0.0, 1.0, 0.0)], sec)
    res, sec = timed(lambda k: caid_loop(inst, crit(), pid_update(*k), max_iter), grid["pid"])
    record("pid (grid)", True, res, grid["pid"], sec)
    cmax = 5 * max_iter
    for kind, duals in (("gda", grid["dual"]), ("nupi", grid["dual"]), ("alm", grid["alm"])):
        kps = grid["kp"] if kind == "nupi" else [0.0]
        params = list(itertools.product(grid["primal"], duals, kps))
        first = COOPER_UNTUNED[kind]
        res, sec = timed(lambda q, k=kind: cooper_run(inst, crit(), k, q[0], q[1], cmax,
                                                      kp=q[2]), [first])
        record(f"cooper-{kind} {first[:2] if kind != 'nupi' else first}", False, res, [first],
               sec)
        res, sec = timed(lambda q, k=kind: cooper_run(inst, crit(), k, q[0], q[1], cmax,
                                                      kp=q[2]), params)
        record(f"cooper-{kind} (grid)", True, res, params, sec)
    return finish_rows(rows, p_star, exact)


def finish_rows(rows: list[dict], p_star: float, exact: bool) -> list[dict]:
    """One instance's rows with ``ratio_to_best_tuned`` (iterations / the fewest of a tuned
    peer that converged) and the reference ``P*``."""
    tuned = [r["iterations"] for r in rows if r["tuned"] and r["converged"]]
    best = min(tuned) if tuned else None
    for r in rows:
        r["ratio_to_best_tuned"] = (r["iterations"] / best if best and r["converged"]
                                    else None)
        r["p_star"], r["p_star_exact"] = p_star, exact
    return rows


README_BEGIN, README_END = "<!-- dual_steps:begin -->", "<!-- dual_steps:end -->"


def table(rows: list[dict]) -> str:
    lines = ["| instance | method | tuned (runs) | converged | iterations | policy steps "
             "| vs best tuned | fallbacks |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r["ratio_to_best_tuned"] is None else f"{r['ratio_to_best_tuned']:.2f}x"
        tuned = f"yes ({r['tuning_runs']})" if r["tuned"] else "no"
        lines.append(f"| {r['instance']} | {r['method']} | {tuned} | "
                     f"{'yes' if r['converged'] else 'no'} | {r['iterations']} | "
                     f"{r['policy_steps']} | {ratio} | {r['fallbacks']} |")
    return "\n".join(lines)


def write_readme(rows: list[dict], path: Path) -> None:
    text = path.read_text()
    block = f"{README_BEGIN}\n{table(rows)}\n{README_END}"
    if README_BEGIN in text:
        head, rest = text.split(README_BEGIN, 1)
        text = head + block + rest.split(README_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Dual steps (`python benchmarks/dual_steps.py`)\n\n" \
            + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one tiny instance, tiny grids")
    ap.add_argument("--max-iter", type=int, default=None,
                    help="dual iterations per run (cooper: 5x this many rolls)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/dual_steps.json")
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--resume", action="store_true",
                    help="keep the instances already in --out and run the others")
    ap.add_argument("--instances", default=None, metavar="I,J,...",
                    help="run only these instances (0-based positions in the set; default: "
                    "all); with --resume, a run split over processes can be joined")
    ap.add_argument("--rerun-caid", action="store_true",
                    help="with --resume: rerun only the CAID rules' rows of the chosen "
                    "instances and keep their peers' rows from --out (the peers do not use "
                    "the dual step, e.g. after a change of its default)")
    args = ap.parse_args(argv)
    max_iter = args.max_iter or (30 if args.quick else 300)
    if max_iter < 1:
        raise SystemExit(f"--max-iter: must be >= 1, got {max_iter}")
    from dualgap.commands._io import check_output_path, dumps
    check_output_path(args.out, "--out")
    torch.set_num_threads(1)
    done = {}
    if args.resume and args.out.exists():  # finished instances are kept, the rest is run
        for r in json.loads(args.out.read_text())["rows"]:
            done.setdefault(r["instance"], []).append(r)
    rows = []
    t0 = time.perf_counter()

    def save() -> None:
        out = {"rows": rows, "inner_steps": INNER_STEPS, "max_iter": max_iter,
               "quick": args.quick, "seconds_this_run": time.perf_counter() - t0,
               "cooper": _cooper_version()}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(dumps(out))

    chosen = instances(args.quick)
    if args.instances is not None:
        try:
            picks = sorted({int(v) for v in args.instances.split(",")})
        except ValueError:
            raise SystemExit(f"--instances: comma-separated integers, got "
                             f"{args.instances!r}") from None
        if not picks or picks[0] < 0 or picks[-1] >= len(chosen):
            raise SystemExit(f"--instances: positions 0..{len(chosen) - 1}, got "
                             f"{args.instances!r}")
        chosen = [chosen[i] for i in picks]
    if args.rerun_caid and not (args.resume and done):
        raise SystemExit("--rerun-caid: needs --resume and an --out holding the peers' rows")
    picked = {inst["name"] for inst in chosen}
    for inst in instances(args.quick) if args.rerun_caid else chosen:
        if args.rerun_caid and inst["name"] in picked and inst["name"] in done:
            print(f"{inst['name']} (CAID rows):", file=sys.stderr, flush=True)
            kept = [r for r in done[inst["name"]] if not r["method"].startswith("caid-")]
            rows += finish_rows(run_instance(inst, args.quick, max_iter, caid_only=True)
                                + kept, kept[0]["p_star"], kept[0]["p_star_exact"])
            save()
            continue
        if inst["name"] in done:
            rows += done[inst["name"]]
            continue
        ti = time.perf_counter()
        print(f"{inst['name']}:", file=sys.stderr, flush=True)
        rows += run_instance(inst, args.quick, max_iter)
        print(f"  ({time.perf_counter() - ti:.1f} s)", file=sys.stderr, flush=True)
        save()  # after every instance: a killed run resumes
    save()
    if not args.no_readme:
        write_readme(rows, ROOT / "benchmarks/README.md")
    print(table(rows))
    return 0


def _cooper_version() -> str:
    import cooper
    return cooper.__version__


if __name__ == "__main__":
    sys.exit(main())
