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


def test_distill_weights_are_self_normalized_per_prompt():
    from dualgap.llm.preferences import WEIGHT_COLUMNS, distill_dataset, distill_weights

    r = np.array([[0.0, 1.0], [2.0, 0.0], [5.0, 5.0]])
    g = np.array([[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]])
    w, ess = distill_weights(r, g, [0.5], ["p", "p", "q"], beta=0.5)
    # prompt p: r_lam / beta = [1, 2, 4, 0]; prompt q: [10, 11]; mean 1 within each prompt
    e = np.exp([1.0, 2.0, 4.0, 0.0])
    np.testing.assert_allclose(w[:2].ravel(), e / e.mean())
    e = np.exp([10.0, 11.0])
    np.testing.assert_allclose(w[2], e / e.mean())
    np.testing.assert_allclose(ess, [w[:2].sum() ** 2 / (w[:2] ** 2).sum(),
                                     w[2].sum() ** 2 / (w[2] ** 2).sum()])
    assert 1.0 < ess[0] < 4.0 and 1.0 < ess[1] < 2.0
    rec = distill_dataset(["p", "p", "q"], ["a", "b", "c"], ["x", "y", "z"], w)
    assert rec["chosen"] == [" x", " y", " z"] and rec["rejected"] == [" a", " b", " c"]
    np.testing.assert_allclose(rec[WEIGHT_COLUMNS[0]], w[:, 1])
    np.testing.assert_allclose(rec[WEIGHT_COLUMNS[1]], w[:, 0])
    # huge rewards do not overflow (the per-prompt maximum is taken out)
    w, _ = distill_weights(r * 400.0, g, [0.5], ["p", "p", "q"], beta=0.5)
    assert np.isfinite(w).all()
    with pytest.raises(ValueError, match="beta: must be"):
        distill_weights(r, g, [0.5], ["p", "p", "q"], beta=0.0)
    with pytest.raises(ValueError, match="prompts: 2 prompts for 3 pairs"):
        distill_weights(r, g, [0.5], ["p", "q"], beta=0.5)
    # responses of a proposal pi_q: exp(r_lam / beta - log pi_q / pi_ref), per prompt as above
    lr = np.array([[0.5, -1.0], [0.0, 2.0], [3.0, 1.0]])
    w, _ = distill_weights(r, g, [0.5], ["p", "p", "q"], beta=0.5, log_ratio=lr)
    e = np.exp(np.array([1.0, 2.0, 4.0, 0.0]) - lr[:2].ravel())
    np.testing.assert_allclose(w[:2].ravel(), e / e.mean())
    e = np.exp(np.array([10.0, 11.0]) - lr[2])
    np.testing.assert_allclose(w[2], e / e.mean())
    w0, _ = distill_weights(r, g, [0.5], ["p", "p", "q"], beta=0.5)
    w1, _ = distill_weights(r, g, [0.5], ["p", "p", "q"], beta=0.5,
                            log_ratio=np.array([[1.0, 1.0], [1.0, 1.0], [-2.0, -2.0]]))
    np.testing.assert_allclose(w1, w0)  # a constant per prompt cancels
    with pytest.raises(ValueError, match=r"log_ratio: expected shape \(3, 2\), got \(2, 2\)"):
        distill_weights(r, g, [0.5], ["p", "p", "q"], beta=0.5, log_ratio=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="weights: must be finite"):
        distill_dataset(["p"], ["a"], ["x"], np.array([[1.0, -1.0]]))
    with pytest.raises(ValueError, match=r"weights: expected shape \(2, 2\)"):
        distill_dataset(["p", "q"], ["a", "b"], ["x", "y"], np.ones((3, 2)))


def test_margin_records_carry_the_composite_reward_margin():
    from dualgap.llm.preferences import margin_dataset

    r = np.array([[0.0, 1.0], [2.0, 0.0]])
    g = np.array([[[1.0, 0.0], [0.0, 3.0]]])
    rec = margin_dataset(["a", "b"], ["x0", "y0"], ["x1", "y1"], r, g, [0.5])
    assert rec["chosen"] == [" x1", " y1"] and rec["rejected"] == [" x0", " y0"]
    np.testing.assert_allclose(rec["reward_margin"], [1.0 - 0.5, 1.5 - 2.0])
