"""Policy-step variants of the llm pipeline's CAID on the synthetic language, at equal budget
(issue 13, "a policy step closer to the exact maximizer").

    python benchmarks/policy_steps.py                    # default size, a few minutes
    python benchmarks/policy_steps.py --size tiny --out /tmp/p.json --readme ''

Every variant runs the pipeline's own ``caid`` (:func:`dualgap.llm.synthetic.run_method`: TRL's
DPO, the dual step on generated samples) from the same reference, with the same number of
pairs per prompt (so the same optimizer steps), the same dual samples and the same seed; every
iterate's exact policy is set beside ``pi_lam_t`` and ``pi*``:

* ``sampled``: the pool of :func:`~dualgap.llm.synthetic.write_pairs` (``pairs_per_prompt``
  independent pairs ``y_0, y_1 ~ pi_ref`` per prompt, ``2 x pairs_per_prompt`` scored
  responses), labels ``~ Bernoulli(sigmoid(delta r_lam))`` (the paper);
* ``soft``: the same pool, the BT cross-entropy at ``p = sigmoid(delta r_lam)``
  (``train.labels: soft``);
* ``allpairs-soft``: ``K`` responses per prompt (the smallest ``K`` with
  ``K (K - 1) / 2 >= pairs_per_prompt``; far fewer scored responses), the first
  ``pairs_per_prompt`` of their pairs (:func:`dualgap.llm.preferences.all_pairs` order), soft
  labels;
* ``distill``: the same pool, every response a sample of ``pi_lam_t`` with the self-normalized
  weight ``exp(r_lam / beta)`` per prompt, weighted NLL (``train.labels: distill``), on DPO's
  batches (so the same optimizer steps);
* ``onpolicy``: distill whose pool, from iteration 1, is as many fresh samples of the current
  iterate ``pi_t`` per prompt, weighted ``exp(r_lam / beta) pi_ref / pi_t`` (``train.pool:
  onpolicy``, :func:`dualgap.llm.policy_step.onpolicy_pool`; same pairs and optimizer steps,
  ``2 x pairs_per_prompt`` scored responses per prompt per step);
* ``distill-big``: distill on one fixed pool of ``iterations x pairs_per_prompt`` pairs per
  prompt at ``dpo_epochs / iterations`` epochs: as many scored responses in all as
  ``onpolicy`` and the same optimizer steps, the peer at equal *total* scoring budget.

Per iteration: ``beta E KL(pi_t || pi_lam_t)`` (the step's inexactness, ``D(lam_t) -
L(pi_t, lam_t)``), ``P* - J(pi_t)`` and the exact slack; beside them what an *exact* policy
step at the same ``lam_t`` would give (``pi_lam_t``'s slack and ``P* - J``), and the standard
error of the dual step's sampled slack at ``pi_t`` (``K`` samples per prompt).  Whether the
dual step alone explains an infeasible end is measured by the core's CAID with the exact
policy step (:func:`dualgap.algorithms.caid`, class None) and the same dual step (``auto``),
sample sizes and iterations, over ``--exact-seeds`` seeds, at each margin level of
``--exact-confidence``.  "Constraint met" means exact slack ``>= 0`` (no tolerance).
A variant ``NAME[@LR]:CONF`` runs with ``dual.confidence: CONF`` (the dual step's margin,
``none`` for none; without ``:CONF`` the config's default), and the margin each dual step used
is read from the run's ``lam_history.jsonl``.  ``--seeds`` repeats the pipeline variants
with other run seeds (the pool, labels, samples and DPO order change; the task and ``pi_ref``
do not; ``--seed-variants`` names the variants repeated there).  Writes
``benchmarks/results/policy_steps.json`` and the ``policy_steps`` section of
``benchmarks/README.md`` (between its markers).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("sampled", "soft", "allpairs-soft", "regress", "distill", "onpolicy", "distill-big")
#: the learning rate of a variant without ``@LR`` where it is not the size's (the default size's
#: is distill's 3e-3): the paper's sampled labels and the other DPO losses at the rate their
#: rows were measured at (sessions 3-4; sampled at 3e-3 was far worse, 0.239 against 0.083).
#: Every variant names its ``train.labels`` (the size's ``dpo_labels`` is distill).
BASE_LR = {"sampled": 1e-3, "soft": 1e-3, "allpairs-soft": 1e-3, "regress": 1e-3}


def parse_variant(spec: str) -> tuple[str, dict, float | str | None]:
    """``NAME[@LR][:CONF]`` (``LR`` the step's learning rate instead of the size's, ``CONF``
    the dual step's ``dual.confidence`` instead of the config's default, e.g. ``none``): the
    variant, its ``train.*`` keys and its confidence (None: the default)."""
    spec, _, conf = spec.partition(":")
    level: float | str | None = None
    if conf:
        from dualgap.dual_samples import check_confidence
        try:
            level = "none" if conf == "none" else float(conf)
            if level != "none":
                check_confidence(level, "--variants")
        except ValueError:
            raise ValueError(f"--variants: confidence {conf!r} of {spec!r} is not 'none' or a "
                             "level in [0.5, 1)") from None
    name, _, lr = spec.partition("@")
    if name not in VARIANTS:
        raise ValueError(f"--variants: {name!r} is not one of {VARIANTS}")
    train = {"labels": "distill" if name in ("onpolicy", "distill-big") else
             "soft" if name == "allpairs-soft" else name}
    if name in ("distill", "onpolicy", "distill-big"):  # the size's pool is onpolicy
        train["pool"] = "onpolicy" if name == "onpolicy" else "fixed"
    if name in BASE_LR:
        train["learning_rate"] = BASE_LR[name]
    if lr:
        try:
            train = {**train, "learning_rate": float(lr)}
        except ValueError:
            raise ValueError(f"--variants: learning rate {lr!r} of {spec!r} is no number") from None
    return name, train, level


@contextmanager
def dual_confidence(level: float | str | None):
    """Runs of :func:`run_method` inside get ``dual.confidence = level`` (None: the config's
    default): ``run_method`` builds its config by ``pipeline.pipeline_config``, which takes
    ``train.*`` keys only, so its result is amended here."""
    from dualgap.llm.synthetic import pipeline

    if level is None:
        yield
        return
    original = pipeline.pipeline_config

    def amended(*args, **kwargs):
        cfg = original(*args, **kwargs)
        cfg.dual.confidence = level
        return cfg

    pipeline.pipeline_config = amended
    try:
        yield
    finally:
        pipeline.pipeline_config = original
BEGIN, END = "<!-- policy_steps:begin -->", "<!-- policy_steps:end -->"


def write_all_pairs(task, path: Path, pairs_per_prompt: int, seed: int) -> int:
    """The DPO pool in the schema of ``write_pairs`` from ``K`` responses per prompt
    (``y ~ pi_ref`` conditioned on non-empty, as ``write_pairs`` draws): the first
    ``pairs_per_prompt`` pairs of :func:`all_pairs` ``(K)``.  Returns ``K``."""
    from dualgap.empirical import sample_responses
    from dualgap.llm.preferences import all_pairs

    K = 2
    while K * (K - 1) // 2 < pairs_per_prompt:
        K += 1
    ij = all_pairs(K)[:pairs_per_prompt]
    pb, lang = task.problem, task.language
    cond = pb.reference.copy()
    cond[:, 0] = 0.0
    cond /= cond.sum(axis=1, keepdims=True)
    draws = sample_responses(cond, K, np.random.default_rng([seed, 13]))  # size = (X, K)
    r, g = pb.reward, pb.utilities[0]
    with open(path, "w") as f:
        for x in range(lang.num_prompts):
            for i, j in ij:
                y0, y1 = int(draws[x, i]), int(draws[x, j])
                f.write(json.dumps({
                    "prompt": lang.prompts[x],
                    "response_0": lang.responses[y0], "response_1": lang.responses[y1],
                    "is_response_0_safe": bool(g[x, y0] >= 0),
                    "is_response_1_safe": bool(g[x, y1] >= 0),
                    "better_response_id": int(r[x, y1] > r[x, y0]),
                    "safer_response_id": int(g[x, y1] > g[x, y0])}) + "\n")
    return K


def exact_step_caid(task, seeds: range, confidence: float | str = "auto") -> dict:
    """The core's CAID with the exact policy step ``pi_t = pi_lam_t`` and the pipeline's dual
    step (``auto``, ``dual_samples`` per prompt, one-shot start from as many reference samples,
    as many iterations) with the margin ``confidence``, one run per seed: final ``lam``, exact
    slack and ``P* - J``."""
    from dualgap.algorithms import caid

    sz, pb, sol = task.size, task.problem, task.solution
    runs = []
    for s in seeds:
        tr = caid(pb, None, iterations=sz.iterations - 1, step_size="auto",
                  confidence=confidence, samples=sz.dual_samples,
                  one_shot_samples=sz.dual_samples, seed=int(s))
        runs.append({"seed": int(s), "lam": np.asarray(tr.lam)[:, 0].tolist(),
                     "slack": np.asarray(tr.slack)[:, 0].tolist(),
                     "P*-J": (sol.primal_value - np.asarray(tr.objective)).tolist()})
    final = np.array([r["slack"][-1] for r in runs])
    pj = np.array([r["P*-J"][-1] for r in runs])
    return {"confidence": confidence, "runs": runs, "met": int((final >= 0).sum()),
            "n": len(runs), "final_slack_min": float(final.min()),
            "final_P*-J_max": float(pj.max()),
            "final_slack_mean": float(final.mean()),
            "final_lam_mean": float(np.mean([r["lam"][-1] for r in runs])),
            "final_P*-J_mean": float(np.mean([r["P*-J"][-1] for r in runs]))}


def _iterate_row(task, it, pi: np.ndarray) -> dict:
    """One iterate's exact figures, and those of the exact policy step at its ``lam_t``."""
    from dualgap.dual import constraint_slack, lagrangian_policy, objective

    pb, sol = task.problem, task.solution
    K = task.size.dual_samples
    exact = lagrangian_policy(pb, it.lam)
    # the dual step's sampled slack: K draws per prompt, rho-weighted (exact variance at pi_t)
    h = pb.utilities  # size = (m, X, Y)
    mean = np.einsum("xy,ixy->ix", pi, h)
    var = np.einsum("xy,ixy->ix", pi, h ** 2) - mean ** 2
    se = np.sqrt((pb.prompt_weights ** 2 * var).sum(axis=1) / K)
    return {"t": it.iteration, "lam": it.lam.tolist(), "inexactness": it.lagrangian_gap,
            "P*-J": sol.primal_value - it.objective, "slack": it.slack.tolist(),
            "slack_se": se.tolist(), "l1_to_optimum": it.l1_to_optimum,
            "exact_step_slack": constraint_slack(pb, exact).tolist(),
            "exact_step_P*-J": sol.primal_value - objective(pb, exact)}


