"""Validation of AlignmentProblem: every bad input raises ValueError naming the field."""

import numpy as np
import pytest

from dualgap import AlignmentProblem
from dualgap.instances import random_problem


def _base(**over):
    X, Y, m = 3, 4, 2
    rng = np.random.default_rng(0)
    kw = dict(
        reward=rng.normal(size=(X, Y)),
        utilities=rng.normal(size=(m, X, Y)),
        thresholds=np.zeros(m),
        beta=0.5,
        reference=np.full((X, Y), 1.0 / Y),
    )
    kw.update(over)
    return kw


BAD = [
    ("reward", dict(reward=np.zeros(4)), "reward: expected 2 dimensions"),
    ("reward", dict(reward=np.full((3, 4), np.nan)), "reward: 12 non-finite"),
    ("utilities", dict(utilities=np.zeros((2, 3, 5))), "utilities: shape"),
    ("utilities", dict(utilities=np.full((2, 3, 4), np.inf)), "utilities: 24 non-finite"),
    ("thresholds", dict(thresholds=np.zeros(3)), "thresholds: shape"),
    ("thresholds", dict(thresholds=[np.nan, 0.0]), "thresholds: 1 non-finite"),
    ("beta", dict(beta=0.0), "beta: must be a positive"),
    ("beta", dict(beta=-1.0), "beta: must be a positive"),
    ("beta", dict(beta=np.inf), "beta: must be a positive"),
    ("beta", dict(beta="x"), "beta: must be a positive"),
    ("reference", dict(reference=np.full((3, 4), 0.3)), "reference: row x = 0 sums to 1.2"),
    ("reference", dict(reference=np.array([[1.5, -0.5, 0, 0]] * 3)), "reference: negative"),
    ("reference", dict(reference=np.full((3, 5), 0.2)), "reference: shape"),
    ("prompt_weights", dict(prompt_weights=np.array([0.5, 0.5, 0.5])), "prompt_weights: sum"),
    ("prompt_weights", dict(prompt_weights=np.array([1.5, -0.5, 0.0])), "prompt_weights: negative"),
    ("prompt_weights", dict(prompt_weights=np.ones(2) / 2), "prompt_weights: shape"),
    ("relative", dict(relative="yes"), "relative: must be a bool"),
    ("names", dict(names=("a",)), "names: 1 names for m = 2"),
]


@pytest.mark.parametrize("field,over,message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_names_field(field, over, message):
    with pytest.raises(ValueError) as err:
        AlignmentProblem(**_base(**over))
    assert message in str(err.value)
    assert str(err.value).startswith(field)


def test_unconstrained_and_offsets():
    p = AlignmentProblem(**_base(utilities=np.zeros((0, 3, 4)), thresholds=[]))
    assert p.num_constraints == 0 and p.offsets.shape == (0,)
    q = AlignmentProblem(**_base(thresholds=[0.1, -0.2]))
    e_ref = np.einsum("x,xy,ixy->i", q.prompt_weights, q.reference, q.utilities)
    np.testing.assert_allclose(q.offsets, e_ref + [0.1, -0.2])
    np.testing.assert_allclose(q.as_absolute().offsets, q.offsets)
    assert not q.as_absolute().relative


def test_npz_roundtrip_and_errors(tmp_path):
    p = random_problem(3, 4, 5, 2, support_fraction=0.6)
    p.save(tmp_path / "p.npz")
    q = AlignmentProblem.load(tmp_path / "p.npz")
    for f in ("reward", "utilities", "thresholds", "reference", "prompt_weights"):
        np.testing.assert_array_equal(getattr(p, f), getattr(q, f))
    assert (q.beta, q.relative, q.names) == (p.beta, p.relative, p.names)
    np.savez(tmp_path / "extra.npz", reward=p.reward, reference=p.reference, beta=0.1, betta=1.0)
    with pytest.raises(ValueError, match="unknown field.*betta"):
        AlignmentProblem.load(tmp_path / "extra.npz")
    np.savez(tmp_path / "missing.npz", reward=p.reward, beta=0.1)
    with pytest.raises(ValueError, match="missing required field 'reference'"):
        AlignmentProblem.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="does not exist"):
        AlignmentProblem.load(tmp_path / "nope.npz")
    np.savez(tmp_path / "vec.npz", reward=p.reward, reference=p.reference, beta=[0.1, 0.2])
    with pytest.raises(ValueError, match="field .beta. must be a scalar"):
        AlignmentProblem.load(tmp_path / "vec.npz")
