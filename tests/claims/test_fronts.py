"""Fig 1a and Fig 1b at a tiny size."""

import numpy as np

from dualgap.claims.fronts import FrontsConfig, _pattern, fig1a, fig1b

TINY = FrontsConfig(prompts=4, responses=5, seeds=2, thresholds=3, samples=(8, 32),
                    iterations=8, inner_steps=2, front_inner_steps=2)


def test_pattern_definition():
    assert _pattern(np.array([-0.1, 0.0, 0.2]))
    assert not _pattern(np.array([0.1, 0.0, 0.2]))
    assert not _pattern(np.array([-0.1, 0.0, -0.2]))


def test_fig1a_counts_and_errors():
    r = fig1a(TINY)
    assert r.holds + r.failed == TINY.seeds * len(TINY.samples) == r.instances
    for m in ("one-shot", "CAID exact dual steps", "CAID sampled dual steps"):
        for K in TINY.samples:
            e = np.asarray(r.details["errors"][m][K])
            assert e.shape == (TINY.seeds, TINY.thresholds) and np.all(np.isfinite(e))
            assert len(r.details["ci"][m][K]) == TINY.thresholds
    # the pattern count is recomputed from the stored errors (not a separate bookkeeping)
    for K in TINY.samples:
        e = np.asarray(r.details["errors"]["one-shot"][K])
        assert r.details["pattern"][K] == [bool(e[s, 0] < 0 < e[s, -1]) for s in range(2)]


def test_fig1b_one_class():
    r = fig1b(TINY, classes=("loglinear",), samples=16)
    assert r.holds + r.failed + r.undecided == TINY.thresholds
    pts = np.asarray(r.details["fronts"]["loglinear"]["CAID"])
    assert pts.shape == (TINY.seeds, TINY.thresholds, 2)
    front = r.details["fronts"]["loglinear"]["one-shot"]
    skipped = r.details["one-shot points skipped (b out of the samples' reach)"]
    assert sum(len(f) for f in front) + len(skipped) == TINY.seeds * (2 * TINY.thresholds + 1)