def run_variants(size: str, directory: Path, variants: tuple[str, ...], progress: bool,
                 seeds: tuple[int, ...] = (), exact_seeds: int = 20,
                 seed_variants: tuple[str, ...] | None = None,
                 exact_confidence: tuple[float | str, ...] = ("auto",)) -> dict:
    from dualgap.llm.synthetic.config import get_size
    from dualgap.llm.synthetic.pipeline import run_method, write_pairs
    from dualgap.llm.synthetic.task import build_task

    sz = get_size(size)
    directory.mkdir(parents=True, exist_ok=True)
    task = build_task(sz, directory, progress=progress)
    sol = task.solution
    out: dict = {"size": sz.name, "describe": sz.describe(), "P*": sol.primal_value,
                 "lam*": sol.lam.tolist(), "beta": sz.beta, "iterations": sz.iterations,
                 "pairs_per_prompt": sz.pairs_per_prompt, "dual_samples": sz.dual_samples,
                 "prompts": task.language.num_prompts, "seeds": {},
                 "exact_step_caid": [exact_step_caid(task, range(exact_seeds), c)
                                     for c in exact_confidence]}
    for k, seed in enumerate(seeds or (sz.seed,)):
        base = directory if seed == sz.seed else directory / f"seed{seed}"
        pool = write_pairs(task, base / "pairs.jsonl", seed=seed)
        big = None  # distill-big's pool, written when a variant needs it
        K = write_all_pairs(task, base / "pairs_all.jsonl", sz.pairs_per_prompt, seed)
        res: dict = {}
        for v in (variants if k == 0 or seed_variants is None else seed_variants):
            name, train, level = parse_variant(v)
            pairs = base / "pairs_all.jsonl" if name == "allpairs-soft" else pool
            if name == "distill-big":
                if big is None:
                    big = write_pairs(task, base / "pairs_big.jsonl",
                                      pairs_per_prompt=sz.iterations * sz.pairs_per_prompt,
                                      seed=seed)
                pairs = big
                train = {**train, "epochs_per_iteration": sz.dpo_epochs / sz.iterations}
            with dual_confidence(level):
                tr = run_method(task, "caid", base / "runs" / v, pairs, progress, train=train,
                                seed=seed)
            steps = {int(r["iteration"]): r["dual_step"] for r in map(json.loads, (
                base / "runs" / v / "lam_history.jsonl").read_text().splitlines())
                if r.get("dual_step")}
            secs = float(sum(tr.timing.values()))  # the run's own stages (a reused run's too)
            metrics = [json.loads(line) for line in
                       (base / "runs" / v / "metrics.jsonl").read_text().splitlines()]
            policy = [m for m in metrics if m.get("stage", "").startswith("policy_")]
            rows = [_iterate_row(task, it, pi)
                    for it, pi in zip(tr.iterates, tr.policies, strict=True)]
            for row in rows:  # the margin of the dual step that gave lam_t (t = 0: one-shot)
                row["margin"] = (steps[row["t"]].get("margin") if row["t"] in steps else None)
                row["confidence"] = (steps[row["t"]].get("confidence") if row["t"] in steps
                                     else None)
            res[v] = {
                # in all, over the run's policy steps (onpolicy: 2 x pairs_per_prompt per step)
                "scored_responses_per_prompt": K if name == "allpairs-soft"
                else 2 * sz.pairs_per_prompt * (sz.iterations if name in ("onpolicy",
                                                                          "distill-big") else 1),
                "optimizer_steps": [m.get("steps") for m in policy],
                "ess_min": [m.get("ess_min") for m in policy],
                "ess_mean": [m.get("ess_mean") for m in policy],
                "seconds": secs, "iterates": rows}
            print(f"seed {seed} {v}: {secs:.0f} s, final P* - J {rows[-1]['P*-J']:.4f}, "
                  f"slack {rows[-1]['slack'][0]:+.4f}", flush=True)
        out["seeds"][str(seed)] = res
    return out


