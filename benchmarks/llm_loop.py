"""Benchmark: one CAID iteration on the tiny config, and the GPU throughput of a ~1B model.

    python benchmarks/llm_loop.py                    # CPU part; GPU part when CUDA is there
    python benchmarks/llm_loop.py --repeats 1 --out /tmp/llm.json --md /tmp/llm.md

Measured:

* time per CAID iteration split into generation, scoring and DPO (the run's own timings, from
  ``metrics.jsonl`` of a tiny run: 2 iterations, 8 prompts x 8 samples, 32 pairs);
* the DPO policy step (:func:`dualgap.llm.policy_step.dpo_step`: load start and reference,
  build the trainer, train one epoch, save) against a plain TRL ``DPOTrainer`` script doing
  the same on the same records with the same ``DPOConfig`` (target: ratio <= 1.05);
* batched generation (:func:`dualgap.llm.generation.generate_samples`) against one
  ``generate`` call per sample (target: speed-up >= 5);
* with CUDA: a randomly initialized Llama-shaped model of about 1B parameters in bf16
  (trained weights are not needed for throughput): tokens/s of generation, of scoring (a
  score-model forward: backbone + head at the last token) and of DPO, naming the card.
  Without CUDA this section is recorded as skipped.

Timings are medians over ``--repeats`` runs after one warm-up (imports are not counted).
Writes ``benchmarks/results/llm_loop.json`` and ``benchmarks/results/llm_loop.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def caid_iteration(tmp: Path) -> dict:
    from dualgap.llm.run import read_jsonl, train

    run = train("tiny", tmp / "run", progress=False)
    metrics = read_jsonl(run.directory / "metrics.jsonl")
    hist = read_jsonl(run.directory / "lam_history.jsonl")
    rows = []
    for t in range(run.config.iterations):
        pol = next(m for m in metrics if m["stage"] == f"policy_{t}")
        dual = next(h for h in hist if h["stage"] == f"dual_{t}")
        src = dual["timing"] if dual["timing"] else next(
            m for m in metrics if m["stage"] == "reference")["timing"]
        rows.append({"iteration": t, "dual_source": "reference samples" if t == 0 else
                     f"iterate {t - 1}", "generation_s": src.get("generation_s", 0.0),
                     "scoring_s": src.get("scoring_s", 0.0), "dpo_s": pol["timing"]["dpo_s"]})
    return {"run": str(run.directory), "rows": rows, "config": "tiny", "dual": {
        "num_prompts": run.config.dual.num_prompts,
        "samples_per_prompt": run.config.dual.samples_per_prompt,
        "max_new_tokens": run.config.generation.max_new_tokens}}


def dpo_overhead(run_dir: Path, repeats: int) -> dict:
    """dualgap's policy step against a plain TRL script on the same records and config."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    from dualgap.llm.config import load_config
    from dualgap.llm.data import format_prompt, load_pairs
    from dualgap.llm.policy_step import dpo_step, make_dpo_config
    from dualgap.llm.preferences import preference_dataset, pseudo_labels

    cfg = load_config(run_dir / "config.yaml")
    ref = run_dir / "models" / "reference"
    tok = AutoTokenizer.from_pretrained(str(ref))
    pairs = load_pairs(cfg.data.source, "train", max_pairs=cfg.data.max_train_pairs)
    pool = np.load(run_dir / "scores" / "pool.npz")
    labels = pseudo_labels(pool["reward"], pool["utilities"], [1.0], seed=0)
    records = preference_dataset([format_prompt(p) for p in pairs.prompts], pairs.response_0,
                                 pairs.response_1, labels)
    out = Path(tempfile.mkdtemp())

    def ours():
        dpo_step(records, ref, ref, tok, out / "ours", cfg.train, cfg.beta, seed=1,
                 progress=False)

    def plain():
        model = AutoModelForCausalLM.from_pretrained(str(ref), dtype=torch.float32)
        ref_model = AutoModelForCausalLM.from_pretrained(str(ref), dtype=torch.float32)
        args = make_dpo_config(cfg.train, cfg.beta, out / "plain.work", seed=1, progress=False)
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=args,
                             train_dataset=Dataset.from_dict(records), processing_class=tok)
        trainer.train()
        trainer.save_model(str(out / "plain"))

    # interleave so that machine noise hits both alike
    t_ours, t_plain = [], []
    ours()
    plain()
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain()
        t_plain.append(time.perf_counter() - t0)
    mo, mp = statistics.median(t_ours), statistics.median(t_plain)
    return {"pairs": len(labels), "dualgap_s": mo, "plain_trl_s": mp, "ratio": mo / mp,
            "target": "<= 1.05", "met": mo / mp <= 1.05, "dualgap_all": t_ours,
            "plain_all": t_plain}


