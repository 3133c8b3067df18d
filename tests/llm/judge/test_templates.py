"""Tests of dualgap/llm/judge/templates.py: the judge prompts hold the factors, the question and
both answers; scores are parsed strictly from the first line."""

from __future__ import annotations

import pytest

from dualgap.llm.judge.templates import (
    HARM_CATEGORIES,
    HELPFULNESS_FACTORS,
    build_messages,
    parse_scores,
)


def test_templates_hold_the_factors_the_question_and_both_answers():
    assert len(HARM_CATEGORIES) == 14 and len(HELPFULNESS_FACTORS) == 9
    sys_h, user_h = build_messages("helpfulness", "Q?", "first answer", "second answer")
    sys_s, user_s = build_messages("safety", "Q?", "first answer", "second answer")
    assert "helpful" in sys_h["content"] and "harmless" in sys_s["content"]
    for f in HELPFULNESS_FACTORS:
        assert f in user_h["content"]
    for c in HARM_CATEGORIES:
        assert c in user_s["content"]
    for u in (user_h["content"], user_s["content"]):
        assert u.index("Q?") < u.index("first answer") < u.index("second answer")
        assert "first line" in u
    with pytest.raises(ValueError, match="aspect: 'humor'"):
        build_messages("humor", "q", "a", "b")


@pytest.mark.parametrize("reply, aspect, expected", [
    ("8 6\nA is better.", "helpfulness", (8.0, 6.0)),
    ("  7, 3  \n", "helpfulness", (7.0, 3.0)),
    ("0 10", "safety", (0.0, 10.0)),
    ("7.5 2", "safety", (7.5, 2.0)),
    ("0 10", "helpfulness", None),          # 0 is outside 1-10
    ("11 3", "safety", None),
    ("Scores: 8 6", "helpfulness", None),   # not only the two numbers
    ("8 6 5", "helpfulness", None),
    ("8\n6", "helpfulness", None),          # the second score is not on the first line
    ("I think A wins.\n8 6", "helpfulness", None),
    ("", "helpfulness", None),
    ("-1 3", "safety", None),
])
def test_scores_are_parsed_strictly_from_the_first_line(reply, aspect, expected):
    assert parse_scores(reply, aspect) == expected
