"""Pairwise judging of two runs' answers, both orders, with cached resumable calls.

For question ``x`` (``n`` of them) and sample index ``s < k``, answers ``a = A[x][s]`` and
``b = B[x][s]`` are judged per aspect twice: ``(a, b)`` gives scores ``(p_1, p_2)`` and
``(b, a)`` gives ``(q_1, q_2)``.  The combined scores cancel the position:

    score_A = (p_1 + q_2) / 2,   score_B = (p_2 + q_1) / 2,
    A wins iff score_A > score_B (strictly), tie iff equal, B wins otherwise.

The two orders *disagree* when ``sign(p_1 - p_2) != sign(q_2 - q_1)`` (the verdicts differ).
``first_position_wins`` is the share of calls whose first-shown answer scored strictly higher
(1/2 minus the share of second-position wins would be 0 for an unbiased judge).

Rates and 95% intervals: with ``k = 1`` the comparisons are independent and each rate gets the
Wilson score interval (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``); with
``k > 1`` the samples of one question are not independent, so the rate is the mean over
questions of the per-question share, with a percentile bootstrap over questions (2000
resamples, seeded).  A comparison whose calls never gave a parseable reply is *unjudged*: it is
counted in the summary and left out of the rates, never silently.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import JudgmentCache, judgment_key
from .client import ChatClient, EndpointSettings
from .templates import ASPECTS, TEMPLATE_VERSION, build_messages, parse_scores

__all__ = ["Call", "judge_answers", "rate_ci", "combine"]


@dataclass(frozen=True)
class Call:
    """One judge call: ``first`` is shown as Assistant A."""

    aspect: str
    question: str
    first: str
    second: str
    key: str


def _calls(model: str, questions: list[str], answers_a: list[list[str]],
           answers_b: list[list[str]], k: int, aspects: tuple[str, ...]) -> list[Call]:
    out = []
    for aspect in aspects:
        for x, q in enumerate(questions):
            for s in range(k):
                a, b = answers_a[x][s], answers_b[x][s]
                for first, second in ((a, b), (b, a)):
                    key = judgment_key(TEMPLATE_VERSION, model, aspect, q, first, second)
                    out.append(Call(aspect, q, first, second, key))
    return out


def _judge_one(client: ChatClient, call: Call, max_parse_retries: int) -> dict:
    """A record: the parsed scores and the reply, or ``scores = None`` after
    ``1 + max_parse_retries`` unparseable replies (their first lines kept)."""
    bad = []
    for _ in range(max_parse_retries + 1):
        reply = client.complete(build_messages(call.aspect, call.question, call.first,
                                               call.second))
        scores = parse_scores(reply, call.aspect)
        if scores is not None:
            return {"key": call.key, "aspect": call.aspect, "scores": list(scores),
                    "reply": reply, "unparseable_replies": len(bad),
                    "template_version": TEMPLATE_VERSION, "model": client.settings.model}
        bad.append((reply.strip().splitlines() or [""])[0][:200])
    return {"key": call.key, "aspect": call.aspect, "scores": None, "bad_first_lines": bad,
            "unparseable_replies": len(bad)}


def run_calls(calls: list[Call], settings: EndpointSettings, cache: JudgmentCache,
              max_parse_retries: int = 2, progress: bool = True) -> tuple[dict[str, dict], dict]:
    """Every call's record (cached ones without a request) and the call statistics."""
    from tqdm.auto import tqdm

    todo, seen = [], set()
    for c in calls:
        if c.key not in cache and c.key not in seen:
            todo.append(c)
            seen.add(c.key)
    results: dict[str, dict] = {c.key: cache.get(c.key) for c in calls if c.key in cache}
    stats = {"calls": len(calls), "from_cache": len(calls) - len(todo), "sent": len(todo),
             "http_requests": 0}
    if todo:
        lock = threading.Lock()
        bar = tqdm(total=len(calls), initial=len(calls) - len(todo), desc="judging",
                   disable=not progress)
        with ChatClient(settings) as client:

            stop = threading.Event()  # set by the first failure: queued calls are not sent

            def work(call: Call) -> None:
                if stop.is_set():
                    return
                try:
                    rec = _judge_one(client, call, max_parse_retries)
                except BaseException:
                    stop.set()
                    raise
                if rec["scores"] is not None:
                    cache.add(rec)
                with lock:
                    results[call.key] = rec
                    bar.update(1)

            pool = ThreadPoolExecutor(max_workers=settings.concurrency)
            try:
                futures = [pool.submit(work, c) for c in todo]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for f in done:
                    if f.exception() is not None:
                        raise f.exception()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                bar.close()
                stats["http_requests"] = client.requests
    return results, stats


