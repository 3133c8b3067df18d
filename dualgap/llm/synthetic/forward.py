"""The exact next-token distributions of a GPT-2 on the synthetic language, on the prefix tree.

Every ``log pi(y|x)`` of :mod:`.model` needs ``q_j(. | x, t_{<j})`` for every prompt and every
prefix of length ``j - 1 < L``.  Running the model on the ``X n^{L-1}`` full sequences
``x t_1 .. t_{L-1}`` (one batch of ``prompt_length + L - 1`` positions each) recomputes every
shared prefix up to ``n^{L-1}`` times.  Causal attention makes the hidden state of a position
depend on its prefix only, so :func:`prefix_tree_logits` computes each distinct prefix once, a
tree level at a time: the prompts (``X`` sequences of ``prompt_length`` positions), then for
``j = 1 .. L-1`` the ``X n^j`` one-token extensions, whose queries attend to the keys and values
of their ancestors by a grouped product (each ancestor's keys are stored once, not repeated for
its descendants).  For the default language (16 prompts,
``n = 11``, ``L = 3``) that is 2,144 positions instead of 7,744.

The GPT-2 block is written out from the parameters (``functional_call``'s names of
``GPT2LMHeadModel``: pre-layer-norm blocks, ``Conv1D`` weights ``(in, out)``, attention scaled
by ``1/sqrt(head_dim)``, the tanh GELU ``gelu_new``, absolute positions, ``lm_head`` tied to the
token embedding unless given), so it is differentiable in the parameters and needs no
particular transformers version.  ``tests/llm/synthetic/test_forward.py`` checks it against the
library's own forward pass to float64 rounding.

Imports torch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["check_config", "prefix_tree_logits"]


def check_config(config: Any) -> None:
    """ValueError naming the field if a ``GPT2Config`` has a setting the tree forward does not
    implement (the ones :func:`.model.build_model` sets are all supported)."""
    wanted = {"activation_function": "gelu_new", "scale_attn_weights": True,
              "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
              "add_cross_attention": False}
    for key, value in wanted.items():
        got = getattr(config, key, value)
        if got != value:
            raise ValueError(f"model.config.{key}: the prefix-tree forward needs {value!r}, "
                             f"got {got!r}")
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if getattr(config, key, 0.0) not in (0, 0.0):
            raise ValueError(f"model.config.{key}: the exact probabilities need dropout 0, got "
                             f"{getattr(config, key)!r}")


def _attend(q: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor], n: int
            ) -> torch.Tensor:
    """Attention of level ``j = len(keys) - 1``'s queries ``q`` ``(B_j, H, hd)``, one new position
    per row, to every ancestor position and itself.

    ``keys[i]`` / ``values[i]``: level ``i``'s ``(B_i, H, T_i, hd)`` (``B_i = B_j / n^{j-i}``;
    level ``j``'s own, ``T_j = 1``).  Row ``r`` of level ``j`` descends from row
    ``r // n^{j-i}`` of level ``i`` (prompt-major, lexicographic), so each level's keys are used
    by a grouped product, never repeated."""
    j = len(keys) - 1
    B, H, hd = q.shape
    scores = []
    for i, k in enumerate(keys):
        g = n ** (j - i)  # descendants at level j of one level-i row
        qi = q.view(B // g, g, H, 1, hd)
        # size = (B_i, g, H, T_i): a broadcast product (T_i <= prompt_length is tiny)
        scores.append((qi * k[:, None]).sum(-1).reshape(B, H, k.shape[2]))
    w = torch.softmax(torch.cat(scores, dim=-1) / math.sqrt(hd), dim=-1)  # size = (B, H, T)
    out, start = None, 0
    for i, v in enumerate(values):
        g, t = n ** (j - i), v.shape[2]
        wi = w[..., start:start + t].reshape(B // g, g, H, t, 1)
        part = (wi * v[:, None]).sum(3).reshape(B, H, hd)
        out = part if out is None else out + part
        start += t
    return out


def _block(p: dict[str, torch.Tensor], i: int, x: torch.Tensor, heads: int, eps: float,
           keys: list[torch.Tensor], values: list[torch.Tensor], n: int) -> torch.Tensor:
    """GPT-2 block ``i`` on one tree level ``x`` ``(B, T, d)`` (the prompts, ``T =
    prompt_length``; or one new position per row, ``T = 1``).  ``keys`` / ``values``: the
    earlier levels' keys and values in this block (empty for the prompts); this level's are
    appended.  Returns the block's output."""
    pre = f"transformer.h.{i}."
    B, T, d = x.shape
    hd = d // heads
    a = F.layer_norm(x, (d,), p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], eps)
    qkv = torch.addmm(p[pre + "attn.c_attn.bias"], a.reshape(B * T, d),
                      p[pre + "attn.c_attn.weight"]).view(B, T, 3, heads, hd)
    q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # size = (B, H, T, hd) each
    keys.append(k)
    values.append(v)
    if len(keys) == 1:  # the prompts: causal attention among their own positions
        s = q @ k.transpose(-1, -2) / math.sqrt(hd)  # size = (B, H, T, T)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        w = torch.softmax(s.masked_fill(~causal, float("-inf")), dim=-1)
        att = (w @ v).transpose(1, 2).reshape(B * T, d)
    else:
        att = _attend(q[:, :, 0], keys, values, n).reshape(B, d)
    x = x + torch.addmm(p[pre + "attn.c_proj.bias"], att,
                        p[pre + "attn.c_proj.weight"]).view(B, T, d)
    m = F.layer_norm(x, (d,), p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], eps)
    m = F.gelu(torch.addmm(p[pre + "mlp.c_fc.bias"], m.reshape(B * T, d),
                           p[pre + "mlp.c_fc.weight"]), approximate="tanh")  # = gelu_new
    return x + torch.addmm(p[pre + "mlp.c_proj.bias"], m,
                           p[pre + "mlp.c_proj.weight"]).view(B, T, d)


