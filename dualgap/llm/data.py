"""Preference pairs: PKU-SafeRLHF (30K, default config, v0 branch), HH-RLHF and local files.

Every source goes through ``datasets.load_dataset`` (hub ids with a pinned ``revision``; local
``.json``/``.jsonl``/``.parquet`` files through the ``json``/``parquet`` builders), then through
:func:`validate_pairs`, which checks the PKU-SafeRLHF core schema::

    prompt, response_0, response_1            non-empty strings
    is_response_0_safe, is_response_1_safe    booleans
    better_response_id, safer_response_id     0 or 1

and raises ``ValueError`` naming the row and the column (or, with ``drop_invalid``, drops the
row and reports the count).  HH-RLHF rows (``chosen``/``rejected`` dialogues) are split at the
last ``"\\n\\nAssistant:"`` into a shared prompt and two responses (``better_response_id = 0``).

Prompts are rendered with ``BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:`` by default
(the template of alpaca-7b-reproduced and the beaver score models), or with a tokenizer's chat
template; a response is appended after ``data.response_separator``.  The PKU configs use none,
as upstream safe-rlhf builds its texts (``PROMPT_ASSISTANT = 'ASSISTANT:'``, "should not have a
space at the end"; text = prompt + answer, + EOS for scoring).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PKU_COLUMNS", "PINNED_REVISIONS", "DEFAULT_TEMPLATE", "DATA_DIR", "PreferencePairs",
    "load_pairs", "load_split", "validate_pairs", "split_hh_dialogue", "format_prompt",
    "join_response",
]

logger = logging.getLogger(__name__)

#: The bundled test data (made-up texts in the exact PKU-SafeRLHF schema).
DATA_DIR = Path(__file__).resolve().parent / "data"

#: The core columns every PKU-SafeRLHF variant has.
PKU_COLUMNS = ("prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe",
               "better_response_id", "safer_response_id")

#: Default revisions of the hub datasets (the datasets have been edited several times: pin them).
#: NOTE: these are the refs the loaders use when ``revision`` is not given.  They could not be
#: resolved to commit hashes from this offline machine; replace them with the commit hashes of
#: the snapshot you ran on (``huggingface_hub.HfApi().dataset_info(id).sha``) to pin exactly.
PINNED_REVISIONS: dict[str, str] = {
    "PKU-Alignment/PKU-SafeRLHF-30K": "main",
    "PKU-Alignment/PKU-SafeRLHF": "main",
    "Anthropic/hh-rlhf": "main",
}

DEFAULT_TEMPLATE = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:"

_BUILTIN = {"builtin:tiny": {"train": DATA_DIR / "tiny_train.jsonl",
                             "test": DATA_DIR / "tiny_test.jsonl"}}


@dataclass
class PreferencePairs:
    """Validated pairs ``(x, y_0, y_1)`` with the dataset's labels.

    Attributes:
        prompts, response_0, response_1: texts, ``P`` each.
        better: ``better_response_id``, int array ``(P,)``.
        safer: ``safer_response_id``, int array ``(P,)`` (None for HH-RLHF).
        is_safe: ``(is_response_0_safe, is_response_1_safe)``, bool array ``(P, 2)`` (or None).
        dropped: rows dropped by ``drop_invalid`` (0 otherwise).
        source: a description of where the rows came from.
        extra: every other column of the source, one value per kept pair (PKU-SafeRLHF:
            ``prompt_source``, ``response_{0,1}_source``, ``response_{0,1}_harm_category``
            (category -> bool), ``response_{0,1}_severity_level``, ``response_{0,1}_sha256``).
    """

    prompts: list[str]
    response_0: list[str]
    response_1: list[str]
    better: np.ndarray
    safer: np.ndarray | None = None
    is_safe: np.ndarray | None = None
    dropped: int = 0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.prompts)

    def head(self, n: int | None) -> PreferencePairs:
        """The first ``n`` pairs (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        if n < 0:
            raise ValueError(f"n: must be >= 0, got {n}")
        return PreferencePairs(
            self.prompts[:n], self.response_0[:n], self.response_1[:n], self.better[:n],
            None if self.safer is None else self.safer[:n],
            None if self.is_safe is None else self.is_safe[:n], self.dropped, self.source,
            {k: v[:n] for k, v in self.extra.items()})

    def harm_categories(self) -> dict[str, list[str]]:
        """``{prompt: categories}``: the harm categories flagged for either response of any of
        the prompt's pairs (PKU-SafeRLHF's ``response_{0,1}_harm_category``; ``{}`` when the
        source has no such columns)."""
        cols = [c for c in ("response_0_harm_category", "response_1_harm_category")
                if c in self.extra]
        if not cols:
            return {}
        out: dict[str, dict[str, None]] = {}
        for i, prompt in enumerate(self.prompts):
            flags = out.setdefault(prompt, {})
            for c in cols:
                value = self.extra[c][i] or {}
                if not isinstance(value, dict):
                    raise ValueError(f"{self.source}: row {i}, column {c!r}: expected a mapping "
                                     f"of category -> bool, got {value!r}")
                flags.update({k: None for k, v in value.items() if v is True})
        return {p: list(f) for p, f in out.items()}

    def unique_prompts(self) -> list[str]:
        """Prompts in order of first appearance, without repeats."""
        return list(dict.fromkeys(self.prompts))


# ------------------------------------------------------------------ validation
def _is_text(v: object) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _row_error(row: dict, columns: tuple[str, ...]) -> tuple[str, str] | None:
    """``(column, problem)`` for the first bad column of a row, None when it is valid."""
    for col in columns:
        if col not in row or row[col] is None:
            return col, "missing value"
        v = row[col]
        if col in ("prompt", "response_0", "response_1"):
            if not _is_text(v):
                return col, f"empty or non-text value {v!r}"
        elif col.startswith("is_response_"):
            if not isinstance(v, (bool, np.bool_)):
                return col, f"safety flag must be a boolean, got {v!r}"
        elif col.endswith("_response_id"):
            if isinstance(v, (bool, np.bool_)) or v not in (0, 1):
                return col, f"id must be 0 or 1, got {v!r}"
    return None


def validate_pairs(rows: Any, drop_invalid: bool = False, fmt: str = "pku-saferlhf",
                   source: str = "") -> PreferencePairs:
    """Check the schema row by row and return :class:`PreferencePairs`.

    Args:
        rows: a ``datasets.Dataset`` or a list of dicts.
        drop_invalid: drop bad rows (count in ``.dropped`` and logged) instead of raising.
        fmt: ``"pku-saferlhf"`` (all of :data:`PKU_COLUMNS`) or ``"hh-rlhf"`` (``chosen`` and
            ``rejected`` dialogues, split by :func:`split_hh_dialogue`).

    Raises:
        ValueError: ``"row 17, column 'safer_response_id': id must be 0 or 1, got 2"``, or a
            missing column (named) for the whole source.
    """
    columns = list(getattr(rows, "column_names", None) or (rows[0].keys() if len(rows) else []))
    if fmt == "hh-rlhf":
        required: tuple[str, ...] = ("chosen", "rejected")
    elif fmt == "pku-saferlhf":
        required = PKU_COLUMNS
    else:
        raise ValueError(f"format: unknown data format {fmt!r}")
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{source or 'data'}: missing column(s) {missing}; found {columns}")
    prompts, r0, r1, better, safer, safe = [], [], [], [], [], []
    extra_cols = [c for c in columns if c not in required]
    extra: dict[str, list[Any]] = {c: [] for c in extra_cols}
    dropped = 0
    for i, row in enumerate(rows):
        if fmt == "hh-rlhf":
            try:
                p, c, r = split_hh_dialogue(row.get("chosen"), row.get("rejected"))
            except ValueError as exc:
                err = ("chosen", str(exc))
            else:
                err = None if (_is_text(p) and _is_text(c) and _is_text(r)) else (
                    "chosen", "empty prompt or response after splitting the dialogue")
        else:
            err = _row_error(row, required)
        if err is not None:
            if drop_invalid:
                dropped += 1
                continue
            where = f"{source}: " if source else ""
            raise ValueError(f"{where}row {i}, column {err[0]!r}: {err[1]}")
        if fmt == "hh-rlhf":
            prompts.append(p)
            r0.append(c)
            r1.append(r)
            better.append(0)
        else:
            prompts.append(row["prompt"])
            r0.append(row["response_0"])
            r1.append(row["response_1"])
            better.append(int(row["better_response_id"]))
            safer.append(int(row["safer_response_id"]))
            safe.append((bool(row["is_response_0_safe"]), bool(row["is_response_1_safe"])))
        for c in extra_cols:
            extra[c].append(row.get(c))
    if dropped:
        logger.warning("%s: dropped %d invalid row(s) of %d", source or "data", dropped,
                       dropped + len(prompts))
    if not prompts:
        raise ValueError(f"{source or 'data'}: no valid rows")
    return PreferencePairs(
        prompts, r0, r1, np.asarray(better, dtype=np.int64),
        np.asarray(safer, dtype=np.int64) if fmt != "hh-rlhf" else None,
        np.asarray(safe, dtype=bool).reshape(-1, 2) if fmt != "hh-rlhf" else None,
        dropped, source, extra)


_HH_ASSISTANT = "\n\nAssistant:"


def split_hh_dialogue(chosen: object, rejected: object) -> tuple[str, str, str]:
    """Split HH-RLHF ``chosen``/``rejected`` dialogues at the last ``"\\n\\nAssistant:"``.

    Returns ``(prompt, chosen_response, rejected_response)`` where ``prompt`` is the shared
    dialogue up to and including the last ``"Assistant:"`` marker.
    """
    if not (_is_text(chosen) and _is_text(rejected)):
        raise ValueError("empty or non-text dialogue")
    ic, ir = chosen.rfind(_HH_ASSISTANT), rejected.rfind(_HH_ASSISTANT)  # type: ignore[union-attr]
    if ic < 0 or ir < 0:
        raise ValueError("no '\\n\\nAssistant:' turn in the dialogue")
    pc, pr = chosen[: ic + len(_HH_ASSISTANT)], rejected[: ir + len(_HH_ASSISTANT)]  # type: ignore[index]
    if pc != pr:
        raise ValueError("chosen and rejected dialogues do not share the prompt")
    n = len(_HH_ASSISTANT)
    return pc.strip(), chosen[ic + n:].strip(), rejected[ir + n:].strip()  # type: ignore[index]


# ------------------------------------------------------------------ loading
#: compressions that ``datasets`` decompresses by file extension (through fsspec)
_COMPRESSIONS = (".gz", ".xz", ".bz2", ".zst")


def _local_builder(path: Path) -> str:
    suffixes = path.suffixes[-2:] if path.suffix in _COMPRESSIONS else path.suffixes[-1:]
    base = suffixes[0] if suffixes else ""
    if base in (".json", ".jsonl"):
        return "json"
    if base == ".parquet" and len(suffixes) == 1:
        return "parquet"
    raise ValueError(f"data.source: unsupported file type {''.join(suffixes)!r} for "
                     f"{str(path)!r} (use .json or .jsonl, optionally {'/'.join(_COMPRESSIONS)}"
                     "-compressed, or .parquet)")


_MIXED = re.compile(r"Column\(/([^)]*)\) changed from (\w+) to (\w+) in row (\d+)")


def _load_local(builder: str, target: Path, split: str):
    """A local file through ``datasets.load_dataset``.  JSON columns whose values change type
    (``true`` in one row, ``"false"`` in another) are errors naming the row and the column,
    not re-encoded as JSON (datasets' default ``on_mixed_types='use_json'`` would read the
    string ``"false"`` as the boolean ``false``)."""
    import datasets

    kwargs = {"on_mixed_types": None} if builder == "json" else {}
    try:
        return datasets.load_dataset(builder, data_files={split: str(target)}, split=split,
                                     **kwargs)
    except datasets.exceptions.DatasetGenerationError as exc:
        cause: BaseException | None = exc
        while cause is not None:
            m = _MIXED.search(str(cause))
            if m:
                col, was, now, row = m.groups()
                raise ValueError(
                    f"{target}: row {row}, column {col!r}: a {now} where earlier rows have a "
                    f"{was} (booleans and ids must be JSON true/false and numbers, not strings "
                    "such as \"false\" or \"1\")") from None
            cause = cause.__cause__ or cause.__context__
        raise


def load_split(source: str, split: str, *, name: str | None = None, revision: str | None = None,
               test_path: str | None = None):
    """One split as a ``datasets.Dataset``, always through ``datasets.load_dataset``.

    ``source`` is a hub id (``revision`` defaults to :data:`PINNED_REVISIONS`), ``builtin:tiny``,
    or a local file (the training split; ``test_path`` the test split).
    """
    import datasets

    if source in _BUILTIN:
        files = _BUILTIN[source]
        if split not in files:
            raise ValueError(f"data.{split}_split: {source} has splits {sorted(files)}, "
                             f"not {split!r}")
        return _load_local("json", files[split], split)
    path = Path(source)
    if path.exists():
        if split != "train" and test_path is None:
            raise ValueError(f"data.test_path: needed for split {split!r} of the local file "
                             f"{source!r}")
        target = Path(test_path) if split != "train" else path
        if not target.exists():
            raise ValueError(f"data.test_path: {str(target)!r} does not exist")
        return _load_local(_local_builder(target), target, split)
    if source.startswith(("/", ".")) or source.endswith(
            (".json", ".jsonl", ".parquet") + tuple(f".json{c}" for c in _COMPRESSIONS)
            + tuple(f".jsonl{c}" for c in _COMPRESSIONS)):
        raise ValueError(f"data.source: file {source!r} does not exist")
    rev = revision if revision is not None else PINNED_REVISIONS.get(source)
    if rev is None or not re.fullmatch(r"[0-9a-f]{40}", rev):
        warnings.warn(
            f"data.revision: {source} is loaded at the moving ref {rev or 'main'!r}, not a commit "
            "hash; the dataset has been edited over time, so results may not reproduce. Pin it "
            "with --set data.revision=<sha> (HfApi().dataset_info(id).sha).", stacklevel=2)
    from .resolve import guarded  # one line per failure, naming data.source (issue 10)

    return guarded("data.source", source, rev, datasets.load_dataset, source, name, split=split,
                   revision=rev, what="dataset")


def load_pairs(source: str = "builtin:tiny", split: str = "train", *, name: str | None = None,
               revision: str | None = None, test_path: str | None = None,
               fmt: str = "pku-saferlhf", drop_invalid: bool = False,
               max_pairs: int | None = None) -> PreferencePairs:
    """Load and validate one split (see :func:`load_split` and :func:`validate_pairs`)."""
    ds = load_split(source, split, name=name, revision=revision, test_path=test_path)
    desc = f"{source}[{split}]" + (f"@{revision}" if revision else "")
    if max_pairs is not None and max_pairs < len(ds):
        ds = ds.select(range(max_pairs))
    return validate_pairs(ds, drop_invalid=drop_invalid, fmt=fmt, source=desc)


# ------------------------------------------------------------------ templates
def format_prompt(prompt: str, template: str = DEFAULT_TEMPLATE, tokenizer: Any = None,
                  use_chat_template: bool = False) -> str:
    """The text the policy conditions on: ``template.format(prompt=prompt)`` or the chat
    template of ``tokenizer`` (one user turn, with the generation prompt)."""
    if use_chat_template:
        if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("data.use_chat_template: the tokenizer has no chat template")
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True)
    return template.format(prompt=prompt)


def join_response(prompt_text: str, response: str, separator: str = " ") -> str:
    """``prompt_text + separator + response.strip()``: the one rule that builds every scored
    and DPO text (upstream safe-rlhf: ``separator = ""``; responses are stripped of surrounding
    whitespace, which PKU-SafeRLHF's answers do not have)."""
    return f"{prompt_text}{separator}{response.strip()}"