def rate_ci(outcomes: np.ndarray, level: float = 0.95) -> dict:
    """``{"rate", "ci95", "interval"}`` of a 0/1 array ``(n, k)`` with NaN for unjudged (see the
    module docstring for the two intervals)."""
    from scipy.stats import binomtest, bootstrap

    x = np.asarray(outcomes, dtype=np.float64)  # size = (n, k)
    judged = ~np.isnan(x)
    if x.shape[1] == 1:
        n = int(judged.sum())
        if n == 0:
            return {"rate": None, "ci95": [None, None], "interval": "wilson", "n": 0}
        wins = int(np.nansum(x))
        ci = binomtest(wins, n).proportion_ci(level, method="wilson")
        return {"rate": wins / n, "ci95": [float(ci.low), float(ci.high)], "interval": "wilson",
                "n": n}
    keep = judged.any(axis=1)
    per_q = np.nanmean(x[keep], axis=1) if keep.any() else np.zeros(0)  # size = (n_judged,)
    if per_q.size == 0:
        return {"rate": None, "ci95": [None, None], "interval": "bootstrap-questions", "n": 0}
    if per_q.size == 1 or np.all(per_q == per_q[0]):
        lo = hi = float(per_q[0])
    else:
        res = bootstrap((per_q,), np.mean, confidence_level=level, n_resamples=2000,
                        method="percentile", rng=np.random.default_rng(0))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"rate": float(per_q.mean()), "ci95": [lo, hi], "interval": "bootstrap-questions",
            "n": int(per_q.size)}


def combine(ab: np.ndarray, ba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(outcome, disagree)`` from the scores of both orders, ``ab`` and ``ba`` of shape
    ``(..., 2)`` (first-shown, second-shown), NaN where unjudged: outcome ``+1`` (A wins),
    ``0`` (tie), ``-1`` (B wins), NaN unjudged; disagree 1/0/NaN."""
    score_a = (ab[..., 0] + ba[..., 1]) / 2
    score_b = (ab[..., 1] + ba[..., 0]) / 2
    outcome = np.sign(score_a - score_b)
    disagree = (np.sign(ab[..., 0] - ab[..., 1]) != np.sign(ba[..., 1] - ba[..., 0])).astype(float)
    disagree[np.isnan(outcome)] = np.nan
    return outcome, disagree


def judge_answers(questions: list[str], answers_a: list[list[str]], answers_b: list[list[str]],
                  settings: EndpointSettings, cache_path: str | Path, samples_per_prompt: int = 1,
                  aspects: tuple[str, ...] = ASPECTS, max_parse_retries: int = 2,
                  progress: bool = True) -> dict:
    """Win, tie and loss rates of A against B per aspect, with 95% intervals, the order
    disagreement rate, the first-position share and the call statistics."""
    k = samples_per_prompt
    if k < 1:
        raise ValueError(f"--samples-per-prompt: must be >= 1, got {k}")
    if max_parse_retries < 0:
        raise ValueError(f"--max-parse-retries: must be >= 0, got {max_parse_retries}")
    if not questions:
        raise ValueError("questions: none to judge")
    for name, ans in (("A", answers_a), ("B", answers_b)):
        if len(ans) != len(questions):
            raise ValueError(f"answers of run {name}: {len(ans)} lists for {len(questions)} "
                             "questions")
        short = [i for i, s in enumerate(ans) if len(s) < k]
        if short:
            raise ValueError(f"--samples-per-prompt: {k} asked, run {name} has "
                             f"{len(ans[short[0]])} answers for question {short[0]}")
    cache = JudgmentCache(cache_path)
    calls = _calls(settings.model, questions, answers_a, answers_b, k, aspects)
    records, stats = run_calls(calls, settings, cache, max_parse_retries, progress)
    n = len(questions)
    summary: dict = {"num_questions": n, "samples_per_prompt": k, "aspects": {}}
    unparseable = never = 0
    for j, aspect in enumerate(aspects):
        part = calls[j * n * k * 2:(j + 1) * n * k * 2]
        scores = np.array([records[c.key]["scores"] or [np.nan, np.nan] for c in part],
                          dtype=np.float64).reshape(n, k, 2, 2)  # (question, sample, order, pos)
        unparseable += sum(records[c.key]["unparseable_replies"] for c in part)
        never += sum(records[c.key]["scores"] is None for c in part)
        outcome, disagree = combine(scores[:, :, 0], scores[:, :, 1])  # size = (n, k)
        valid = ~np.isnan(outcome)
        first = scores[..., 0] > scores[..., 1]  # size = (n, k, 2)
        judged_calls = ~np.isnan(scores[..., 0])
        entry = {name: rate_ci(np.where(valid, (outcome == v).astype(float), np.nan))
                 for name, v in (("win", 1.0), ("tie", 0.0), ("loss", -1.0))}
        entry["disagreement"] = rate_ci(disagree)
        entry["first_position_wins"] = (float(first[judged_calls].mean())
                                        if judged_calls.any() else None)
        entry["judged"] = int(valid.sum())
        entry["unjudged"] = int((~valid).sum())
        summary["aspects"][aspect] = entry
    stats.update(unparseable_replies=int(unparseable), never_parsed=int(never))
    summary["calls"] = stats
    return summary
