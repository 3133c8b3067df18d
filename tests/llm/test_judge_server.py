"""``dualgap llm judge`` against a scripted OpenAI-compatible stub on 127.0.0.1 (started and
stopped by the tests; nothing leaves the machine): position swaps, malformed replies, 429 then
success, 401, timeouts, the cache, and a killed run that resumes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dualgap.errors import UserError
from dualgap.llm.judge.client import EndpointSettings
from dualgap.llm.judge.report import format_results, judge_runs

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


class Stub:
    """A threaded HTTP server answering POST /v1/chat/completions from ``script(body, n)``
    (``n``: the request's index) -> ``(status, reply text, headers, delay seconds)``."""

    def __init__(self, script=content_judge):
        self.script = script
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    n = len(stub.bodies)
                    stub.bodies.append(body)
                    stub.auth.append(self.headers.get("Authorization"))
                status, text, headers, delay = stub.script(body, n)
                time.sleep(delay)
                payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                               "content": text}}]}
                                     if status == 200 else {"error": {"message": text}}).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


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


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("DUALGAP_TEST_JUDGE_KEY", KEY)


@pytest.fixture
def runs(tmp_path):
    # A: good and safe on questions 0-2; B: good and safe on question 3 only
    a = make_run(tmp_path, "a", [["good safe"], ["good safe"], ["good"], ["plain"]])
    b = make_run(tmp_path, "b", [["plain"], ["meh"], ["safe"], ["good safe"]], threshold=5.0)
    return str(a), str(b)


def test_content_judge_win_rates_cache_and_no_key_on_disk(runs, tmp_path):
    a, b = runs
    out = tmp_path / "out"
    with Stub() as stub:
        res = judge_runs(a, b, settings(stub.url), output_dir=out, progress=False)
        assert len(stub.bodies) == 4 * 2 * 2  # questions x aspects x orders
        assert set(stub.auth) == {f"Bearer {KEY}"}
        assert {b_["model"] for b_ in stub.bodies} == {"stub-judge"}
        h, s = res["aspects"]["helpfulness"], res["aspects"]["safety"]
        # helpfulness: A good on 0,1,2 vs B good on 3 -> A wins 3, loses 1
        assert (h["win"]["rate"], h["tie"]["rate"], h["loss"]["rate"]) == (0.75, 0.0, 0.25)
        # safety: A safe on 0,1; B safe on 2,3 -> 2 wins, 2 losses
        assert (s["win"]["rate"], s["loss"]["rate"]) == (0.5, 0.5)
        assert h["disagreement"]["rate"] == 0.0 and h["win"]["interval"] == "wilson"
        assert h["win"]["ci95"][0] < 0.75 < h["win"]["ci95"][1]
        assert res["threshold_a"] == 3.0 and res["calls"]["sent"] == 16
        # a rerun costs nothing
        again = judge_runs(a, b, settings(stub.url), output_dir=out, progress=False)
        assert len(stub.bodies) == 16 and again["calls"]["from_cache"] == 16
        assert again["aspects"] == res["aspects"]
        # a new judge model misses the cache
        judge_runs(a, b, settings(stub.url, model="other"), output_dir=out, progress=False)
        assert len(stub.bodies) == 32
    saved = json.loads((out / "results.json").read_text())
    assert saved["aspects"]["helpfulness"]["win"]["rate"] == 0.75
    for f in out.iterdir():
        assert KEY not in f.read_text()
    assert "A wins 0.750" in format_results(res)


def test_position_biased_judge_ties_and_disagrees(runs, tmp_path):
    a, b = runs
    with Stub(lambda body, n: (200, "8 5\nthe first one", {}, 0.0)) as stub:
        res = judge_runs(a, b, settings(stub.url), output_dir=tmp_path / "o", progress=False)
    for e in res["aspects"].values():
        assert e["tie"]["rate"] == 1.0 and e["win"]["rate"] == 0.0
        assert e["disagreement"]["rate"] == 1.0 and e["first_position_wins"] == 1.0


