"""The ledger table and the quick-mode switch (the command ``dualgap claims``:
tests/commands/test_claims.py)."""

import pytest

from dualgap.claims import CLAIM_ORDER, ClaimResult, Ledger, quick_mode


def test_fourteen_claims():
    assert len(CLAIM_ORDER) == 14 and len(set(CLAIM_ORDER)) == 14


def test_ledger_table_lists_every_row():
    rows = [ClaimResult(c, f"check of {c}", 3, holds=2, failed=1, notebook="nb.ipynb")
            for c in CLAIM_ORDER]
    text = str(Ledger(rows, quick=True, seconds=1.0))
    for c in CLAIM_ORDER:
        assert c in text
    assert "quick mode" in text
    with pytest.raises(ValueError, match="claim"):
        Ledger(rows, True, 1.0).row("Lemma 9")


def test_quick_mode(monkeypatch):
    monkeypatch.setenv("DUALGAP_QUICK", "1")
    assert quick_mode()
    monkeypatch.setenv("DUALGAP_QUICK", "0")
    assert not quick_mode()
    monkeypatch.setenv("DUALGAP_QUICK", "yes")
    with pytest.raises(ValueError, match="DUALGAP_QUICK"):
        quick_mode()
