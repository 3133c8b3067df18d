"""The stochastic best-iterate theorem with nu > 0, tiny size."""

from dualgap.claims.stochastic import StochasticConfig, stochastic_best_iterate


def test_stochastic_tiny():
    cfg = StochasticConfig(prompts=3, responses=4, iterations=8, steps=(0.3,), samples=(4,),
                           seeds=2)
    r = stochastic_best_iterate(cfg)
    assert r.holds + r.failed == 1
    assert r.details["nu"] > 0
    (s,) = r.details["settings"]
    for seed in s["seeds"]:
        assert seed["eps_app"] >= 0 and seed["S2"] > 0
        assert seed["finite"] >= seed["asymptotic"]
    assert (r.holds == 1) == (s["mean gap"] <= s["finite-T bound"])
