"""Tests of dualgap/llm/judge/client.py: the rate limiter, and the HTTP client against the scripted
stub on 127.0.0.1 (429 then success, 401, a missing key, timeouts, 5xx and 404)."""

from __future__ import annotations

import time

import pytest

from dualgap.errors import UserError
from dualgap.llm.judge.report import judge_runs

from .stub import KEY, Stub, content_judge, settings


def test_rate_limiter_spaces_request_starts():

    from dualgap.llm.judge.client import RateLimiter

    limiter = RateLimiter(requests_per_minute=1200)  # one start every 50 ms
    t0 = time.monotonic()
    for _ in range(5):
        limiter.wait()
    assert time.monotonic() - t0 >= 4 * 0.05 - 1e-3
    free = RateLimiter(None)
    t0 = time.monotonic()
    for _ in range(100):
        free.wait()
    assert time.monotonic() - t0 < 0.05


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


def test_server_errors_are_retried_and_404_names_the_url(runs, tmp_path):
    a, b = runs
    with Stub(lambda body, n: (503, "busy", {}, 0.0) if n == 0 else content_judge(body, n)) as stub:
        res = judge_runs(a, b, settings(stub.url, concurrency=1), output_dir=tmp_path / "o",
                         progress=False)
        assert len(stub.bodies) == 17 and res["calls"]["http_requests"] == 17
    with Stub(lambda body, n: (404, "no such route", {}, 0.0)) as stub:
        with pytest.raises(UserError, match="404: check --base-url .* --model 'stub-judge'"):
            judge_runs(a, b, settings(stub.url), output_dir=tmp_path / "p", progress=False)
