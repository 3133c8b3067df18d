"""Data loading and schema validation (bundled data, local files, HH-RLHF dialogues)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dualgap.llm.data import (
    DATA_DIR,
    PKU_COLUMNS,
    format_prompt,
    join_response,
    load_pairs,
    split_hh_dialogue,
    validate_pairs,
)


def _rows():
    return [json.loads(line) for line in (DATA_DIR / "tiny_train.jsonl").read_text().splitlines()]


def test_bundled_data_has_the_pku_schema():
    rows = _rows()
    full = {"prompt_source", "response_0_source", "response_1_source",
            "response_0_harm_category", "response_1_harm_category", "response_0_severity_level",
            "response_1_severity_level", "response_0_sha256", "response_1_sha256"}
    assert set(PKU_COLUMNS) | full == set(rows[0])
    train = load_pairs("builtin:tiny", "train")
    test = load_pairs("builtin:tiny", "test")
    assert (len(train), len(test)) == (40, 12)
    assert train.is_safe.shape == (40, 2) and set(np.unique(train.better)) <= {0, 1}
    # exactly one safe response per bundled pair, and safer_response_id points at it
    assert (train.is_safe.sum(axis=1) == 1).all()
    assert (train.is_safe[np.arange(40), train.safer]).all()
    assert len(load_pairs("builtin:tiny", "train", max_pairs=5)) == 5


@pytest.mark.parametrize("column, value, message", [
    ("safer_response_id", 2, "id must be 0 or 1, got 2"),
    ("better_response_id", True, "id must be 0 or 1"),
    ("response_1", "   ", "empty or non-text value"),
    ("is_response_0_safe", "yes", "safety flag must be a boolean"),
    ("prompt", None, "missing value"),
])
def test_bad_rows_are_named(column, value, message):
    rows = _rows()[:6]
    rows[3] = dict(rows[3], **{column: value})
    with pytest.raises(ValueError, match=rf"row 3, column '{column}': {message}"):
        validate_pairs(rows, source="mine")
    pairs = validate_pairs(rows, drop_invalid=True)
    assert len(pairs) == 5 and pairs.dropped == 1
    assert rows[3]["prompt"] not in pairs.prompts or column != "prompt"


def test_missing_column_is_named():
    rows = [{k: v for k, v in r.items() if k != "safer_response_id"} for r in _rows()[:3]]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['safer_response_id'\]"):
        validate_pairs(rows)


@pytest.mark.parametrize("suffix", ["jsonl", "json", "parquet"])
def test_local_files_through_load_dataset(tmp_path, suffix):
    import pandas as pd

    rows = _rows()
    frame = pd.DataFrame(rows[:10])
    train, test = tmp_path / f"train.{suffix}", tmp_path / f"test.{suffix}"
    if suffix == "parquet":
        frame.to_parquet(train)
        frame.iloc[:4].to_parquet(test)
    elif suffix == "json":
        train.write_text(json.dumps(rows[:10]))
        test.write_text(json.dumps(rows[:4]))
    else:
        frame.to_json(train, orient="records", lines=True)
        frame.iloc[:4].to_json(test, orient="records", lines=True)
    pairs = load_pairs(str(train), "train")
    assert pairs.prompts == [r["prompt"] for r in rows[:10]]
    assert pairs.safer.tolist() == [r["safer_response_id"] for r in rows[:10]]
    assert len(load_pairs(str(train), "test", test_path=str(test))) == 4
    with pytest.raises(ValueError, match="data.test_path"):
        load_pairs(str(train), "test")


@pytest.mark.parametrize("suffix", ["jsonl.xz", "json.gz", "jsonl.bz2"])
def test_compressed_files_load(tmp_path, suffix):
    import bz2
    import gzip
    import lzma

    rows = _rows()[:7]
    text = (json.dumps(rows) if suffix.startswith("json.")
            else "".join(json.dumps(r) + "\n" for r in rows)).encode()
    opener = {"xz": lzma.open, "gz": gzip.open, "bz2": bz2.open}[suffix.rsplit(".", 1)[1]]
    path = tmp_path / f"train.{suffix}"
    with opener(path, "wb") as f:
        f.write(text)
    pairs = load_pairs(str(path), "train")
    assert pairs.prompts == [r["prompt"] for r in rows]


def test_extra_pku_columns_stay_on_the_pairs():
    rows = _rows()
    pairs = load_pairs("builtin:tiny", "train")
    extra = {"prompt_source", "response_0_source", "response_1_source",
             "response_0_harm_category", "response_1_harm_category", "response_0_severity_level",
             "response_1_severity_level", "response_0_sha256", "response_1_sha256"}
    assert set(pairs.extra) == extra
    for col in extra:
        assert pairs.extra[col] == [r[col] for r in rows]
    assert pairs.head(3).extra["response_0_severity_level"] == [
        r["response_0_severity_level"] for r in rows[:3]]
    cats = pairs.harm_categories()
    for r in rows:  # the categories flagged for either response of the prompt
        flagged = {k for c in ("response_0_harm_category", "response_1_harm_category")
                   for k, v in r[c].items() if v}
        assert flagged <= set(cats[r["prompt"]])
    assert any(cats.values())
    # a dropped row's extra values go with it
    bad = [dict(r) for r in rows[:5]]
    bad[2]["safer_response_id"] = 7
    kept = validate_pairs(bad, drop_invalid=True)
    assert kept.extra["response_0_sha256"] == [r["response_0_sha256"] for i, r in
                                               enumerate(bad) if i != 2]


@pytest.mark.parametrize("column, value", [
    ("is_response_0_safe", "false"), ("is_response_1_safe", "1"),
    ("safer_response_id", "1"), ("better_response_id", "0"),
])
def test_booleans_and_ids_as_strings_are_rejected(tmp_path, column, value):
    """In a JSON file: one row with a string (datasets would otherwise decode "false" as
    false), and every row with a string; both name the row and the column."""
    rows = _rows()[:6]
    mixed = [dict(r) for r in rows]
    mixed[3][column] = value
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in mixed))
    with pytest.raises(ValueError, match=rf"row 3, column '{column}': a string where earlier "
                       "rows have a (boolean|number)"):
        load_pairs(str(path))
    every = [dict(r, **{column: value}) for r in rows]
    path = tmp_path / "strings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in every))
    with pytest.raises(ValueError, match=rf"row 0, column '{column}': .*got '{value}'"):
        load_pairs(str(path))


def test_local_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_pairs(str(tmp_path / "nope.jsonl"))
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_pairs(str(bad))


def test_hh_rlhf_dialogues():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: tell a joke\n\nAssistant: why not"
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: tell a joke\n\nAssistant: no"
    p, c, r = split_hh_dialogue(chosen, rejected)
    assert p.endswith("Assistant:") and "tell a joke" in p and (c, r) == ("why not", "no")
    pairs = validate_pairs([{"chosen": chosen, "rejected": rejected}], fmt="hh-rlhf")
    assert pairs.better.tolist() == [0] and pairs.safer is None
    with pytest.raises(ValueError, match="row 0, column 'chosen'.*share the prompt"):
        validate_pairs([{"chosen": chosen, "rejected": "\n\nHuman: x\n\nAssistant: y"}],
                       fmt="hh-rlhf")


def test_prompt_templates(tiny_tokenizer):
    assert format_prompt("Hi?") == "BEGINNING OF CONVERSATION: USER: Hi? ASSISTANT:"
    assert join_response(format_prompt("Hi?"), " Sure. ") == (
        "BEGINNING OF CONVERSATION: USER: Hi? ASSISTANT: Sure.")
    assert format_prompt("Hi?", "Q: {prompt}\nA:") == "Q: Hi?\nA:"
    with pytest.raises(ValueError, match="no chat template"):
        format_prompt("Hi?", tokenizer=tiny_tokenizer, use_chat_template=True)
    tiny_tokenizer.chat_template = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}"
                                    "{% endfor %}{% if add_generation_prompt %} <bot>{% endif %}")
    try:
        assert format_prompt("Hi?", tokenizer=tiny_tokenizer, use_chat_template=True) == (
            "<user> Hi? <bot>")
    finally:
        tiny_tokenizer.chat_template = None


def test_hub_ids_warn_unless_pinned_to_a_commit(monkeypatch):
    """A moving ref (the shipped default) warns; a 40-hex commit hash is passed through silently."""
    import warnings

    import datasets

    from dualgap.llm import data as llm_data

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: calls.append(kw) or "ds")
    with pytest.warns(UserWarning, match="data.revision: .* moving ref 'main'"):
        llm_data.load_split("PKU-Alignment/PKU-SafeRLHF-30K", "train")
    sha = "0123456789abcdef0123456789abcdef01234567"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert llm_data.load_split("PKU-Alignment/PKU-SafeRLHF-30K", "train", revision=sha) == "ds"
    assert [c["revision"] for c in calls] == ["main", sha]
