"""dualgap llm synthetic (dualgap.llm.synthetic.cli): reuse of finished runs, clear errors."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
torch = pytest.importorskip("torch")


from dualgap.llm.synthetic.config import SIZES  # noqa: E402

pytestmark = pytest.mark.llm

TINY = SIZES["tiny"]


@pytest.mark.slow
def test_cli_reuses_the_runs(tiny_comparison, workdir, capsys):
    from dualgap.cli import main

    rc = main(["llm", "synthetic", "--size", "tiny", "--output-dir", str(workdir),
               "--no-sweep", "--no-figures", "--no-progress", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    # the finished runs were reused: the same iterates
    assert out["traces"]["caid"]["iterates"][1]["lam"] == pytest.approx(
        tiny_comparison.traces["caid"].iterates[1].lam.tolist())
    assert len(out["classes"]) == 1
    assert main(["llm", "synthetic", "--methods", "nope", "--output-dir", str(workdir)]) == 2
    # the directory holds the tiny comparison: another size there is an error, not a mix
    assert main(["llm", "synthetic", "--output-dir", str(workdir), "--no-progress"]) == 2
    assert "another size" in capsys.readouterr().err
