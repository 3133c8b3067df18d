"""A client of any OpenAI-compatible chat-completions endpoint
(``POST {base_url}/chat/completions``),
built on ``httpx`` (the ``judge`` extra).

* The API key is read from an environment variable whose *name* is configured; the key itself is
  never stored on the client's public attributes, written to disk or put in a message.
* Requests are spaced to at most ``requests_per_minute`` (one lock shared by every thread) and
  retried at most ``max_retries`` times on 429, 5xx, timeouts and dropped connections, waiting
  ``Retry-After`` when the server sends it and ``backoff * 2**k`` seconds otherwise.
* What is left after the retries becomes a one-line :class:`~dualgap.errors.UserError` that says
  what to do: 401/403 (the key), 404 (the URL or model), 429 (lower the rate), timeouts.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from ...errors import UserError

__all__ = ["EndpointSettings", "ChatClient", "RateLimiter"]


@dataclass(frozen=True)
class EndpointSettings:
    """Where and how to call the judge (every field is a ``dualgap llm judge`` option)."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str | None = "OPENAI_API_KEY"  # None: the endpoint needs no key
    temperature: float = 0.7
    max_tokens: int = 512
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 2.0
    requests_per_minute: float | None = None
    concurrency: int = 4

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"--base-url: {self.base_url!r} is not an http(s) URL")
        if not self.model:
            raise ValueError("--model: empty")
        checks = {"--temperature": (self.temperature, 0.0), "--timeout": (self.timeout_s, 1e-9),
                  "--max-tokens": (self.max_tokens, 1), "--max-retries": (self.max_retries, 0),
                  "--backoff": (self.backoff_s, 0.0), "--concurrency": (self.concurrency, 1)}
        if self.requests_per_minute is not None:
            checks["--requests-per-minute"] = (self.requests_per_minute, 1e-9)
        for option, (value, low) in checks.items():
            if not value >= low:
                raise ValueError(f"{option}: must be >= {low:g}, got {value!r}")


    def api_key(self) -> str | None:
        """The key from ``$api_key_env`` (``None`` without one); a missing variable is a
        :class:`~dualgap.errors.UserError` (checked before any work, and again by the client)."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise UserError(f"--api-key-env: the environment variable {self.api_key_env} "
                            "is not set; export the judge's API key there (or pass "
                            "--no-api-key for an endpoint without authentication)")
        return key


class RateLimiter:
    """Request starts spaced by at least ``60 / requests_per_minute`` seconds (thread-safe)."""

    def __init__(self, requests_per_minute: float | None) -> None:
        self.interval = 0.0 if requests_per_minute is None else 60.0 / requests_per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


class ChatClient:
    """``complete(messages) -> reply text``; share one instance across threads."""

    def __init__(self, settings: EndpointSettings) -> None:
        import httpx

        self.settings = settings
        headers = {"Content-Type": "application/json"}
        key = settings.api_key()
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self._http = httpx.Client(headers=headers, timeout=settings.timeout_s)
        self._limiter = RateLimiter(settings.requests_per_minute)
        self.requests = 0  # HTTP requests sent, retries included
        self._count = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(self, messages: list[dict]) -> str:
        """The first choice's message content (a string; may be empty)."""
        import httpx

        s = self.settings
        body = {"model": s.model, "messages": messages, "temperature": s.temperature,
                "max_tokens": s.max_tokens}
        last = ""
        for attempt in range(s.max_retries + 1):
            self._limiter.wait()
            with self._count:
                self.requests += 1
            wait = s.backoff_s * 2 ** attempt
            try:
                resp = self._http.post(self.url, json=body)
            except httpx.TimeoutException:
                last = (f"the judge endpoint {self.url} timed out after {s.timeout_s:g} s "
                        f"({s.max_retries + 1} tries); raise --timeout, lower --concurrency, or "
                        "check the endpoint")
            except httpx.TransportError as exc:
                last = (f"cannot reach the judge endpoint {self.url} ({type(exc).__name__}); "
                        "check --base-url and the network")
            else:
                if resp.status_code == 200:
                    return _content(resp, self.url)
                if resp.status_code in (401, 403):
                    who = (f"the key in ${s.api_key_env}" if s.api_key_env else "no key "
                           "(--no-api-key)")
                    raise UserError(f"the judge endpoint {self.url} answered "
                                    f"{resp.status_code} ({resp.reason_phrase}): it refused "
                                    f"{who}; check the key and --base-url")
                if resp.status_code == 404:
                    raise UserError(f"the judge endpoint {self.url} answered 404: check "
                                    f"--base-url (it should end before /chat/completions) and "
                                    f"--model {s.model!r}")
                if resp.status_code == 429 or resp.status_code >= 500:
                    retry_after = _retry_after(resp)
                    if retry_after is not None:
                        wait = retry_after
                    if resp.status_code == 429:
                        last = (f"the judge endpoint {self.url} kept answering 429 (rate limit "
                                f"or quota) after {s.max_retries + 1} tries; lower "
                                "--requests-per-minute or --concurrency, or check the account's "
                                "quota")
                    else:
                        last = (f"the judge endpoint {self.url} kept answering "
                                f"{resp.status_code} after {s.max_retries + 1} tries; try "
                                "again later")
                else:
                    raise UserError(f"the judge endpoint {self.url} answered {resp.status_code}: "
                                    f"{_short(resp.text)}")
            if attempt < s.max_retries:
                time.sleep(wait)
        raise UserError(last)


def _retry_after(resp) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return min(max(float(value), 0.0), 300.0) if value is not None else None
    except ValueError:
        return None


def _short(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


def _content(resp, url: str) -> str:
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UserError(f"the judge endpoint {url} answered 200 without "
                        f"choices[0].message.content: {_short(resp.text)}") from None
    return content if isinstance(content, str) else ""