def _f(xs) -> str:
    return ", ".join(f"{x:+.4f}" for x in xs)


def table(res: dict) -> list[str]:
    lines = [
        f"Size `{res['size']}` ({res['describe']}); {res['prompts']} prompts, "
        f"{res['pairs_per_prompt']} pairs per prompt per policy step (same optimizer steps in "
        f"every variant), {res['dual_samples']} dual samples per prompt, {res['iterations']} "
        f"CAID iterations; P* = {res['P*']:.4f}, lam* = "
        f"{', '.join(f'{v:.4f}' for v in res['lam*'])}. Inexactness = "
        "beta E KL(pi_t || pi_lam_t) = D(lam_t) - L(pi_t, lam_t), exact. A negative slack is a "
        "violated constraint; there a small P* - J is no success (J may exceed P* only off the "
        "feasible set). \"met\" = exact slack >= 0, no tolerance. \"exact step\": "
        "pi_lam_t, the exact maximizer at the same lam_t; SE: standard error of the dual "
        "step's sampled slack at pi_t; margin: z SE of the dual step that gave lam_t (its "
        "`dual.confidence`; `:none` in a variant's name = no margin, else the default).", ""]
    first = next(iter(res["seeds"]))
    lines += [f"Per iteration, seed {first}:", "",
              "| variant | scored responses / prompt (in all) | t | lam_t | inexactness "
              "| P* - J(pi_t) | slack (exact) | SE | margin | exact step: slack "
              "| exact step: P* - J |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for v, d in res["seeds"][first].items():
        for it in d["iterates"]:
            lines.append(
                f"| {v} | {d['scored_responses_per_prompt']} | {it['t']} "
                f"| {', '.join(f'{x:.4f}' for x in it['lam'])} | {it['inexactness']:.4f} "
                f"| {it['P*-J']:+.4f} | {_f(it['slack'])} "
                f"| {', '.join(f'{x:.4f}' for x in it['slack_se'])} "
                f"| {', '.join(f'{x:.4f}' for x in it.get('margin') or []) or '-'} "
                f"| {_f(it['exact_step_slack'])} | {it['exact_step_P*-J']:+.4f} |")
    lines += ["", "| seed | variant | mean inexactness | ratio to sampled | final lam "
              "| final P* - J | final slack | met | pipeline s |",
              "|---|---|---|---|---|---|---|---|---|"]
    agg: dict = {}
    for seed, variants in res["seeds"].items():
        for v, d in variants.items():
            # the ratio's base: the sampled variant with the same margin, else the first one
            same = [u for u in variants if u.startswith("sampled")
                    and u.partition(":")[2] == v.partition(":")[2]]
            base = variants[same[0]] if same else next(
                (d for u, d in variants.items() if u.startswith("sampled")), None)
            b = np.mean([it["inexactness"] for it in base["iterates"]]) if base else np.nan
            m = np.mean([it["inexactness"] for it in d["iterates"]])
            last = d["iterates"][-1]
            met = min(last["slack"]) >= 0
            a = agg.setdefault(v, {"m": [], "ratio": [], "pj": [], "slack": [], "met": 0})
            a["m"].append(m)
            a["ratio"].append(b / m)
            a["pj"].append(last["P*-J"])
            a["slack"].append(min(last["slack"]))
            a["met"] += int(met)
            lines.append(f"| {seed} | {v} | {m:.4f} | {b / m:.2f}x "
                         f"| {', '.join(f'{x:.4f}' for x in last['lam'])} | {last['P*-J']:+.4f} "
                         f"| {_f(last['slack'])} | {'yes' if met else 'no'} "
                         f"| {d['seconds']:.0f} |")
    if len(res["seeds"]) > 1:
        lines += ["", "Mean over the seeds each variant ran (ratios per seed, then averaged):",
                  "", "| variant | seeds | mean inexactness | ratio to sampled | final P* - J "
                  "| final slack (min) | met |", "|---|---|---|---|---|---|---|"]
        for v, a in agg.items():
            n = len(a["m"])
            lines.append(f"| {v} | {n} | {np.mean(a['m']):.4f} | {np.mean(a['ratio']):.2f}x "
                         f"| {np.mean(a['pj']):+.4f} | {np.mean(a['slack']):+.4f} "
                         f"| {a['met']}/{n} |")
    es = res["exact_step_caid"]
    es = [es] if isinstance(es, dict) else es
    lines += ["", f"The same dual step with the exact policy step (core `caid`, class None, "
              f"{res['dual_samples']} samples per prompt, {res['iterations']} iterates, "
              f"{es[0]['n']} seeds), per margin level `confidence`:", "",
              "| confidence | met | final slack mean | final slack min | final lam mean "
              "| P* - J mean | P* - J max |", "|---|---|---|---|---|---|---|"]
    for e in es:
        lines.append(f"| {e.get('confidence', 'auto')} | {e['met']}/{e['n']} "
                     f"| {e['final_slack_mean']:+.4f} | {e.get('final_slack_min', np.nan):+.4f} "
                     f"| {e['final_lam_mean']:.4f} | {e['final_P*-J_mean']:+.4f} "
                     f"| {e.get('final_P*-J_max', np.nan):+.4f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from dualgap.commands._io import check_output_path, dumps

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="default", help="synthetic size (default: %(default)s)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, of {VARIANTS}, each optionally NAME@LR for "
                   "another learning rate and NAME[@LR]:CONF for another dual.confidence "
                   "('none': no margin) (default: all, at the size's rate and the default "
                   "margin); ratios are to the sampled variant with the same :CONF, else the "
                   "first sampled one")
    p.add_argument("--dir", default="/tmp/dualgap_policy_steps",
                   help="work directory (runs resume there; default: %(default)s)")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/policy_steps.json"),
                   help="JSON results (default: benchmarks/results/policy_steps.json)")
    p.add_argument("--readme", default=str(REPO / "benchmarks/README.md"),
                   help="README whose policy_steps section is rewritten ('' for none)")
    p.add_argument("--seeds", default="",
                   help="comma-separated run seeds (default: the size's seed only)")
    p.add_argument("--seed-variants", default="",
                   help="the variants repeated on the seeds after the first (default: all of "
                   "--variants)")
    p.add_argument("--exact-seeds", type=int, default=20,
                   help="seeds of the exact-policy-step CAID (default: %(default)s)")
    p.add_argument("--exact-confidence", default="auto",
                   help="comma-separated margin levels of the exact-policy-step CAID ('auto', "
                   "0 = none, or levels in [0.5, 1); default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    if not variants:
        p.error(f"--variants: must be of {VARIANTS}, got {args.variants!r}")
    seed_variants = tuple(v for v in args.seed_variants.split(",") if v) or None
    for v in variants + (seed_variants or ()):
        try:
            parse_variant(v)
        except ValueError as exc:
            p.error(str(exc))
    from dualgap.dual_samples import check_confidence
    levels: list[float | str] = []
    for c in (x for x in args.exact_confidence.split(",") if x):
        try:
            levels.append(c if c == "auto" else check_confidence(float(c), "--exact-confidence")
                          or 0.0)
        except ValueError:
            p.error(f"--exact-confidence: 'auto', 0 or levels in [0.5, 1), got {c!r}")
    check_output_path(args.out, "--out")
    try:
        seeds = tuple(int(x) for x in args.seeds.split(",") if x)
    except ValueError:
        p.error(f"--seeds: comma-separated integers, got {args.seeds!r}")
    if args.exact_seeds < 1:
        p.error(f"--exact-seeds: must be >= 1, got {args.exact_seeds}")
    res = run_variants(args.size, Path(args.dir), variants, not args.no_progress, seeds,
                       args.exact_seeds, seed_variants, tuple(levels) or ("auto",))
    Path(args.out).write_text(dumps(res))
    lines = table(res)
    print("\n".join(lines))
    if args.readme:
        readme = Path(args.readme)
        text = readme.read_text()
        block = "\n".join([BEGIN, *lines, END])
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = (text.rstrip("\n") + "\n\n## Policy steps (`python benchmarks/policy_steps.py`)"
                    "\n\n" + block + "\n")
        readme.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
