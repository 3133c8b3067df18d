"""The tiny causal transformer of the synthetic task and its exact response probabilities.

* :func:`build_tokenizer`: a word-level ``PreTrainedTokenizerFast`` on the language's vocabulary
  (``<eos>`` = id 0 is also pad, bos and unk; no special tokens are added to encoded text), built
  locally with ``tokenizers``.
* :func:`build_model`: a randomly initialized ``GPT2LMHeadModel`` from a ``GPT2Config``
  (dropout 0, so training and evaluation compute the same probabilities; absolute positions,
  ``n_positions = prompt_length + L``).
* :func:`train_reference`: maximum likelihood on samples of ``p_data`` (the prompt is not
  modelled; the targets are the response tokens and the ``<eos>`` after a response shorter than
  ``L``).
* :func:`exact_log_probs`: ``log pi_theta(y|x)`` of every response by teacher forcing.
* :class:`TransformerPolicy`: the transformer as a :class:`dualgap.policies.PolicyClass`
  (``theta`` = all weights, flat float64), so :mod:`dualgap.gaps` and
  :func:`dualgap.report.gap_report` accept it; its two hooks are float32 Adam (every fit
  stage) and a reverse-KL distillation of ``pi_lam`` (every Lagrangian maximization), both
  measured in float64.

Exact probabilities (the generation semantics of ``generate(max_new_tokens=L)``: stop at
``<eos>`` or after ``L`` tokens).  With ``q_j(. | x, t_{<j})`` the model's next-token
distribution over the whole vocabulary at response step ``j``::

    pi(y | x) = prod_{j=1}^{l} q_j(t_j | x, t_{<j}) * q_{l+1}(<eos> | x, t_{<=l})   (l < L)
    pi(y | x) = prod_{j=1}^{L} q_j(t_j | x, t_{<j})                                 (l = L)

These sum to 1 over the ``sum_l n^l`` responses (the chain rule, with the last factor dropped at
length ``L`` where generation truncates).  Every ``q_j`` needed is computed once per node of the
prefix tree (:func:`.forward.prefix_tree_logits`: the prompts, then their ``n^j`` one-token
extensions level by level; 3.6x fewer positions than the ``X n^{L-1}`` full sequences
``x t_1 .. t_{L-1}`` of :func:`teacher_forcing_inputs` for the default language).

DPO sees the same numbers when its ``max_length`` is ``prompt_length + L``: TRL appends
``<eos>`` to every completion and truncates the sequence to ``max_length``, which drops exactly
the ``<eos>`` of a length-``L`` response.

Imports torch and transformers.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...policies import DTYPE, FitResult, PolicyClass
from ...problem import AlignmentProblem
from .config import TransformerArch
from .forward import check_config, prefix_tree_logits
from .language import EOS, SyntheticLanguage

__all__ = [
    "TransformerArch",
    "build_tokenizer",
    "build_model",
    "train_reference",
    "TrainReport",
    "teacher_forcing_inputs",
    "exact_log_probs",
    "exact_policy",
    "TransformerPolicy",
    "save_model",
]


#: the default shape (width 32, depth 2, 2 heads)
DEFAULT_ARCH = TransformerArch()
#: how many fits a :class:`TransformerPolicy` remembers (:meth:`TransformerPolicy.fit`)
FIT_MEMORY = 8


def build_tokenizer(language: SyntheticLanguage):
    """A word-level fast tokenizer: one id per word, whitespace-split, ``<eos>`` special (also
    pad/bos/unk); encoding adds no special tokens, decoding joins words with spaces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(language.vocabulary)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok.add_special_tokens([EOS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, unk_token=EOS,
        padding_side="left",  # (TRL tokenizes prompt + response + <eos>, then truncates)
        model_max_length=language.prompt_length + language.max_response_length + 1)


def build_model(language: SyntheticLanguage, arch: TransformerArch = DEFAULT_ARCH,
                seed: int = 0):
    """A randomly initialized ``GPT2LMHeadModel`` on the language's vocabulary (seeded)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=language.vocab_size,
        n_positions=language.prompt_length + language.max_response_length,
        n_embd=arch.width, n_layer=arch.depth, n_head=arch.heads,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=language.eos_id, eos_token_id=language.eos_id,
        pad_token_id=language.eos_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    gc = model.generation_config
    gc.pad_token_id = gc.eos_token_id = gc.bos_token_id = language.eos_id
    gc.max_new_tokens = language.max_response_length
    gc.do_sample, gc.top_k, gc.top_p, gc.temperature = True, 0, 1.0, 1.0
    return model


# ------------------------------------------------------------------ teacher forcing
def teacher_forcing_inputs(language: SyntheticLanguage) -> torch.Tensor:
    """``x t_1 .. t_{L-1}`` for every prompt and every ``(L-1)``-token prefix, shape
    ``(X * n^{L-1}, prompt_length + L - 1)`` (prompt-major, prefixes in lexicographic order)."""
    import itertools

    L, n = language.max_response_length, language.alphabet_size
    prefixes = np.array(list(itertools.product(range(1, n + 1), repeat=L - 1)),
                        dtype=np.int64).reshape(n ** (L - 1), L - 1)  # size = (R, L-1)
    P = language.prompt_ids  # size = (X, prompt_length)
    X, R = P.shape[0], prefixes.shape[0]
    ids = np.concatenate([np.repeat(P, R, axis=0), np.tile(prefixes, (X, 1))], axis=1)
    return torch.as_tensor(ids)


def _gather_index(language: SyntheticLanguage) -> list[torch.Tensor]:
    """Per tree level ``j`` (``0 .. L-1``), the flat index ``(Y,)`` into that level's ``log q``
    of one prompt, ``(n^j V)`` plus one trailing zero: the term of ``y`` at position ``j + 1``,
    i.e. its token ``y_{j+1}`` after the prefix ``y_{<=j}`` (``j < len(y)``), its ``<eos>``
    after the whole of ``y`` (``j = len(y) < L``), or the trailing zero (``j > len(y)``)."""
    L, n, V = language.max_response_length, language.alphabet_size, language.vocab_size
    ids = language.response_ids  # size = (Y, L), -1 padded
    lengths = language.response_lengths  # size = (Y,)
    alpha = np.where(ids > 0, ids - 1, 0)  # alphabet index, 0 on padding
    row = np.zeros(ids.shape[0], dtype=np.int64)  # the prefix y_{<=j} as a level-j row
    out = []
    for j in range(L):
        tok = np.where(j < lengths, ids[:, j].clip(min=0), language.eos_id)
        out.append(torch.as_tensor(np.where(j <= lengths, row * V + tok, n ** j * V)))
        row = row * n + alpha[:, j]
    return out


def _log_probs_from_levels(language: SyntheticLanguage, levels: list[torch.Tensor],
                           index: list[torch.Tensor]) -> torch.Tensor:
    """``log pi(y|x)``, shape ``(X, Y)``, from the prefix-tree logits of
    :func:`.forward.prefix_tree_logits` (level ``j``: ``(X n^j, V)``; differentiable): one
    gather per level (:func:`_gather_index`), the terms added in position order."""
    X = language.num_prompts
    out = None
    for lv, idx in zip(levels, index, strict=True):
        flat = torch.log_softmax(lv, dim=-1).reshape(X, -1)  # size = (X, n^j V)
        flat = torch.cat([flat, flat.new_zeros(X, 1)], dim=1)
        term = flat[:, idx]  # size = (X, Y)
        out = term if out is None else out + term
    return out


def _tree_log_probs(language: SyntheticLanguage, params: dict[str, torch.Tensor], config: Any,
                    index: list[torch.Tensor]) -> torch.Tensor:
    """``log pi(y|x)`` ``(X, Y)`` of the GPT-2 with parameters ``params`` (by name)."""
    levels = prefix_tree_logits(params, config, torch.as_tensor(language.prompt_ids),
                                language.alphabet_size, language.max_response_length)
    return _log_probs_from_levels(language, levels, index)


def exact_log_probs(model: Any, language: SyntheticLanguage,
                    dtype: torch.dtype = torch.float64) -> np.ndarray:
    """``log pi(y | x)`` of every prompt and response under ``model``, float64 ``(X, Y)``.

    Computed in ``dtype`` (default float64) from a copy of the model's parameters, once per
    node of the prefix tree (:func:`.forward.prefix_tree_logits`); no renormalization (the rows
    sum to 1 up to rounding).
    """
    check_config(model.config)
    params = {k: p.detach().to(dtype) for k, p in model.named_parameters()}
    with torch.no_grad():
        out = _tree_log_probs(language, params, model.config, _gather_index(language))
    return out.double().numpy()


def exact_policy(model: Any, language: SyntheticLanguage) -> np.ndarray:
    """``pi(y | x)`` of every prompt and response, float64 ``(X, Y)`` (see
    :func:`exact_log_probs`)."""
    return np.exp(exact_log_probs(model, language))


# ------------------------------------------------------------------ training
@dataclass
class TrainReport:
    """What :func:`train_reference` did: samples, steps, final loss, and the exact
    ``E_x KL(p_data || pi)`` of the trained model (nats), with the entropy floor
    ``E_x H(p_data)`` that the loss approaches."""

    num_samples: int
    steps: int
    final_loss: float
    kl_data: float
    data_entropy: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def _training_batch(language: SyntheticLanguage, xs: np.ndarray,
                    ys: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(N, prompt_length + L)`` and next-token targets ``(N, prompt_length + L - 1)``
    (``-100`` where nothing is predicted: the prompt and the padding after ``<eos>``)."""
    Pl, L = language.prompt_length, language.max_response_length
    ids = language.response_ids[ys]  # size = (N, L)
    lengths = language.response_lengths[ys]
    resp = np.where(ids > 0, ids, language.eos_id)  # <eos> after the end (and as padding)
    inputs = np.concatenate([language.prompt_ids[xs], resp], axis=1)  # size = (N, Pl + L)
    targets = inputs[:, 1:].copy()
    pos = np.arange(Pl + L - 1)[None, :]
    predicted = (pos >= Pl - 1) & (pos <= Pl - 1 + np.minimum(lengths, L - 1)[:, None])
    targets[~predicted] = -100
    return torch.as_tensor(inputs), torch.as_tensor(targets)


def train_reference(language: SyntheticLanguage, arch: TransformerArch = DEFAULT_ARCH,
                    num_samples: int = 20000, epochs: int = 30, batch_size: int = 500,
                    learning_rate: float = 1e-2, seed: int = 0,
                    progress: bool = True) -> tuple[Any, TrainReport]:
    """A transformer trained from scratch on ``num_samples`` pairs ``(x, y ~ p_data(.|x))``.

    Minimizes the token cross-entropy of the response and its ``<eos>`` (none after a
    length-``L`` response) with Adam and a cosine learning rate, ``epochs`` passes over the
    samples.  Returns the model (float32, eval mode) and a :class:`TrainReport` whose
    ``kl_data`` is computed exactly by enumeration.
    """
    import time

    from tqdm.auto import tqdm

    for name, v in (("num_samples", num_samples), ("epochs", epochs), ("batch_size", batch_size)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name}: must be a positive integer, got {v!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: must be > 0, got {learning_rate!r}")
    t0 = time.perf_counter()
    model = build_model(language, arch, seed)
    xs, ys = language.sample_data(num_samples, seed)
    inputs, targets = _training_batch(language, xs, ys)
    N = inputs.shape[0]
    steps_per_epoch = max(1, math.ceil(N / batch_size))
    total = steps_per_epoch * int(epochs)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=total,
                                                pct_start=0.05, anneal_strategy="cos")
    gen = torch.Generator().manual_seed(seed)
    model.train()
    loss_val = math.nan
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        bar = tqdm(total=total, desc="training the reference", disable=not progress,
                   leave=False)
        for _ in range(int(epochs)):
            perm = torch.randperm(N, generator=gen)
            for k in range(steps_per_epoch):
                b = perm[k * batch_size:(k + 1) * batch_size]
                ids = inputs[b]
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                               use_cache=False).logits[:, :-1]
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets[b].reshape(-1),
                    ignore_index=-100)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                loss_val = float(loss.detach())
                bar.update(1)
                bar.set_postfix(loss=f"{loss_val:.4f}")
        bar.close()
    model.eval()
    p_data = language.data_distribution()
    logp = exact_log_probs(model, language)
    pos = p_data > 0
    log_pd = np.log(np.where(pos, p_data, 1.0))
    kl = float(np.mean(np.where(pos, p_data * (log_pd - logp), 0.0).sum(axis=1)))
    ent = float(np.mean(-np.where(pos, p_data * log_pd, 0.0).sum(axis=1)))
    return model, TrainReport(int(num_samples), total, loss_val, kl, ent,
                              time.perf_counter() - t0)


