"""Sampling K responses per prompt from a policy, batched and split across processes.

The ``N x K`` requests are laid out prompt-major and cut into batches of
``GenerationSettings.batch_size``; batch ``j`` is sampled with ``torch.manual_seed(s_j)``, where
``s_j`` is derived from ``(seed, j)``, on rank ``j mod world_size``, and the texts are gathered
back in order.  A batch's content, padding and seed do not depend on the number of processes, so
one process and several give the same samples (up to the floating-point noise of the weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import GenerationSettings, LoraSettings
from .distributed import map_sharded

__all__ = ["derive_seed", "load_policy", "base_model_kwargs", "generate_samples",
           "generate_one_at_a_time", "is_adapter_dir"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def base_model_kwargs(dtype: str, lora: LoraSettings | None = None,
                      revision: str | None = None) -> dict[str, Any]:
    """The ``from_pretrained`` arguments of the base model ``pi_ref``, shared by the DPO step
    and generation so that a LoRA iterate is sampled on the base it was trained on: the dtype,
    the revision and, with ``lora.load_in_4bit``, the same 4-bit (nf4) quantization."""
    import torch

    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)}
    if revision is not None:
        kwargs["revision"] = revision
    if lora is not None and lora.enabled and lora.load_in_4bit:
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available():
            raise ValueError("policy.lora.load_in_4bit: needs bitsandbytes and CUDA")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16)
    return kwargs


def load_policy(path: str | Path, base: str | Path | None = None, dtype: str = "float32",
                device: Any = None, revision: str | None = None, merge: bool = True,
                lora: LoraSettings | None = None):
    """A causal LM in eval mode: a full checkpoint (at ``revision``), or ``base`` (at
    ``revision``, quantized as ``lora`` says, exactly as in training) + the LoRA adapter in
    ``path``, merged for speed unless ``merge=False`` or the base is quantized."""
    from transformers import AutoModelForCausalLM

    kwargs = base_model_kwargs(dtype, lora, revision)
    if is_adapter_dir(path):
        from peft import PeftModel

        if base is None:
            raise ValueError(f"policy: {str(path)!r} holds a LoRA adapter; the base model is "
                             "needed")
        from .resolve import hub_errors

        with hub_errors("policy.model", str(base), revision):  # the training base, pi_ref
            model = AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
        model = PeftModel.from_pretrained(model, str(path))
        if merge and "quantization_config" not in kwargs:
            model = model.merge_and_unload()
    else:
        kwargs.pop("quantization_config", None)  # a full checkpoint was trained unquantized
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if device is not None and "quantization_config" not in kwargs:
        model.to(device)
    model.eval()
    return model


def _generate_batch(model: Any, tokenizer: Any, texts: list[str], settings: GenerationSettings,
                    seed: int) -> list[str]:
    import torch

    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    dev = next(model.parameters()).device
    enc = {k: v.to(dev) for k, v in enc.items()}
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            **enc, do_sample=True, temperature=settings.temperature, top_p=settings.top_p,
            top_k=0, max_new_tokens=settings.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )
    new = out[:, enc["input_ids"].shape[1]:]  # size = (b, T)
    return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


def generate_samples(model: Any, tokenizer: Any, prompt_texts: Sequence[str], num_samples: int,
                     settings: GenerationSettings, seed: int, progress: bool = True,
                     desc: str = "generating") -> list[list[str]]:
    """``num_samples`` responses per prompt, a list ``(N,)`` of lists ``(K,)`` (every rank gets
    all of them)."""
    from tqdm.auto import tqdm

    from .distributed import rank, world_size

    if num_samples < 1:
        raise ValueError(f"num_samples: must be >= 1, got {num_samples}")
    requests = [(i, p) for i, p in enumerate(prompt_texts) for _ in range(num_samples)]
    bs = settings.batch_size
    batches = [requests[j:j + bs] for j in range(0, len(requests), bs)]
    mine = len(range(rank(), len(batches), world_size()))
    bar = tqdm(total=mine, desc=desc, disable=not progress, leave=False)

    def run(j: int, batch: list[tuple[int, str]]) -> list[str]:
        texts = _generate_batch(model, tokenizer, [p for _, p in batch], settings,
                                derive_seed(seed, j))
        bar.update(1)
        return texts

    flat = [t for part in map_sharded(run, batches) for t in part]
    bar.close()
    return [flat[i * num_samples:(i + 1) * num_samples] for i in range(len(prompt_texts))]


def generate_one_at_a_time(model: Any, tokenizer: Any, prompt_texts: Sequence[str],
                           num_samples: int, settings: GenerationSettings, seed: int,
                           progress: bool = False) -> list[list[str]]:
    """The same requests, one ``generate`` call per sample (the benchmark's baseline)."""
    from tqdm.auto import tqdm

    out = []
    for i, p in enumerate(tqdm(prompt_texts, desc="generating (unbatched)", disable=not progress)):
        out.append([_generate_batch(model, tokenizer, [p], settings, derive_seed(seed, i, k))[0]
                    for k in range(num_samples)])
    return out
