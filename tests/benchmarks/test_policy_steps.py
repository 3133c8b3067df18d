"""benchmarks/policy_steps.py's pieces that need no pipeline run: the variant specs, the
exact-policy-step CAID and the tables (the pipeline runs themselves are the benchmark)."""

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("policy_steps",
                                                  ROOT / "benchmarks" / "policy_steps.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["policy_steps"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_variant_specs():
    ps = _module()
    # every variant names its labels (the default size's are distill), the DPO losses their rate
    assert ps.parse_variant("sampled") == ("sampled", {"labels": "sampled",
                                                       "learning_rate": 1e-3}, None)
    assert ps.parse_variant("sampled@3e-3") == ("sampled", {"labels": "sampled",
                                                            "learning_rate": 3e-3}, None)
    assert ps.parse_variant("allpairs-soft") == ("allpairs-soft", {"labels": "soft",
                                                                   "learning_rate": 1e-3}, None)
    assert ps.parse_variant("distill") == ("distill", {"labels": "distill", "pool": "fixed"},
                                           None)
    assert ps.parse_variant("distill-big") == ("distill-big", {
        "labels": "distill", "pool": "fixed"}, None)
    assert ps.parse_variant("onpolicy@2e-3") == ("onpolicy", {
        "labels": "distill", "pool": "onpolicy", "learning_rate": 2e-3}, None)
    assert ps.parse_variant("distill@3e-3") == ("distill",
                                                {"labels": "distill", "pool": "fixed",
                                                 "learning_rate": 3e-3}, None)
    assert ps.parse_variant("distill@3e-3:0.9") == ("distill", {
        "labels": "distill", "pool": "fixed", "learning_rate": 3e-3}, 0.9)
    assert ps.parse_variant("sampled:none") == ("sampled", {"labels": "sampled",
                                                            "learning_rate": 1e-3}, "none")
    for bad in ("sampled:1.5", "sampled:x", "sampled:0.2"):
        with pytest.raises(ValueError, match="^--variants: confidence"):
            ps.parse_variant(bad)
    with pytest.raises(ValueError, match="'hard' is not one of"):
        ps.parse_variant("hard")
    with pytest.raises(ValueError, match="learning rate 'x'"):
        ps.parse_variant("regress@x")


def test_exact_step_caid_and_tables():
    from dualgap import solve
    from dualgap.instances import random_problem

    ps = _module()
    pb = random_problem(0, 4, 6, 1)
    sol = solve(pb)
    task = SimpleNamespace(size=SimpleNamespace(iterations=3, dual_samples=32), problem=pb,
                           solution=sol)
    e = ps.exact_step_caid(task, range(3))
    assert e["n"] == 3 and 0 <= e["met"] <= 3 and len(e["runs"][0]["lam"]) == 3
    assert e["final_slack_mean"] == pytest.approx(np.mean([r["slack"][-1] for r in e["runs"]]))
    none = ps.exact_step_caid(task, range(3), 0)
    assert e["confidence"] == "auto" and none["confidence"] == 0
    # the margin moves the final lam up, to the feasible side
    assert e["final_slack_mean"] > none["final_slack_mean"]
    it = {"t": 0, "lam": [0.5], "inexactness": 0.04, "P*-J": 0.1, "slack": [-0.01],
          "slack_se": [0.02], "exact_step_slack": [0.0], "exact_step_P*-J": 0.05,
          "margin": [0.0123]}
    variant = {"scored_responses_per_prompt": 8, "seconds": 1.0, "iterates": [it]}
    res = {"size": "x", "describe": "d", "prompts": 4, "pairs_per_prompt": 4, "dual_samples": 32,
           "iterations": 1, "P*": 1.0, "lam*": [0.6], "exact_step_caid": [none, e],
           "seeds": {"0": {"sampled": variant,
                           "distill@3e-3": dict(variant, iterates=[dict(it, inexactness=0.01)]),
                           "sampled:none": dict(variant, iterates=[dict(it, inexactness=0.08)]),
                           "distill@3e-3:none": dict(variant, iterates=[
                               dict(it, inexactness=0.01)])},
                     "1": {"sampled": variant, "distill@3e-3": variant}}}
    lines = ps.table(res)
    text = "\n".join(lines)
    assert "| 0 | distill@3e-3 | 0.0100 | 4.00x |" in text
    assert "| distill@3e-3 | 2 | 0.0250 | 2.50x |" in text  # mean over the 2 seeds
    assert "| no |" in text and "| 0.0123 |" in text
    # the ratio is to the sampled variant with the same margin
    assert "| 0 | distill@3e-3:none | 0.0100 | 8.00x |" in text
    assert f"| auto | {e['met']}/3 |" in text and f"| 0 | {none['met']}/3 |" in text
