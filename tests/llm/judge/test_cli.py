"""Tests of dualgap/llm/judge/cli.py: ``dualgap llm judge`` as a subprocess against the stub: a
killed run resumes without repeating finished calls; errors are one line, exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from .stub import KEY, Stub, content_judge


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