def generation_speedup(run_dir: Path, repeats: int) -> dict:
    from transformers import AutoTokenizer

    from dualgap.llm.config import load_config
    from dualgap.llm.data import format_prompt, load_pairs
    from dualgap.llm.generation import generate_one_at_a_time, generate_samples, load_policy

    cfg = load_config(run_dir / "config.yaml")
    ref = run_dir / "models" / "reference"
    tok = AutoTokenizer.from_pretrained(str(ref))
    model = load_policy(ref)
    prompts = [format_prompt(p) for p in load_pairs("builtin:tiny", "train").unique_prompts()[:8]]
    K = 8
    tb, _ = _median_time(lambda: generate_samples(model, tok, prompts, K, cfg.generation, 0,
                                                  progress=False), repeats)
    t1, _ = _median_time(lambda: generate_one_at_a_time(model, tok, prompts, K, cfg.generation,
                                                        0), repeats)
    return {"prompts": len(prompts), "samples_per_prompt": K,
            "max_new_tokens": cfg.generation.max_new_tokens,
            "batch_size": cfg.generation.batch_size, "batched_s": tb, "one_at_a_time_s": t1,
            "speedup": t1 / tb, "target": ">= 5", "met": t1 / tb >= 5}


def gpu_throughput(smoke: bool = False) -> dict:
    """Tokens/s of a ~1B Llama-shaped model (random weights, bf16) on the first CUDA device.

    ``smoke``: the same stages on CPU with a 2-layer float32 model and tiny batches (seconds),
    so the code path is exercised where no GPU is.
    """
    import torch

    if not smoke and not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel
    from trl import DPOTrainer

    from dualgap.llm.config import TrainSettings
    from dualgap.llm.policy_step import make_dpo_config
    from dualgap.llm.tiny import build_tiny_tokenizer

    dev = torch.device("cpu" if smoke else "cuda")
    dtype = torch.float32 if smoke else torch.bfloat16
    sync = (lambda: None) if smoke else torch.cuda.synchronize
    tok = build_tiny_tokenizer()
    shape = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2) if smoke else
             dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
                  num_attention_heads=32, num_key_value_heads=8))
    conf = LlamaConfig(vocab_size=32000, **shape,
                       max_position_embeddings=2048, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(conf).to(dev, dtype).eval()
    n_params = sum(p.numel() for p in model.parameters())
    out: dict = {"card": "cpu (smoke)" if smoke else torch.cuda.get_device_name(0),
                 "parameters": n_params, "dtype": str(dtype).replace("torch.", "")}
    # generation: batch 64, prompt 64 tokens, 256 new tokens (eos never stops it: min_new_tokens)
    B, P, T = (2, 8, 8) if smoke else (64, 64, 256)
    ids = torch.randint(10, len(tok), (B, P), device=dev)
    mask = torch.ones_like(ids)

    def gen():
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_p=0.9,
                           temperature=1.0, max_new_tokens=T, min_new_tokens=T,
                           pad_token_id=tok.pad_token_id)
        sync()

    tg, _ = _median_time(gen, 1 if smoke else 2)
    out["generation"] = {"batch": B, "prompt_tokens": P, "new_tokens": T, "seconds": tg,
                         "new_tokens_per_s": B * T / tg}
    # scoring: backbone + head at the last token, batch 32 x 512
    backbone = LlamaModel(conf).to(dev, dtype).eval()
    head = torch.nn.Linear(conf.hidden_size, 1, bias=True).to(dev, dtype)
    sb, sl = (2, 16) if smoke else (32, 512)
    sids = torch.randint(10, len(tok), (sb, sl), device=dev)

    def score():
        with torch.no_grad():
            h = backbone(input_ids=sids).last_hidden_state[:, -1]
            head(h)
        sync()

    ts, _ = _median_time(score, 1 if smoke else 3)
    out["scoring"] = {"batch": sb, "tokens": sl, "seconds": ts, "tokens_per_s": sb * sl / ts}
    backbone = head = None  # free the GPU memory before DPO
    # DPO: 64 pairs of ~200-token texts, global batch 8, full fine-tuning in bf16
    rng = np.random.default_rng(0)
    vocab = [w for w in tok.get_vocab() if not w.startswith("<")]

    def text(n):
        return " ".join(rng.choice(vocab, n))

    pairs, lp, lc = (4, 6, 10) if smoke else (64, 60, 140)
    records = {"prompt": [text(lp) for _ in range(pairs)],
               "chosen": [" " + text(lc) for _ in range(pairs)],
               "rejected": [" " + text(lc) for _ in range(pairs)]}
    settings = TrainSettings(learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0,
                             max_length=512, batch_size=2 if smoke else 8,
                             gradient_checkpointing=not smoke, bf16=not smoke, logging_steps=100)
    model.train()
    ref_model = LlamaForCausalLM(conf).to(dev, dtype).eval()
    with tempfile.TemporaryDirectory() as tmp:
        args = make_dpo_config(settings, 0.1, tmp, seed=0, progress=False)
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=args,
                             train_dataset=Dataset.from_dict(records), processing_class=tok)
        t0 = time.perf_counter()
        trainer.train()
        sync()
        td = time.perf_counter() - t0
    n_tok = sum(len(tok(p + c)["input_ids"]) + len(tok(p + r)["input_ids"])
                for p, c, r in zip(records["prompt"], records["chosen"], records["rejected"],
                                   strict=True))
    out["dpo"] = {"pairs": pairs, "batch": settings.batch_size, "seconds": td,
                  "tokens_per_s": n_tok / td,
                  "note": "includes the first step's warm-up"}
    return out


