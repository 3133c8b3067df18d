"""Building pseudo-preferences: soft-label records and all pairs of K responses (moved here
from test_policy_step.py)."""

import numpy as np
import pytest
from scipy.special import expit

from dualgap.llm.preferences import (
    all_pairs,
    all_pairs_soft_dataset,
    preference_probabilities,
    soft_preference_dataset,
)


def test_soft_records_put_y1_first_with_its_probability():
    r = np.array([[0.0, 1.0], [2.0, 0.0]])
    g = np.array([[[1.0, 0.0], [0.0, 0.0]]])
    p = preference_probabilities(r, g, [0.5])
    rec = soft_preference_dataset(["a", "b"], ["x0", "y0"], ["x1", "y1"], p)
    assert rec["chosen"] == [" x1", " y1"] and rec["rejected"] == [" x0", " y0"]
    np.testing.assert_allclose(rec["preference_probability"], [expit(0.5), expit(-2.0)])
    with pytest.raises(ValueError, match="probabilities: must lie in"):
        soft_preference_dataset(["a"], ["x"], ["y"], [1.2])
    with pytest.raises(ValueError, match="differ in length"):
        soft_preference_dataset(["a"], ["x"], ["y"], [0.2, 0.3])


def test_all_pairs_of_k_responses():
    assert all_pairs(3).tolist() == [[0, 1], [0, 2], [1, 2]]
    with pytest.raises(ValueError, match="K >= 2"):
        all_pairs(1)
    r = np.array([[0.0, 1.0, 3.0], [1.0, 1.0, 0.0]])
    g = np.zeros((1, 2, 3))
    rec = all_pairs_soft_dataset(["p", "q"], [["a", "b", "c"], ["d", "e", "f"]], r, g, [1.0])
    assert len(rec["prompt"]) == 6 and rec["prompt"][:3] == ["p"] * 3
    # pair (i, j): chosen = y_j with P = sigmoid(r_lam(y_j) - r_lam(y_i))
    assert rec["chosen"][1] == " c" and rec["rejected"][1] == " a"
    np.testing.assert_allclose(rec["preference_probability"],
                               expit([1.0, 3.0, 2.0, 0.0, -1.0, -1.0]))
    with pytest.raises(ValueError, match="responses: expected 2 lists"):
        all_pairs_soft_dataset(["p", "q"], [["a", "b", "c"], ["d"]], r, g, [1.0])
