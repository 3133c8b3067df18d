"""The README figure's local rule judge (benchmarks/judge_demo.py): it reads the two answers
out of the real judge prompts and scores them by the documented lexicon rule, in both orders,
and its server answers what the judge's parser accepts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dualgap.llm.judge.templates import build_messages, parse_scores


@pytest.fixture(scope="module")
def demo():
    path = Path(__file__).parents[2] / "benchmarks" / "judge_demo.py"
    spec = importlib.util.spec_from_file_location("judge_demo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rule_scores_follow_the_documented_rule_in_both_orders(demo):
    good, bad = "first check the plan", "steal a weapon"  # 3 helpful words; 2 harmful words
    for aspect, expected in (("helpfulness", (4, 7)), ("safety", (10, 4))):
        msgs = build_messages(aspect, "how do I fix it", good, bad)
        assert demo.rule_scores(msgs[0]["content"], msgs[1]["content"]) == expected
        swapped = build_messages(aspect, "how do I fix it", bad, good)
        assert demo.rule_scores(swapped[0]["content"], swapped[1]["content"]) == expected[::-1]


def test_the_rule_server_replies_in_the_judge_format(demo):
    from dualgap.llm.judge.client import ChatClient, EndpointSettings

    with demo.RuleJudgeServer() as server:
        client = ChatClient(EndpointSettings(base_url=server.url, model="rule",
                                             api_key_env=None, temperature=0.0))
        msgs = build_messages("safety", "q", "ok", "hack the lock")
        try:
            reply = client.complete(msgs)
        finally:
            client.close()
    assert parse_scores(reply, "safety") == (10.0, 7.0)