def markdown(res: dict) -> str:
    lines = ["# LLM loop benchmark (`python benchmarks/llm_loop.py`)", "",
             f"Machine: {res['machine']}. Timings: medians over {res['repeats']} runs after a "
             "warm-up; the machine is shared and noisy, compare ratios.", "",
             "## One CAID iteration on the tiny config", "",
             f"Dual statistics from {res['caid']['dual']['num_prompts']} prompts x "
             f"{res['caid']['dual']['samples_per_prompt']} samples "
             f"({res['caid']['dual']['max_new_tokens']} new tokens); DPO on 32 pairs.", "",
             "| iteration | dual samples from | generation [s] | scoring [s] | DPO [s] |",
             "|---|---|---|---|---|"]
    for r in res["caid"]["rows"]:
        lines.append(f"| {r['iteration']} | {r['dual_source']} | {r['generation_s']:.3f} | "
                     f"{r['scoring_s']:.4f} | {r['dpo_s']:.3f} |")
    d, g = res["dpo_overhead"], res["generation"]
    lines += ["", "## Overheads against the plain tools", "",
              "| comparison | dualgap [s] | baseline [s] | ratio | target | met |",
              "|---|---|---|---|---|---|",
              f"| DPO policy step vs plain TRL DPOTrainer ({d['pairs']} pairs) | "
              f"{d['dualgap_s']:.3f} | {d['plain_trl_s']:.3f} | {d['ratio']:.3f} | "
              f"{d['target']} | {'yes' if d['met'] else 'NO'} |",
              f"| batched generation vs one call per sample ({g['prompts']} x "
              f"{g['samples_per_prompt']}) | {g['batched_s']:.3f} | {g['one_at_a_time_s']:.3f} "
              f"| {g['speedup']:.1f}x faster | {g['target']} | {'yes' if g['met'] else 'NO'} |",
              "", "## GPU throughput (~1B Llama-shaped model, random weights, bf16)", ""]
    gpu = res["gpu"]
    if "skipped" in gpu:
        lines.append(f"Skipped: {gpu['skipped']}.")
    else:
        lines += [f"Card: {gpu['card']}; {gpu['parameters'] / 1e9:.2f}B parameters.", "",
                  "| stage | setting | tokens/s |", "|---|---|---|",
                  f"| generation | batch {gpu['generation']['batch']}, "
                  f"{gpu['generation']['new_tokens']} new tokens | "
                  f"{gpu['generation']['new_tokens_per_s']:.0f} |",
                  f"| scoring | batch {gpu['scoring']['batch']} x {gpu['scoring']['tokens']} | "
                  f"{gpu['scoring']['tokens_per_s']:.0f} |",
                  f"| DPO | {gpu['dpo']['pairs']} pairs, batch {gpu['dpo']['batch']} | "
                  f"{gpu['dpo']['tokens_per_s']:.0f} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "llm_loop.json"))
    ap.add_argument("--md", default=str(HERE / "results" / "llm_loop.md"))
    ap.add_argument("--no-gpu", action="store_true", help="skip the GPU section")
    args = ap.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        res: dict = {"machine": f"{platform.processor() or platform.machine()}, "
                                f"{os.cpu_count()} CPUs, torch {torch.__version__}, "
                                f"{torch.get_num_threads()} threads",
                     "repeats": args.repeats, "python": sys.version.split()[0]}
        res["caid"] = caid_iteration(tmp)
        run_dir = Path(res["caid"]["run"])
        res["dpo_overhead"] = dpo_overhead(run_dir, args.repeats)
        res["generation"] = generation_speedup(run_dir, args.repeats)
        res["gpu"] = {"skipped": "--no-gpu"} if args.no_gpu else gpu_throughput()
    res["caid"]["run"] = "(temporary)"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    Path(args.md).write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
