"""A small language whose every response can be enumerated, with known reward and utilities.

Tokens (one word each, separated by spaces in text):

* ``<eos>``: end of a response; it is also the tokenizer's pad/bos/unk token, so the model's
  next-token distribution ranges over exactly the response alphabet and ``<eos>``;
* topics (prompt words): ``cook``, ``code``, ``chem``, ``lock``;
* response words: ``recipe`` (answers ``cook``), ``patch`` (answers ``code``), ``mix``
  (answers ``chem``, harmful), ``pick`` (answers ``lock``, harmful), ``tip`` (a generic hint),
  ``sorry`` (a refusal), ``ok`` (filler).

A prompt is a sequence of ``prompt_length`` topics (every one of the ``|topics|^prompt_length``
sequences is a prompt).  A response is a sequence of ``0 .. max_response_length`` tokens from the
*alphabet* (every token but ``<eos>``, topics included): generation stops at ``<eos>`` or after
``L = max_response_length`` tokens, so there are ``sum_{l=0}^{L} n^l`` responses for an alphabet
of ``n`` tokens (1 464 for the default ``n = 11, L = 3``).

Scores of a response ``y = (t_1 .. t_l)`` to a prompt ``x`` with topic set ``T(x)``; ``k_j`` is
the number of earlier occurrences of ``t_j`` in ``y`` (repeating a word is worth half as much
each time)::

    helpfulness(x, y) = sum_j 0.5^{k_j} v(t_j, x),
        v(t, x) = 1 if t answers a topic in T(x);  0.3 if t = tip;  -0.5 if t = sorry;  0 else
    safety(x, y)      = -#{j : t_j in {mix, pick}} + 0.5 [sorry in y and T(x) has chem or lock]
    brevity(x, y)     = -l

Reward and safety are in tension on the risky prompts (those with ``chem`` or ``lock``): the
harmful answer is the helpful one there, and refusing costs helpfulness.  Brevity is in tension
with helpfulness everywhere (more answer words are more helpful).  The scorers take texts, as any
reward model of :mod:`dualgap.llm.scoring` does (kind ``callable``, path
``dualgap.llm.synthetic:helpfulness_score`` etc.; the prompt text is the topics joined by spaces).

The reference data distribution (what the reference transformer is trained on) is known
exactly::

    p_data(y | x) = w_l prod_j q(t_j | x),   l = len(y) >= 1,
    q(t | x) ∝ base(t) + boost(t) [t answers a topic in T(x)]

with length weights ``w`` (default ``(0.3, 0.4, 0.3)`` for ``L = 3``; the empty response has
probability 0), ``base = 0.5`` for answer words, ``2`` for ``tip`` and ``ok``, ``1`` for
``sorry``, ``0`` for topics, and ``boost = 2.5``.

This module imports numpy only.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = [
    "EOS",
    "TOPICS",
    "WORDS",
    "ANSWERS",
    "HARMFUL",
    "RISKY",
    "SCORE_NAMES",
    "SyntheticLanguage",
    "helpfulness_score",
    "safety_score",
    "brevity_score",
    "score_table",
    "split_words",
]

EOS = "<eos>"
#: prompt words
TOPICS: tuple[str, ...] = ("cook", "code", "chem", "lock")
#: response words
WORDS: tuple[str, ...] = ("recipe", "patch", "mix", "pick", "tip", "sorry", "ok")
#: topic -> the word that answers it
ANSWERS: dict[str, str] = {"cook": "recipe", "code": "patch", "chem": "mix", "lock": "pick"}
#: harmful words (each costs one unit of safety)
HARMFUL = frozenset({"mix", "pick"})
#: topics whose answer is harmful
RISKY = frozenset({"chem", "lock"})
#: value of non-answer words for helpfulness
_WORD_VALUE = {"tip": 0.3, "sorry": -0.5}
#: p_data weights
_BASE = {"recipe": 0.5, "patch": 0.5, "mix": 0.5, "pick": 0.5, "tip": 2.0, "sorry": 1.0,
         "ok": 2.0}
_BOOST = 2.5

#: the scorers by name, as ``dualgap.llm.synthetic:<name>_score`` callables
SCORE_NAMES = ("helpfulness", "safety", "brevity")


def split_words(text: str) -> list[str]:
    """The tokens of a text: whitespace-separated words, ``<eos>`` dropped."""
    return [w for w in text.replace(EOS, " ").split() if w]


def _check_pair(prompts: Sequence[str], responses: Sequence[str]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"responses: {len(responses)} responses for {len(prompts)} prompts")


def _helpfulness(topics: set[str], words: list[str]) -> float:
    answers = {ANSWERS[t] for t in topics if t in ANSWERS}
    seen: dict[str, int] = {}
    total = 0.0
    for w in words:
        k = seen.get(w, 0)
        seen[w] = k + 1
        v = 1.0 if w in answers else _WORD_VALUE.get(w, 0.0)
        total += v * 0.5 ** k
    return total


def _safety(topics: set[str], words: list[str]) -> float:
    s = -float(sum(w in HARMFUL for w in words))
    if "sorry" in words and topics & RISKY:
        s += 0.5
    return s


def helpfulness_score(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """The reward ``r(x, y)`` of the module docstring for each pair, float64 ``(n,)``."""
    _check_pair(prompts, responses)
    return np.array([_helpfulness(set(split_words(p)), split_words(y))
                     for p, y in zip(prompts, responses, strict=True)], dtype=np.float64)


def safety_score(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """The utility ``safety(x, y)`` (higher = safer; no negation needed), float64 ``(n,)``."""
    _check_pair(prompts, responses)
    return np.array([_safety(set(split_words(p)), split_words(y))
                     for p, y in zip(prompts, responses, strict=True)], dtype=np.float64)


def brevity_score(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """The utility ``brevity(x, y) = -len(y)`` in tokens, float64 ``(n,)``."""
    _check_pair(prompts, responses)
    return -np.array([len(split_words(y)) for y in responses], dtype=np.float64)


_SCORERS = {"helpfulness": helpfulness_score, "safety": safety_score, "brevity": brevity_score}


def score_table(name: str, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """``score(x, y)`` for every prompt and response, shape ``(X, Y)`` (``name`` in
    :data:`SCORE_NAMES`)."""
    if name not in _SCORERS:
        raise ValueError(f"score: unknown scorer {name!r}; known: {SCORE_NAMES}")
    X, Y = len(prompts), len(responses)
    flat_p = [p for p in prompts for _ in range(Y)]
    flat_y = list(responses) * X
    return _SCORERS[name](flat_p, flat_y).reshape(X, Y)


@dataclass(frozen=True)
class SyntheticLanguage:
    """The vocabulary, prompts and responses of the synthetic task (see the module docstring).

    Args:
        topics: prompt words (a subset of :data:`TOPICS`, in any order).
        words: response words (a subset of :data:`WORDS`).
        prompt_length: topics per prompt (every sequence of that length is a prompt).
        max_response_length: ``L``, the longest response (generation's ``max_new_tokens``).
        length_weights: ``w_1 .. w_L`` of ``p_data`` (default: ``(0.3, 0.4, 0.3)`` for
            ``L = 3``, uniform otherwise); they sum to 1.

    Token ids: ``<eos>`` is 0, then the topics, then the words.  The *alphabet* (the tokens a
    response may contain) is every id but 0.
    """

    topics: tuple[str, ...] = TOPICS
    words: tuple[str, ...] = WORDS
    prompt_length: int = 2
    max_response_length: int = 3
    length_weights: tuple[float, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        topics, words = tuple(self.topics), tuple(self.words)
        for name, toks, known in (("topics", topics, TOPICS), ("words", words, WORDS)):
            if not toks:
                raise ValueError(f"{name}: need at least one token")
            bad = [t for t in toks if t not in known]
            if bad:
                raise ValueError(f"{name}: unknown token(s) {bad}; known: {known}")
            if len(set(toks)) != len(toks):
                raise ValueError(f"{name}: repeated token in {toks}")
        if int(self.prompt_length) != self.prompt_length or self.prompt_length < 1:
            raise ValueError(f"prompt_length: must be a positive integer, got "
                             f"{self.prompt_length!r}")
        L = self.max_response_length
        if int(L) != L or not 1 <= L <= 6:
            raise ValueError(f"max_response_length: must be an integer in 1..6, got {L!r}")
        L = int(L)
        if self.length_weights is None:
            w = (0.3, 0.4, 0.3) if L == 3 else tuple([1.0 / L] * L)
        else:
            w = tuple(float(v) for v in self.length_weights)
            if len(w) != L:
                raise ValueError(f"length_weights: {len(w)} weights for max_response_length {L}")
            if min(w) < 0 or abs(sum(w) - 1.0) > 1e-12:
                raise ValueError(f"length_weights: must be >= 0 and sum to 1, got {w}")
        set_(self, "topics", topics)
        set_(self, "words", words)
        set_(self, "prompt_length", int(self.prompt_length))
        set_(self, "max_response_length", L)
        set_(self, "length_weights", w)

    # ------------------------------------------------------------------ tokens
    @property
    def vocabulary(self) -> tuple[str, ...]:
        """All tokens by id: ``<eos>``, topics, words."""
        return (EOS,) + self.topics + self.words

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def eos_id(self) -> int:
        return 0

    @property
    def alphabet_size(self) -> int:
        """``n``: tokens a response may contain (all but ``<eos>``)."""
        return self.vocab_size - 1

    def token_ids(self, text: str) -> list[int]:
        """Ids of a text's words; an unknown word is a ValueError naming it."""
        index = {t: i for i, t in enumerate(self.vocabulary)}
        out = []
        for w in split_words(text):
            if w not in index:
                raise ValueError(f"text: unknown word {w!r} in {text!r}")
            out.append(index[w])
        return out

    # ----------------------------------------------------------------- prompts
    @cached_property
    def prompt_ids(self) -> np.ndarray:
        """Every prompt as token ids, shape ``(X, prompt_length)``, lexicographic order."""
        ids = range(1, 1 + len(self.topics))
        return np.array(list(itertools.product(ids, repeat=self.prompt_length)), dtype=np.int64)

    @cached_property
    def prompts(self) -> tuple[str, ...]:
        """Every prompt as text (topics joined by spaces), ``X`` of them."""
        voc = self.vocabulary
        return tuple(" ".join(voc[i] for i in row) for row in self.prompt_ids)

    @property
    def num_prompts(self) -> int:
        return int(self.prompt_ids.shape[0])

    # --------------------------------------------------------------- responses
    @cached_property
    def response_ids(self) -> np.ndarray:
        """Every response as token ids padded with ``-1``, shape ``(Y, L)``: the empty response,
        then length 1, 2, ..., ``L``, each length in lexicographic order of the ids."""
        L, n = self.max_response_length, self.alphabet_size
        rows = [np.full(L, -1, dtype=np.int64)]
        for length in range(1, L + 1):
            combos = np.array(list(itertools.product(range(1, n + 1), repeat=length)),
                              dtype=np.int64)  # size = (n^length, length)
            pad = np.full((combos.shape[0], L - length), -1, dtype=np.int64)
            rows.extend(np.concatenate([combos, pad], axis=1))
        return np.stack(rows)

    @cached_property
    def response_lengths(self) -> np.ndarray:
        """``len(y)`` for every response, shape ``(Y,)``."""
        return (self.response_ids >= 0).sum(axis=1)

    @cached_property
    def responses(self) -> tuple[str, ...]:
        """Every response as text (words joined by spaces; ``""`` for the empty one)."""
        voc = self.vocabulary
        return tuple(" ".join(voc[i] for i in row if i >= 0) for row in self.response_ids)

    @property
    def num_responses(self) -> int:
        """``Y = sum_{l=0}^{L} n^l``."""
        return int(self.response_ids.shape[0])

    @cached_property
    def response_index(self) -> dict[str, int]:
        """Text -> response index (texts are normalized by :func:`split_words`)."""
        return {t: i for i, t in enumerate(self.responses)}

    def index_of(self, texts: Sequence[str]) -> np.ndarray:
        """Response indices of texts (e.g. generated samples), int ``(n,)``; a text that is not
        a response of the language is a ValueError naming it."""
        idx = self.response_index
        out = np.empty(len(texts), dtype=np.int64)
        for k, t in enumerate(texts):
            key = " ".join(split_words(t))
            if key not in idx:
                raise ValueError(f"texts: {t!r} is not a response of the language "
                                 f"(words {self.words + self.topics}, at most "
                                 f"{self.max_response_length} of them)")
            out[k] = idx[key]
        return out

    # ------------------------------------------------------------------ scores
    def scores(self, name: str) -> np.ndarray:
        """``score(x, y)`` on every prompt and response, shape ``(X, Y)``."""
        return score_table(name, self.prompts, self.responses)

    # --------------------------------------------------------------- p_data
    def token_distribution(self) -> np.ndarray:
        """``q(t | x)`` over the alphabet (ids 1..n, column ``t - 1``), shape ``(X, n)``."""
        voc = self.vocabulary
        X, n = self.num_prompts, self.alphabet_size
        q = np.zeros((X, n))
        for x, row in enumerate(self.prompt_ids):
            answers = {ANSWERS[voc[i]] for i in row}
            for t in range(1, n + 1):
                w = voc[t]
                q[x, t - 1] = _BASE.get(w, 0.0) + (_BOOST if w in answers else 0.0)
        return q / q.sum(axis=1, keepdims=True)

    def data_distribution(self) -> np.ndarray:
        """``p_data(y | x)`` for every prompt and response, shape ``(X, Y)``, rows sum to 1."""
        q = self.token_distribution()  # size = (X, n)
        ids = self.response_ids  # size = (Y, L)
        lengths = self.response_lengths
        logq = np.log(np.maximum(q, 1e-300))
        safe = np.where(ids > 0, ids - 1, 0)
        logp = np.where(ids[None] > 0, logq[:, safe], 0.0).sum(axis=2)  # size = (X, Y)
        w = np.array((0.0,) + self.length_weights)
        p = np.exp(logp) * w[lengths][None, :]
        zero_tok = np.where(ids > 0, (q[:, safe] == 0), False).any(axis=2)  # size = (X, Y)
        p[zero_tok] = 0.0
        return p / p.sum(axis=1, keepdims=True)

    def sample_data(self, num_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``num_samples`` pairs ``(x, y)`` with ``x`` uniform and ``y ~ p_data(.|x)``:
        prompt indices ``(N,)`` and response indices ``(N,)``."""
        from ...empirical import sample_responses

        if int(num_samples) != num_samples or num_samples < 1:
            raise ValueError(f"num_samples: must be a positive integer, got {num_samples!r}")
        rng = np.random.default_rng(seed)
        xs = rng.integers(0, self.num_prompts, size=int(num_samples))
        counts = np.bincount(xs, minlength=self.num_prompts)
        ys = np.empty(int(num_samples), dtype=np.int64)
        p = self.data_distribution()
        draws = sample_responses(p, int(max(counts.max(), 1)), rng)  # size = (X, max count)
        for x in range(self.num_prompts):
            ys[xs == x] = draws[x, : counts[x]]
        return xs, ys

    def describe(self) -> str:
        """One paragraph: sizes and the meaning of the tokens."""
        return (f"synthetic language: {self.vocab_size} tokens ({EOS}, topics "
                f"{' '.join(self.topics)}, words {' '.join(self.words)}); {self.num_prompts} "
                f"prompts of {self.prompt_length} topics; {self.num_responses} responses of at "
                f"most {self.max_response_length} tokens over an alphabet of "
                f"{self.alphabet_size}")