def prefix_tree_logits(params: dict[str, torch.Tensor], config: Any, prompt_ids: torch.Tensor,
                       alphabet_size: int, levels: int) -> list[torch.Tensor]:
    """The next-token logits at every node of the prefix tree, level by level.

    ``params``: the model's parameters by name (``named_parameters()``, or a flat ``theta``
    split the same way); ``config``: its ``GPT2Config``; ``prompt_ids`` ``(X, prompt_length)``;
    the alphabet is token ids ``1 .. alphabet_size``.  Returns ``levels`` tensors, the ``j``-th
    ``(X n^j, V)``: the logits after prompt ``x`` and prefix ``t_1 .. t_j`` (rows prompt-major,
    prefixes in lexicographic order), i.e. of ``q_{j+1}``.
    """
    n, heads, eps = int(alphabet_size), config.n_head, config.layer_norm_epsilon
    wte, wpe = params["transformer.wte.weight"], params["transformer.wpe.weight"]
    head = params.get("lm_head.weight", wte)
    X, Pl = prompt_ids.shape
    alphabet = torch.arange(1, n + 1)
    keys: list[list[torch.Tensor]] = [[] for _ in range(config.n_layer)]
    values: list[list[torch.Tensor]] = [[] for _ in range(config.n_layer)]
    out = []
    for j in range(int(levels)):
        if j == 0:
            x = wte[prompt_ids] + wpe[:Pl][None]  # size = (X, Pl, d)
        else:
            x = (wte[alphabet.repeat(X * n ** (j - 1))] + wpe[Pl + j - 1])[:, None, :]
        for i in range(config.n_layer):
            x = _block(params, i, x, heads, eps, keys[i], values[i], n)
        h = F.layer_norm(x[:, -1], (x.shape[-1],), params["transformer.ln_f.weight"],
                         params["transformer.ln_f.bias"], eps)
        out.append(h @ head.T)
    return out
