"""The prefix-tree forward pass against the library's own GPT-2 forward (float64 rounding)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dualgap.llm.synthetic.config import TransformerArch  # noqa: E402
from dualgap.llm.synthetic.forward import check_config, prefix_tree_logits  # noqa: E402
from dualgap.llm.synthetic.language import SyntheticLanguage  # noqa: E402
from dualgap.llm.synthetic.model import build_model, teacher_forcing_inputs  # noqa: E402


@pytest.mark.parametrize("arch, L, prompt_length", [
    (TransformerArch(16, 2, 2), 3, 2), (TransformerArch(8, 1, 1), 2, 1),
    (TransformerArch(12, 3, 3), 4, 2)])
def test_tree_logits_match_the_full_forward(arch, L, prompt_length):
    lang = SyntheticLanguage(topics=("cook", "chem"), words=("recipe", "mix", "sorry"),
                             prompt_length=prompt_length, max_response_length=L)
    model = build_model(lang, arch, seed=3).double().eval()
    with torch.no_grad():  # perturb every weight so no parameter sits at its init value
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    inputs = teacher_forcing_inputs(lang)  # size = (X n^{L-1}, prompt_length + L - 1)
    with torch.no_grad():
        full = model(input_ids=inputs, use_cache=False).logits
        levels = prefix_tree_logits(dict(model.named_parameters()), model.config,
                                    torch.as_tensor(lang.prompt_ids), lang.alphabet_size, L)
    n, X = lang.alphabet_size, lang.num_prompts
    assert [lv.shape for lv in levels] == [(X * n ** j, lang.vocab_size) for j in range(L)]
    for j, lv in enumerate(levels):
        # the full sequences' logits at response step j, one row per tree node (the first of
        # the n^{L-1-j} sequences that extend it)
        want = full[:: n ** (L - 1 - j), prompt_length - 1 + j]
        assert torch.allclose(lv, want, rtol=0, atol=1e-12), (j, (lv - want).abs().max())


def test_tree_logits_are_differentiable():
    lang = SyntheticLanguage(topics=("cook",), words=("recipe", "tip"), prompt_length=1,
                             max_response_length=2)
    model = build_model(lang, TransformerArch(8, 1, 2), seed=0).double()
    params = {k: p.detach().clone().requires_grad_(True) for k, p in model.named_parameters()}
    levels = prefix_tree_logits(params, model.config, torch.as_tensor(lang.prompt_ids),
                                lang.alphabet_size, 2)
    sum(lv.sum() for lv in levels).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())


def test_unsupported_configs_are_named():
    lang = SyntheticLanguage(topics=("cook",), words=("recipe",), max_response_length=2)
    model = build_model(lang, TransformerArch(4, 1, 1))
    check_config(model.config)
    model.config.activation_function = "relu"
    with pytest.raises(ValueError, match="activation_function"):
        check_config(model.config)
    model.config.activation_function = "gelu_new"
    model.config.attn_pdrop = 0.1
    with pytest.raises(ValueError, match="attn_pdrop"):
        check_config(model.config)
