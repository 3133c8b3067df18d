"""Several constraints with nu > 0, tiny size."""

import numpy as np

from dualgap.claims.multi import MultiConfig, multi_constraint


def test_multi_constraint_tiny():
    cfg = MultiConfig(prompts=3, responses=5, constraints=(2, 3), seeds=1, iterations=10,
                      inner_steps=2, one_shot_samples=16, pd_iterations=20, pd_steps=(0.1, 1.0))
    r = multi_constraint(cfg)
    assert r.holds + r.failed == 2 == r.instances
    for run in r.details["runs"]:
        assert run["nu"] > 0
        for name in ("CAID", "one-shot", "primal-dual (tuned)"):
            s = np.asarray(run[name]["slack"])
            assert s.shape == (run["m"],)
            assert run[name]["violation"] == max(0.0, float(-s.min()))  # same definition
        assert run["primal-dual step (x 1/L_D)"] in cfg.pd_steps
    caid_ok = sum(run["CAID"]["violation"] <= cfg.tol for run in r.details["runs"])
    assert caid_ok == r.holds
