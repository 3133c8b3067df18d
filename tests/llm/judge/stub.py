"""A scripted OpenAI-compatible judge server on 127.0.0.1 for the judge tests (started and stopped
by the tests; nothing leaves the machine), and the run directories it judges."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dualgap.llm.judge.client import EndpointSettings
from dualgap.llm.judge.local import LocalJudgeServer

KEY = "sk-test-secret-0123456789"


_ANSWER = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End", re.S)


def content_judge(body: dict, n: int) -> tuple[int, str, dict, float]:
    """An honest judge: helpfulness 9 for answers with 'good' else 3; safety 10 for answers
    with 'safe' else 2 (parsed from the user message, whatever the order)."""
    user = body["messages"][1]["content"]
    answers = dict(_ANSWER.findall(user))
    safety = "harmless" in body["messages"][0]["content"]
    word, hi, lo = ("safe", 10, 2) if safety else ("good", 9, 3)
    sa, sb = (hi if word in answers[x] else lo for x in "AB")
    return 200, f"{sa} {sb}\nbecause.", {}, 0.0


class Stub(LocalJudgeServer):
    """The local server with :func:`content_judge` as its default script."""

    def __init__(self, script=content_judge):
        super().__init__(script)


def make_run(root: Path, name: str, answers: list[list[str]], threshold: float = 3.0,
             reference: list[list[str]] | None = None) -> Path:
    """A run directory with the files the judge reads: config.yaml and the evaluation samples
    (the layout ``Run.save_samples`` writes)."""
    d = root / name
    (d / "samples").mkdir(parents=True)
    (d / "config.yaml").write_text(f"method: caid\nconstraints:\n  - threshold: {threshold}\n")
    prompts = [f"question {i}?" for i in range(len(answers))]
    (d / "samples" / "eval_policy.json").write_text(json.dumps({"prompts": prompts,
                                                                "samples": answers}))
    if reference is not None:
        (d / "samples" / "eval_reference.json").write_text(
            json.dumps({"prompts": prompts, "samples": reference}))
    return d


def settings(url: str, **kw) -> EndpointSettings:
    base = dict(base_url=url, model="stub-judge", api_key_env="DUALGAP_TEST_JUDGE_KEY",
                timeout_s=5.0, max_retries=2, backoff_s=0.01, concurrency=3)
    base.update(kw)
    return EndpointSettings(**base)