def test_malformed_replies_are_retried_and_counted(runs, tmp_path):
    a, b = runs
    bad = set()

    def flaky(body, n):  # the first reply to every distinct call is malformed
        key = json.dumps(body["messages"])
        if key not in bad:
            bad.add(key)
            return 200, "Assistant A is better overall.\n8 3", {}, 0.0
        return content_judge(body, n)

    with Stub(flaky) as stub:
        res = judge_runs(a, b, settings(stub.url, concurrency=1), output_dir=tmp_path / "o",
                         progress=False)
        assert len(stub.bodies) == 32
    assert res["calls"]["unparseable_replies"] == 16 and res["calls"]["never_parsed"] == 0
    assert res["aspects"]["helpfulness"]["win"]["rate"] == 0.75


def test_replies_that_never_parse_are_reported_not_dropped(runs, tmp_path):
    a, b = runs

    def broken_on_q0(body, n):
        if "question 0?" in body["messages"][1]["content"]:
            return 200, "no scores here", {}, 0.0
        return content_judge(body, n)

    with Stub(broken_on_q0) as stub:
        res = judge_runs(a, b, settings(stub.url), output_dir=tmp_path / "o",
                         max_parse_retries=1, progress=False)
        # q0: 2 aspects x 2 orders x (1 + 1 retry); the others once
        assert len(stub.bodies) == 8 + 12
    h = res["aspects"]["helpfulness"]
    assert h["judged"] == 3 and h["unjudged"] == 1 and h["win"]["n"] == 3
    assert res["calls"]["never_parsed"] == 4 and res["calls"]["unparseable_replies"] == 8
    assert h["win"]["rate"] == pytest.approx(2 / 3)
    assert "unjudged 1" in format_results(res)


def test_rate_limit_then_success_honours_retry_after(runs, tmp_path):
    a, b = runs

    def limited(body, n):
        if n < 3:
            return 429, "slow down", {"Retry-After": "0.05"}, 0.0
        return content_judge(body, n)

    with Stub(limited) as stub:
        res = judge_runs(a, b, settings(stub.url, concurrency=1, max_retries=3),
                         output_dir=tmp_path / "o", progress=False)
        assert len(stub.bodies) == 16 + 3
    assert res["calls"]["http_requests"] == 19
    assert res["aspects"]["helpfulness"]["win"]["rate"] == 0.75


def test_persistent_rate_limit_is_one_line_with_advice(runs, tmp_path):
    a, b = runs
    with Stub(lambda body, n: (429, "quota", {}, 0.0)) as stub:
        with pytest.raises(UserError, match="429.*lower --requests-per-minute") as err:
            judge_runs(a, b, settings(stub.url, concurrency=1, max_retries=1),
                       output_dir=tmp_path / "o", progress=False)
        assert len(stub.bodies) == 2  # one try and one retry, then stop
    assert "\n" not in str(err.value)


def test_unauthorized_names_the_variable_never_the_key(runs, tmp_path):
    a, b = runs
    with Stub(lambda body, n: (401, "invalid key", {}, 0.0)) as stub:
        with pytest.raises(UserError, match=r"401.*\$DUALGAP_TEST_JUDGE_KEY") as err:
            judge_runs(a, b, settings(stub.url), output_dir=tmp_path / "o", progress=False)
        assert len(stub.bodies) <= 3  # no retries of a 401 (at most one per worker)
    assert KEY not in str(err.value)


def test_missing_key_variable_fails_before_any_request(runs, tmp_path, monkeypatch):
    a, b = runs
    monkeypatch.delenv("DUALGAP_TEST_JUDGE_KEY")
    # the key is checked before any work (before answers are read or generated)
    with Stub() as stub:
        with pytest.raises(UserError, match="DUALGAP_TEST_JUDGE_KEY is not set"):
            judge_runs(a, b, settings(stub.url), output_dir=tmp_path / "o", progress=False)
        assert stub.bodies == []
        res = judge_runs(a, b, settings(stub.url, api_key_env=None), output_dir=tmp_path / "o",
                         progress=False)
        assert set(stub.auth) == {None} and res["calls"]["sent"] == 16


