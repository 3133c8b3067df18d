"""The local chat-completions server: replies, error payloads, recorded requests, 127.0.0.1."""

import httpx

from dualgap.llm.judge.local import LocalJudgeServer


def test_replies_errors_and_records_requests():
    def script(body, n):
        return (200, f"{n} {len(body['messages'])}", {}, 0.0) if n == 0 else \
            (429, "slow down", {"Retry-After": "1"}, 0.0)

    with LocalJudgeServer(script) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
        body = {"model": "m", "messages": [{"role": "system", "content": "s"},
                                           {"role": "user", "content": "u"}]}
        ok = httpx.post(server.url + "/chat/completions", json=body,
                        headers={"Authorization": "Bearer k"})
        assert ok.status_code == 200
        assert ok.json()["choices"][0]["message"]["content"] == "0 2"
        limited = httpx.post(server.url + "/chat/completions", json=body)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
        assert limited.json() == {"error": {"message": "slow down"}}
    assert server.bodies == [body, body] and server.auth == ["Bearer k", None]
