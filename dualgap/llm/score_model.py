"""safe-rlhf score models (e.g. PKU-Alignment/beaver-7b-v1.0-reward / -cost) without their code.

Checkpoint layouts (docs/llm.md), both of which safe-rlhf loads:

* ``<Backbone>ForScore`` (``LlamaForScore``, ``GPT2ForScore``, ``OPTForScore``, ...), the head's
  bias switched by the config key ``score_bias`` (default true);
* the older ``<Backbone>ModelForScore`` (``LlamaModelForScore``, e.g. the beaver-7b-v1.0 models),
  the head's bias switched by the config key ``bias`` (default false).

Both carry ``score_dim``, ``score_type``, ``do_normalize``, ``normalizer_type`` and possibly
``mean``/``var``; the weights hold the backbone under its attribute prefix (``model.`` for
Llama; ``transformer.`` for GPT-2), ``score_head.weight`` (``score_dim x hidden``),
``score_head.bias`` when the head has a bias, and ``normalizer.mean``/``.var``/``.count``, in
sharded PyTorch ``.bin`` or safetensors files.

As upstream's ``AutoModelForScore`` does, the backbone class is chosen by the config's
``model_type`` (transformers' own ``AutoModel`` mapping: ``llama -> LlamaModel``), whatever the
architecture's name; the tensors are read with safetensors or
``torch.load(weights_only=True)`` (nothing but tensors is unpickled), the prefix is remapped, and
the score of a sequence is::

    s = W h_T + b                       h_T: last hidden state at the last position whose
                                        attention mask is 1 (safe-rlhf's ``end_scores``)
    s <- (s - mean) / (sqrt(var) + 1e-8)   if do_normalize and score_type == "reward" (affine)
    s <- s / (sqrt(var) + 1e-8)            if do_normalize and score_type == "cost"   (scale)

No ``trust_remote_code`` anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["ScoreModel", "load_score_model", "read_checkpoint_tensors", "backbone_class_name",
           "head_has_bias", "NORMALIZE_FUNCTIONS"]

#: safe-rlhf's normalization by score type.
NORMALIZE_FUNCTIONS = {"reward": "affine", "cost": "scale", "critic": "identity"}
_EPS = 1e-8


def backbone_class_name(architecture: str) -> str:
    """``LlamaForScore`` or ``LlamaModelForScore`` -> ``LlamaModel`` (the transformers
    base-model class the architecture's name points to; the loader dispatches on
    ``model_type`` and checks that the two agree)."""
    if not architecture.endswith("ForScore"):
        raise ValueError(f"architectures: expected '<Backbone>ForScore' or "
                         f"'<Backbone>ModelForScore', got {architecture!r}")
    stem = architecture[: -len("ForScore")]
    return stem if stem.endswith("Model") else stem + "Model"


def head_has_bias(architecture: str, raw_config: dict) -> bool:
    """Whether ``score_head`` has a bias: ``score_bias`` (default true) for ``<X>ForScore``,
    ``bias`` (default false) for the older ``<X>ModelForScore``."""
    if architecture.endswith("ModelForScore"):
        key, default = "bias", False
    else:
        key, default = "score_bias", True
    value = raw_config.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"config.json: {key} must be true or false, got {value!r}")
    return value


def _resolve(path: str, revision: str | None) -> Path:
    p = Path(path)
    if p.is_dir():
        return p
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path, revision=revision, allow_patterns=[
        "*.json", "*.safetensors", "*.bin", "*.model", "*.txt"]))


def read_checkpoint_tensors(directory: str | Path):
    """Yield ``(name, tensor)`` from every weight file (safetensors preferred; ``.bin`` read with
    ``torch.load(weights_only=True)``), shard by shard."""
    import torch

    directory = Path(directory)
    files: list[Path] = []
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = directory / index_name
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = [directory / f for f in dict.fromkeys(weight_map.values())]
            break
        if (directory / single).exists():
            files = [directory / single]
            break
    if not files:
        raise ValueError(f"path: no safetensors or pytorch_model*.bin weights in "
                         f"{str(directory)!r}")
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(f))
        else:
            tensors = torch.load(str(f), map_location="cpu", weights_only=True)
        yield from tensors.items()
        del tensors


class ScoreModel:
    """A safe-rlhf score model: transformers backbone + ``score_head`` (with bias) + normalizer.

    Call :meth:`end_scores` on token ids and an attention mask (any padding side).
    """

    def __init__(self, backbone: Any, head_weight: Any, head_bias: Any, mean: Any, var: Any,
                 normalize_function: str, do_normalize: bool, config: Any) -> None:
        self.backbone = backbone
        self.head_weight = head_weight  # size = (D, H)
        self.head_bias = head_bias  # size = (D,)
        self.mean = mean  # size = (D,)
        self.var = var  # size = (D,)
        self.normalize_function = normalize_function
        self.do_normalize = do_normalize
        self.config = config

    @property
    def device(self):
        return self.head_weight.device

    def to(self, device: Any) -> ScoreModel:
        self.backbone.to(device)
        for name in ("head_weight", "head_bias", "mean", "var"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def end_scores(self, input_ids: Any, attention_mask: Any) -> Any:
        """Scores at the last attended position, float32 ``(B, D)``."""
        import torch

        with torch.no_grad():
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
            hidden = out.last_hidden_state  # size = (B, L, H)
            L = attention_mask.shape[1]
            positions = torch.arange(L, device=attention_mask.device).expand_as(attention_mask)
            masked = torch.where(attention_mask.bool(), positions, -1)  # size = (B, L)
            last = masked.max(dim=1).values  # size = (B,)
            if (last < 0).any():
                raise ValueError("attention_mask: a sequence has no attended position")
            h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # size = (B, H)
            s = h.float() @ self.head_weight.float().T + self.head_bias.float()  # size = (B, D)
            if self.do_normalize:
                std = self.var.float().sqrt()
                if self.normalize_function == "affine":
                    s = (s - self.mean.float()) / (std + _EPS)
                elif self.normalize_function == "scale":
                    s = s / (std + _EPS)
                elif self.normalize_function == "translate":
                    s = s - self.mean.float()
                elif self.normalize_function != "identity":
                    raise ValueError(f"normalize_function: unknown {self.normalize_function!r}")
            return s


def load_score_model(path: str, revision: str | None = None, dtype: str = "float32",
                     device: Any = "cpu") -> tuple[ScoreModel, Path]:
    """Load a safe-rlhf score model; returns ``(model, local_directory)``.

    Raises:
        ValueError: unknown architecture, missing or unexpected tensors (named).
    """
    import torch
    from transformers import AutoConfig
    from transformers.initialization import no_init_weights
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    directory = _resolve(path, revision)
    raw = json.loads((directory / "config.json").read_text())
    archs = raw.get("architectures") or []
    if len(archs) != 1:
        raise ValueError(f"config.json: expected one architecture, got {archs!r}")
    cls_name = backbone_class_name(archs[0])
    config = AutoConfig.from_pretrained(str(directory))
    cls = MODEL_MAPPING.get(type(config), None)  # model_type -> backbone, as AutoModel
    if cls is None:
        raise ValueError(f"config.json: transformers has no backbone model for model_type "
                         f"{raw.get('model_type')!r}")
    if cls.__name__ != cls_name:
        raise ValueError(f"config.json: architecture {archs[0]!r} does not match model_type "
                         f"{raw.get('model_type')!r} (backbone {cls.__name__})")
    torch_dtype = getattr(torch, dtype)
    with no_init_weights():
        backbone = cls._from_config(config, dtype=torch_dtype)
    expected = backbone.state_dict()
    loaded: set[str] = set()
    head: dict[str, Any] = {}
    unexpected: list[str] = []
    for name, tensor in read_checkpoint_tensors(directory):
        if name.startswith(("score_head.", "normalizer.")):
            head[name] = tensor
            continue
        target = name if name in expected else name.split(".", 1)[-1]
        if target not in expected:
            unexpected.append(name)
            continue
        if expected[target].shape != tensor.shape:
            raise ValueError(f"{name}: shape {tuple(tensor.shape)} does not match the backbone's "
                             f"{target} {tuple(expected[target].shape)}")
        with torch.no_grad():
            expected[target].copy_(tensor.to(expected[target].dtype))
        loaded.add(target)
    persistent = set(backbone.state_dict().keys())
    missing = sorted(persistent - loaded)
    if missing:
        raise ValueError(f"{directory.name}: backbone tensors missing from the checkpoint: "
                         f"{missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        raise ValueError(f"{directory.name}: unexpected tensors {unexpected[:5]}")
    if "score_head.weight" not in head:
        raise ValueError(f"{directory.name}: no score_head.weight in the checkpoint")
    w = head["score_head.weight"].float()
    score_dim = int(raw.get("score_dim", w.shape[0]))
    if w.shape[0] != score_dim:
        raise ValueError(f"score_head.weight: {w.shape[0]} rows, config score_dim {score_dim}")
    bias_key = "bias" if archs[0].endswith("ModelForScore") else "score_bias"
    if head_has_bias(archs[0], raw):
        if "score_head.bias" not in head:
            raise ValueError(f"{directory.name}: {bias_key} is true but score_head.bias is missing")
        b = head["score_head.bias"].float()
    else:
        if "score_head.bias" in head:
            raise ValueError(f"{directory.name}: the checkpoint has score_head.bias but "
                             f"config.json's {bias_key} is false or absent (unused weights)")
        b = torch.zeros(score_dim)
    mean = head.get("normalizer.mean")
    var = head.get("normalizer.var")
    if mean is None and raw.get("mean") is not None:
        mean = torch.as_tensor(raw["mean"], dtype=torch.float32).reshape(score_dim)
    if var is None and raw.get("var") is not None:
        var = torch.as_tensor(raw["var"], dtype=torch.float32).reshape(score_dim)
    mean = torch.zeros(score_dim) if mean is None else mean.float().reshape(score_dim)
    var = torch.ones(score_dim) if var is None else var.float().reshape(score_dim)
    score_type = raw.get("score_type", "reward")
    fn = raw.get("normalize_function") or NORMALIZE_FUNCTIONS.get(score_type)
    if fn is None:
        raise ValueError(f"score_type: unknown {score_type!r}")
    backbone.eval()
    model = ScoreModel(backbone, w, b, mean, var, fn, bool(raw.get("do_normalize", False)), raw)
    return model.to(device), directory