def save_model(model: Any, language: SyntheticLanguage, directory: str | Path) -> Path:
    """Write the model (float32) and its tokenizer to ``directory`` (loadable with
    ``AutoModelForCausalLM`` / ``AutoTokenizer``, as the llm pipeline loads a policy)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.to(torch.float32).save_pretrained(directory)
    build_tokenizer(language).save_pretrained(directory)
    return directory


# ------------------------------------------------------------------ the policy class
class TransformerPolicy(PolicyClass):
    """The transformer as a policy class: ``theta`` = all its weights (flat, float64).

    ``pi_theta(y|x)`` is :func:`exact_log_probs` of the model with weights ``theta``, computed
    differentiably on the prefix tree (:func:`.forward.prefix_tree_logits`) in float64; in the
    base class's form ``log pi_theta = log_softmax(log pi_ref + f_theta)`` the score is
    ``f_theta = log pi_theta - log pi_ref`` (the softmax then returns ``log pi_theta``, which
    is already normalized).  ``init_params()`` is the weights of ``model`` (for the reference
    model: ``pi_ref`` itself); ``init_params(seed)`` a fresh random initialization.

    Args:
        problem: an instance on the language's prompts and responses (``(X, Y)`` tables).
        language: the language.
        model: a ``GPT2LMHeadModel`` of the language (copied; its weights are the default
            start, its architecture the class).
        learning_rate: Adam's initial learning rate in both hooks.
        steps, warm_steps: the default budget of a Lagrangian maximization from the class's
            start and from a given ``theta0``.

    Both hooks of the base class are overridden: :meth:`minimize` (every fit stage) is float32
    Adam, :meth:`maximize_lagrangian` (every Lagrangian maximization of :mod:`dualgap.gaps`)
    is a reverse-KL distillation of ``pi_lam`` by it.
    """

    name = "transformer"

    def __init__(self, problem: AlignmentProblem, language: SyntheticLanguage,
                 model: Any, *, learning_rate: float = 3e-3, steps: int = 250,
                 warm_steps: int = 100) -> None:
        super().__init__(problem)
        if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
            raise ValueError(f"learning_rate: must be > 0, got {learning_rate!r}")
        for name, v in (("steps", steps), ("warm_steps", warm_steps)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name}: must be a positive integer, got {v!r}")
        self.learning_rate = float(learning_rate)
        self.steps, self.warm_steps = int(steps), int(warm_steps)
        X, Y = language.num_prompts, language.num_responses
        if problem.reward.shape != (X, Y):
            raise ValueError(f"problem: shape {problem.reward.shape} does not match the "
                             f"language's (X, Y) = {(X, Y)}")
        self.language = language
        self.model = copy.deepcopy(model).to(DTYPE).eval()
        self._names = [n for n, _ in self.model.named_parameters()]
        self._shapes = [p.shape for _, p in self.model.named_parameters()]
        self._sizes = [p.numel() for _, p in self.model.named_parameters()]
        self.num_params = int(sum(self._sizes))
        self._theta0 = torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])
        check_config(self.model.config)
        self._index = _gather_index(language)
        self._seed_base = 0
        self._fits: dict[tuple, FitResult] = {}  # the last fits, by target, start, settings

    @property
    def arch(self) -> TransformerArch:
        c = self.model.config
        return TransformerArch(c.n_embd, c.n_layer, c.n_head)

    def _params(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(theta, self._sizes)
        return {n: p.view(s)
                for n, p, s in zip(self._names, parts, self._shapes, strict=True)}

    def log_probs(self, theta: torch.Tensor) -> torch.Tensor:
        """``log pi_theta(y|x)``, shape ``(X, Y)``, differentiable in ``theta``.

        A float32 ``theta`` runs the model in float32 (the fast path :meth:`fit` optimizes
        with) and returns float64 log-probabilities; anything else runs in float64.
        """
        if isinstance(theta, torch.Tensor) and theta.dtype == torch.float32:
            if theta.shape != (self.num_params,):
                raise ValueError(f"theta: shape {tuple(theta.shape)} does not match "
                                 f"num_params = {self.num_params} of {self!r}")
        else:
            theta = self.check_params(theta)
        return _tree_log_probs(self.language, self._params(theta), self.model.config,
                               self._index).to(DTYPE)

    def scores(self, theta: torch.Tensor) -> torch.Tensor:
        return self.log_probs(theta) - self.log_ref

    def log_policy(self, theta: torch.Tensor) -> torch.Tensor:
        """``log pi_theta`` directly (the base class's softmax of ``log pi_ref + f_theta`` gives
        the same numbers up to rounding, at the cost of one more pass)."""
        return self.log_probs(theta)

    # -------------------------------------------------------------- the two hooks
    def minimize(self, theta: torch.Tensor, loss_fn, steps: int) -> int:
        """Hook (:meth:`~dualgap.policies.PolicyClass.minimize`): ``steps`` Adam steps on a
        float32 copy of ``theta`` (the learning rate cosine-annealed from ``learning_rate`` to a
        twentieth of it), written back into ``theta`` in place; returns ``steps``.

        Every :meth:`~dualgap.policies.PolicyClass.fit` stage runs it, so a fit is a float32
        Adam distillation measured exactly in float64 (its ``nu`` is a valid upper estimate for
        the target whatever the optimizer reached)."""
        steps = int(steps)
        th32 = theta.detach().to(torch.float32).clone().requires_grad_(True)
        opt = torch.optim.Adam([th32], lr=self.learning_rate)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps,
                                                           eta_min=self.learning_rate / 20.0)
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(th32).backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            theta.copy_(th32.detach().to(theta.dtype))
        return steps

    def maximize_lagrangian(self, lam: torch.Tensor, theta0: torch.Tensor | None = None,
                            budget: int | None = None, *, method: str = "auto",
                            problem: AlignmentProblem | None = None
                            ) -> tuple[torch.Tensor, int]:
        """Hook (:meth:`~dualgap.policies.PolicyClass.maximize_lagrangian`): the reverse-KL
        distillation of ``pi_lam`` by :meth:`minimize` (Adam), since
        ``L(pi_theta, lam) = D(lam) - beta E_rho KL(pi_theta || pi_lam)``.

        ``budget``: Adam steps (default :attr:`steps` from the class's start, :attr:`warm_steps`
        from a given ``theta0``).  ``method``: only ``"auto"`` (the natural and L-BFGS steps of
        the base class do not scale to these models)."""
        from ...dual import lagrangian_policy

        if method != "auto":
            raise ValueError(f"method: {self!r} maximizes the Lagrangian by Adam; only 'auto' "
                             f"is available, got {method!r}")
        pb = self.problem if problem is None else problem
        n = (self.steps if theta0 is None else self.warm_steps) if budget is None else budget
        target = lagrangian_policy(pb, lam.detach().numpy())
        theta = (self.init_params() if theta0 is None else self.check_params(theta0)).detach()
        theta = theta.clone().requires_grad_(True)
        steps = self.minimize(theta, self.fit_loss(target, "reverse_kl"), int(n))
        return theta.detach(), steps

    def fit(self, target: np.ndarray, theta0: torch.Tensor | None = None, *,
            objective: str = "nu", steps: int = 300, starts: int = 1,
            seed: int = 0) -> FitResult:
        """:meth:`PolicyClass.fit`, remembered: a call with the same target, start and settings
        as one of the last :data:`FIT_MEMORY` returns (a copy of) that fit instead of running
        the same Adam steps again (the fit is deterministic; e.g. the gap report fits
        ``pi_lam*`` and ``pi_lam*_p`` from the same best theta when ``lam*_p = lam*``)."""
        import hashlib

        h = hashlib.sha1(np.ascontiguousarray(self.check_target(target)).tobytes())
        h.update(b"-" if theta0 is None else
                 np.ascontiguousarray(self.check_params(theta0).detach().numpy()).tobytes())
        key = (h.hexdigest(), objective, steps, starts, seed)
        if key not in self._fits:
            self._fits[key] = super().fit(target, theta0, objective=objective, steps=steps,
                                          starts=starts, seed=seed)
            while len(self._fits) > FIT_MEMORY:
                self._fits.pop(next(iter(self._fits)))
        got = self._fits[key]
        return replace(got, theta=got.theta.clone(), policy=got.policy.copy(),
                       l1=got.l1.copy(), kl_gap=got.kl_gap.copy())

    def init_params(self, seed: int | None = None) -> torch.Tensor:
        if seed is None:
            return self._theta0.clone()
        fresh = build_model(self.language, self.arch, seed=int(seed)).to(DTYPE)
        return torch.cat([p.detach().reshape(-1) for p in fresh.parameters()])

    def to_model(self, theta: torch.Tensor) -> Any:
        """A float32 ``GPT2LMHeadModel`` with weights ``theta`` (for generation or saving)."""
        theta = self.check_params(theta).detach()
        m = copy.deepcopy(self.model)
        with torch.no_grad():
            for p, v in zip(m.parameters(), torch.split(theta, self._sizes), strict=True):
                p.copy_(v.view(p.shape))
        return m.to(torch.float32)

    def params_of(self, model: Any) -> torch.Tensor:
        """The flat ``theta`` of a model of this architecture (e.g. a DPO iterate)."""
        names = [n for n, _ in model.named_parameters()]
        if names != self._names:
            raise ValueError("model: its parameters do not match the class's architecture "
                             f"{self.arch}")
        return torch.cat([p.detach().to(DTYPE).reshape(-1) for p in model.parameters()])

    def __repr__(self) -> str:
        a = self.arch
        return (f"TransformerPolicy(width={a.width}, depth={a.depth}, heads={a.heads}, "
                f"num_params={self.num_params})")