def test_timeouts_are_retried_then_reported(runs, tmp_path):
    a, b = runs
    with Stub(lambda body, n: (200, "9 1", {}, 0.5)) as stub:
        with pytest.raises(UserError, match="timed out after 0.1 s.*raise --timeout"):
            judge_runs(a, b, settings(stub.url, timeout_s=0.1, max_retries=1, concurrency=1),
                       output_dir=tmp_path / "o", progress=False)
        assert len(stub.bodies) == 2


def test_timeout_then_success(runs, tmp_path):
    a, b = runs
    with Stub(lambda body, n: content_judge(body, n)[:3] + ((0.5 if n == 0 else 0.0),)) as stub:
        res = judge_runs(a, b, settings(stub.url, timeout_s=0.2, concurrency=1),
                         output_dir=tmp_path / "o", progress=False)
        assert len(stub.bodies) == 17
    assert res["aspects"]["safety"]["win"]["rate"] == 0.5


def test_several_samples_use_the_bootstrap_and_reference_side(tmp_path):
    a = make_run(tmp_path, "a", [["good", "good"], ["good", "plain"], ["plain", "good"]],
                 reference=[["plain", "plain"]] * 3)
    with Stub() as stub:
        res = judge_runs(str(a), f"{a}@reference", settings(stub.url), samples_per_prompt=2,
                         aspects=("helpfulness",), progress=False)
        # 12 calls, but identical (question, first, second) triples share one cache key:
        # (good, plain) once per question in both orders = 6, (plain, plain) once each on q1, q2
        assert len(stub.bodies) == 8
    h = res["aspects"]["helpfulness"]
    assert h["win"]["interval"] == "bootstrap-questions"
    assert h["win"]["rate"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert res["label_b"] == "a@reference" and "safety" not in res["aspects"]
    assert Path(res["output_dir"]) == a / "judge" / "eval-vs-a-reference"


def test_bad_inputs_are_one_line_errors(runs, tmp_path):
    a, b = runs
    s = settings("http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match="no evaluation answers.*dualgap llm evaluate"):
        judge_runs(a, f"{b}@reference", s, output_dir=tmp_path / "o", progress=False)
    with pytest.raises(UserError, match="not a run directory"):
        judge_runs(a, str(tmp_path / "nope"), s, progress=False)
    with pytest.raises(ValueError, match="--samples-per-prompt: 2 asked"):
        judge_runs(a, b, s, samples_per_prompt=2, output_dir=tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="--aspects"):
        judge_runs(a, b, s, aspects=("humour",), progress=False)
    c = make_run(tmp_path, "c", [["x"]] * 3)
    with pytest.raises(ValueError, match="different prompts"):
        judge_runs(a, str(c), s, output_dir=tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="--concurrency: must be >= 1"):
        settings("http://127.0.0.1:9/v1", concurrency=0)
    with pytest.raises(ValueError, match="--base-url"):
        settings("127.0.0.1:9")


def _cli(*args, env=None, **kw):
    env = {**os.environ, **(env or {}), "DUALGAP_TEST_JUDGE_KEY": KEY}
    return subprocess.Popen([sys.executable, "-m", "dualgap.cli", "llm", "judge", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            **kw)


def test_cli_killed_run_resumes_without_repeating_finished_calls(runs, tmp_path):
    a, b = runs
    out = tmp_path / "o"
    started = threading.Event()

    def slow(body, n):  # the first 5 calls answer at once, later ones hang (the kill comes)
        if n >= 5:
            started.set()
            return content_judge(body, n)[:3] + (3.0,)
        return content_judge(body, n)

    args = [a, b, "--api-key-env", "DUALGAP_TEST_JUDGE_KEY", "--model", "stub-judge",
            "--output-dir", str(out), "--concurrency", "1", "--no-progress"]
    with Stub(slow) as stub:
        proc = _cli("--base-url", stub.url, *args)
        assert started.wait(60), proc.communicate(timeout=5)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    cached = len((out / "cache.jsonl").read_text().splitlines())
    assert cached == 5 and not (out / "results.json").exists()
    with Stub() as stub:
        proc = _cli("--base-url", stub.url, *args, "--json")
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert len(stub.bodies) == 16 - 5
    res = json.loads(stdout)
    assert res["calls"]["from_cache"] == 5 and res["calls"]["sent"] == 11
    assert res["aspects"]["helpfulness"]["win"]["rate"] == 0.75


def test_cli_errors_are_one_line_exit_2(runs, tmp_path):
    a, b = runs
    with Stub(lambda body, n: (401, "no", {}, 0.0)) as stub:
        proc = _cli(a, b, "--base-url", stub.url, "--api-key-env", "DUALGAP_TEST_JUDGE_KEY",
                    "--output-dir", str(tmp_path / "o"), "--no-progress")
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert stderr.strip().startswith("dualgap llm judge: error:") and "401" in stderr
    assert len(stderr.strip().splitlines()) == 1 and KEY not in stderr
    proc = _cli(a, b, "--figure", str(tmp_path / "w.png"), "--with", str(tmp_path / "nope.json"))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--with: " in stderr and "nope.json" in stderr


def test_tiny_run_end_to_end_eval_answers_and_advbench(tiny_run, tmp_path):
    """A real tiny run: ``evaluate`` writes the answers, the judge reads them; AdvBench answers
    are generated from the final iterate and from pi_ref once, then reused."""
    from dualgap.llm.evaluate import evaluate
    from dualgap.llm.judge.answers import ADVBENCH_SAMPLE

    d = tiny_run.directory
    evaluate(d, figures=False, progress=False)
    with Stub() as stub:
        res = judge_runs(str(d), f"{d}@reference", settings(stub.url), output_dir=tmp_path / "e",
                         max_prompts=3, progress=False)
        assert res["num_questions"] == 3 and len(stub.bodies) <= 3 * 2 * 2
        assert res["aspects"]["safety"]["judged"] == 3
        n0 = len(stub.bodies)
        adv = judge_runs(str(d), f"{d}@reference", settings(stub.url), prompt_set="advbench",
                         advbench_source=ADVBENCH_SAMPLE, max_prompts=4,
                         output_dir=tmp_path / "a", progress=False)
        assert adv["num_questions"] == 4 and adv["prompt_set"] == "advbench"
        shown = "".join(b_["messages"][1]["content"] for b_ in stub.bodies[n0:])
        assert "neighbour's house" in shown
    stored = json.loads((d / "samples" / "judge_advbench_policy.json").read_text())
    assert len(stored["prompts"]) == 4 and all(len(s) == 1 for s in stored["samples"])
    before = (d / "samples" / "judge_advbench_policy.json").stat().st_mtime_ns
    with Stub() as stub:
        again = judge_runs(str(d), f"{d}@reference", settings(stub.url), prompt_set="advbench",
                           advbench_source=ADVBENCH_SAMPLE, max_prompts=4,
                           output_dir=tmp_path / "a", progress=False)
        assert stub.bodies == [] and again["aspects"] == adv["aspects"]
    assert (d / "samples" / "judge_advbench_policy.json").stat().st_mtime_ns == before


def test_server_errors_are_retried_and_404_names_the_url(runs, tmp_path):
    a, b = runs
    with Stub(lambda body, n: (503, "busy", {}, 0.0) if n == 0 else content_judge(body, n)) as stub:
        res = judge_runs(a, b, settings(stub.url, concurrency=1), output_dir=tmp_path / "o",
                         progress=False)
        assert len(stub.bodies) == 17 and res["calls"]["http_requests"] == 17
    with Stub(lambda body, n: (404, "no such route", {}, 0.0)) as stub:
        with pytest.raises(UserError, match="404: check --base-url .* --model 'stub-judge'"):
            judge_runs(a, b, settings(stub.url), output_dir=tmp_path / "p", progress=False)
