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
  labels.

Per iteration: ``beta E KL(pi_t || pi_lam_t)`` (the step's inexactness, ``D(lam_t) -
L(pi_t, lam_t)``), ``P* - J(pi_t)`` and the exact slack.  Writes
``benchmarks/results/policy_steps.json`` and the ``policy_steps`` section of
``benchmarks/README.md`` (between its markers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("sampled", "soft", "allpairs-soft")
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


def run_variants(size: str, directory: Path, variants: tuple[str, ...], progress: bool) -> dict:
    from dualgap.llm.synthetic.config import get_size
    from dualgap.llm.synthetic.pipeline import run_method, write_pairs
    from dualgap.llm.synthetic.task import build_task

    sz = get_size(size)
    directory.mkdir(parents=True, exist_ok=True)
    task = build_task(sz, directory, progress=progress)
    sol = task.solution
    pool = write_pairs(task, directory / "pairs.jsonl")
    K = write_all_pairs(task, directory / "pairs_all.jsonl", sz.pairs_per_prompt, sz.seed)
    out: dict = {"size": sz.name, "describe": sz.describe(), "P*": sol.primal_value,
                 "lam*": sol.lam.tolist(), "beta": sz.beta, "iterations": sz.iterations,
                 "pairs_per_prompt": sz.pairs_per_prompt, "dual_samples": sz.dual_samples,
                 "prompts": task.language.num_prompts, "variants": {}}
    for v in variants:
        pairs = directory / "pairs_all.jsonl" if v == "allpairs-soft" else pool
        train = {} if v == "sampled" else {"labels": "soft"}
        t0 = time.perf_counter()
        tr = run_method(task, "caid", directory / "runs" / v, pairs, progress, train=train)
        secs = time.perf_counter() - t0
        steps = [json.loads(line).get("steps") for line in
                 (directory / "runs" / v / "metrics.jsonl").read_text().splitlines()
                 if json.loads(line).get("stage", "").startswith("policy_")]
        out["variants"][v] = {
            "scored_responses_per_prompt": K if v == "allpairs-soft" else 2 * sz.pairs_per_prompt,
            "optimizer_steps": steps, "seconds": secs,
            "iterates": [{"t": it.iteration, "lam": it.lam.tolist(),
                          "inexactness": it.lagrangian_gap,
                          "P*-J": sol.primal_value - it.objective,
                          "slack": it.slack.tolist(), "l1_to_optimum": it.l1_to_optimum}
                         for it in tr.iterates]}
        print(f"{v}: {secs:.0f} s, final P* - J {out['variants'][v]['iterates'][-1]['P*-J']:.4f}",
              flush=True)
    return out


def table(res: dict) -> list[str]:
    lines = [
        f"Size `{res['size']}` ({res['describe']}); {res['prompts']} prompts, "
        f"{res['pairs_per_prompt']} pairs per prompt per policy step (same optimizer steps in "
        f"every variant), {res['dual_samples']} dual samples per prompt, {res['iterations']} "
        f"CAID iterations; P* = {res['P*']:.4f}, lam* = "
        f"{', '.join(f'{v:.4f}' for v in res['lam*'])}. Inexactness = "
        "beta E KL(pi_t || pi_lam_t) = D(lam_t) - L(pi_t, lam_t), exact. A negative slack is a "
        "violated constraint; there a small P* - J is no success (J may exceed P* only off the "
        "feasible set).", "",
        "| variant | scored responses / prompt | t | lam_t | inexactness | P* - J(pi_t) "
        "| slack (exact) |", "|---|---|---|---|---|---|---|"]
    for v, d in res["variants"].items():
        for it in d["iterates"]:
            lines.append(
                f"| {v} | {d['scored_responses_per_prompt']} | {it['t']} "
                f"| {', '.join(f'{x:.4f}' for x in it['lam'])} | {it['inexactness']:.4f} "
                f"| {it['P*-J']:+.4f} | {', '.join(f'{x:+.4f}' for x in it['slack'])} |")
    base = res["variants"].get("sampled")
    if base:
        lines += ["", "| variant | mean inexactness | ratio to sampled | final P* - J "
                  "| final slack | seconds |", "|---|---|---|---|---|---|"]
        b = np.mean([it["inexactness"] for it in base["iterates"]])
        for v, d in res["variants"].items():
            m = np.mean([it["inexactness"] for it in d["iterates"]])
            last = d["iterates"][-1]
            lines.append(f"| {v} | {m:.4f} | {b / m:.2f}x | {last['P*-J']:+.4f} "
                         f"| {', '.join(f'{x:+.4f}' for x in last['slack'])} "
                         f"| {d['seconds']:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from dualgap.commands._io import check_output_path, dumps

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="default", help="synthetic size (default: %(default)s)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, of {VARIANTS} (default: all)")
    p.add_argument("--dir", default="/tmp/dualgap_policy_steps",
                   help="work directory (runs resume there; default: %(default)s)")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/policy_steps.json"),
                   help="JSON results (default: benchmarks/results/policy_steps.json)")
    p.add_argument("--readme", default=str(REPO / "benchmarks/README.md"),
                   help="README whose policy_steps section is rewritten ('' for none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        p.error(f"--variants: must be of {VARIANTS}, got {args.variants!r}")
    check_output_path(args.out, "--out")
    res = run_variants(args.size, Path(args.dir), variants, not args.no_progress)
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
