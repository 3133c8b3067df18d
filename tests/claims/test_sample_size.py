"""The one-shot sample-size grid, tiny size."""

import pytest

from dualgap.claims.sample_size import SampleSizeConfig, one_shot_sample_size


def test_grid_needs_the_papers_point():
    with pytest.raises(ValueError, match="600"):
        one_shot_sample_size(SampleSizeConfig(prompts=(50,), samples=(64,)))


def test_sample_size_tiny():
    cfg = SampleSizeConfig(population=300, responses=8, prompts=(30, 600), samples=(8, 64),
                           reps=3)
    r = one_shot_sample_size(cfg)
    grid = {(c["N"], c["K"]): c for c in r.details["grid"]}
    assert set(grid) == {(30, 8), (30, 64), (600, 8), (600, 64)}
    for c in grid.values():
        assert c["draws"] + c["infeasible"] == 3
    assert r.holds + r.failed + r.undecided == 2
    # more prompts and samples: a smaller multiplier error (RMS over the draws)
    assert grid[(600, 64)]["rms_rel_error"] < grid[(30, 8)]["rms_rel_error"]
