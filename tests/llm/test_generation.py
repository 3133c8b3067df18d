"""Generation: a LoRA iterate is sampled on the base model of training (same revision, same
quantization settings); a full checkpoint loads on its own."""

from __future__ import annotations

import pytest

from dualgap.llm.config import LoraSettings, load_config

torch = pytest.importorskip("torch")


@pytest.fixture()
def base_and_adapter(tmp_path, tiny_llama_config):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(tiny_llama_config)
    base.save_pretrained(tmp_path / "base")
    peft = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, task_type="CAUSAL_LM"))
    peft.save_pretrained(tmp_path / "adapter")
    return tmp_path / "base", tmp_path / "adapter"


def _record_from_pretrained(monkeypatch):
    """Record the kwargs of every AutoModelForCausalLM.from_pretrained call (the revision is
    dropped before the real call: local directories have none)."""
    from transformers import AutoModelForCausalLM

    calls = []
    real = AutoModelForCausalLM.from_pretrained

    def recording(path, **kwargs):
        calls.append((str(path), dict(kwargs)))
        kwargs.pop("revision", None)
        return real(path, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", recording)
    return calls


def test_lora_iterate_loads_the_training_base(base_and_adapter, monkeypatch):
    from dualgap.llm.generation import base_model_kwargs, load_policy

    base, adapter = base_and_adapter
    calls = _record_from_pretrained(monkeypatch)
    lora = LoraSettings(enabled=True)
    model = load_policy(adapter, base=base, revision="v1.0", lora=lora)
    (path, kwargs), = calls
    assert path == str(base) and kwargs["revision"] == "v1.0"
    assert kwargs.keys() == base_model_kwargs("float32", lora, "v1.0").keys()
    assert not model.training
    # the DPO step builds the base from the same arguments (shared by construction)
    from dualgap.llm import policy_step

    calls.clear()
    policy_step._load(base, "float32", lora, "v1.0")
    assert calls[0][1].keys() == kwargs.keys() and calls[0][1]["revision"] == "v1.0"


def test_run_passes_revision_and_quantization_for_lora_iterates(tmp_path, monkeypatch):
    import dualgap.llm.generation as generation
    from dualgap.llm.rundir import Run

    seen = []
    monkeypatch.setattr(generation, "load_policy", lambda path, **kw: seen.append((path, kw)))
    cfg = load_config("tiny", ["policy.lora.enabled=true", "policy.lora.load_in_4bit=true",
                               "policy.revision=abc123"])
    run = Run(tmp_path, cfg, progress=False)
    run.state = {"completed": ["setup"], "reference_path": "org/base"}
    run.load_policy(-1)
    run.load_policy(1)
    assert [p for p, _ in seen] == ["org/base", str(run.checkpoint(1))]
    for _, kw in seen:  # pi_ref and the LoRA iterate: the base at its revision, as trained
        assert kw["base"] == "org/base" and kw["revision"] == "abc123"
        assert kw["lora"] == cfg.policy.lora and kw["lora"].load_in_4bit
    full = Run(tmp_path, load_config("tiny", ["policy.revision=abc123"]), progress=False)
    full.state = run.state
    seen.clear()
    full.load_policy(0)  # a full checkpoint in the run directory has no revision
    assert seen[0][1]["revision"] is None


def test_4bit_needs_cuda_and_bitsandbytes():
    from dualgap.llm.generation import base_model_kwargs

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="policy.lora.load_in_4bit: needs bitsandbytes and CUDA"):
        base_model_kwargs("float32", LoraSettings(enabled=True, load_in_4bit=True))
