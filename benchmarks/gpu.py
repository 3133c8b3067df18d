"""Benchmark for a lent GPU, in minutes: the torch dual oracle at 1e8-1e9 entries and the LLM
loop's generation, scoring and DPO throughput on a randomly initialized ~1B Llama in bf16.

    python benchmarks/gpu.py                  # on a CUDA machine (a few minutes)
    python benchmarks/gpu.py --out $OUT/gpu.json   # on a lent machine: the result comes back
    python benchmarks/gpu.py --smoke          # anywhere: tiny sizes on CPU (seconds)

Without CUDA the script says so, runs the smoke sizes on CPU and exits 0, so a test can run it.
Measured, naming the card:

* ``solve(problem, backend="torch")`` at 1e8 entries (m = 1; the problem is built on the host
  and moved to the device once) against ``backend="numpy"`` on the same machine: time, passes,
  KKT residual, and the two multipliers' difference;
* one oracle call (D, gradient, Hessian) on device-resident data at 1e8 and 1e9 entries
  (m = 1 and m = 3 at 1e8), float64 and float32: seconds and entries/s, with the float32
  error against float64 at the same lam;
* ``benchmarks/llm_loop.gpu_throughput``: tokens/s of generation (batch 64, 64 + 256 tokens),
  scoring (backbone + head, batch 32 x 512) and DPO (64 pairs, batch 8, full fine-tuning).

Writes ``benchmarks/results/gpu.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # llm_loop, a sibling script


def card() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"cuda": False, "name": None, "torch": torch.__version__}
    props = torch.cuda.get_device_properties(0)
    return {"cuda": True, "name": props.name, "memory_gib": props.total_memory / 1024**3,
            "capability": f"{props.major}.{props.minor}", "cuda_version": torch.version.cuda,
            "torch": torch.__version__}


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def device_data(X: int, Y: int, m: int, device: str, dtype: str, seed: int = 0):
    """A random instance generated on the device itself (no host copy): Gaussian scores,
    ``pi_ref`` a softmax of Gaussians, uniform ``rho``; as :class:`TorchData`."""
    import torch

    from dualgap.dual_torch import TorchData

    gen = torch.Generator(device=device).manual_seed(seed)
    dt = getattr(torch, dtype)
    g = torch.randn((m, X, Y), generator=gen, device=device, dtype=dt)
    r = torch.randn((X, Y), generator=gen, device=device, dtype=dt) - 0.5 * g.mean(0)
    log_ref = torch.log_softmax(torch.randn((X, Y), generator=gen, device=device, dtype=dt), 1)
    w = torch.full((X,), 1.0 / X, device=device, dtype=dt)
    return TorchData(r, g, log_ref, w, device, dtype)


def oracle_rate(X: int, Y: int, m: int, device: str, repeats: int) -> dict:
    """Seconds per oracle call on device data, float64 and float32, and float32's error."""
    import torch

    from dualgap.dual_torch import TorchData, torch_dual_sums

    lam = np.full(m, 0.5)
    out: dict = {"entries": X * Y, "X": X, "Y": Y, "m": m}
    sums = {}
    for dtype in ("float64", "float32"):  # the same numbers, rounded to float32 the 2nd time
        if dtype == "float64":
            data = device_data(X, Y, m, device, dtype)
        else:
            data = TorchData(*(a.to(torch.float32) for a in (data.reward, data.utilities,
                                                             data.log_reference, data.weights)),
                             device, dtype)
        torch_dual_sums(data, lam, 0.5)  # warm-up (kernels, allocator)
        _sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            sums[dtype] = torch_dual_sums(data, lam, 0.5)
        _sync()
        sec = (time.perf_counter() - t0) / repeats
        out[dtype] = {"seconds": sec, "entries_per_s": X * Y / sec}
    del data
    if device != "cpu":
        torch.cuda.empty_cache()
    a, b = sums["float32"], sums["float64"]
    out["float32_error"] = {"value": abs(a.value - b.value) / max(1.0, abs(b.value)),
                            "first": float(np.abs(a.first - b.first).max()),
                            "second": float(np.abs(a.second - b.second).max()
                                            / max(1e-300, np.abs(b.second).max()))}
    return out


def solve_rows(X: int, Y: int) -> dict:
    """``solve`` at X * Y entries (m = 1) with the torch and the numpy backend."""
    import dualgap as dg
    from dualgap.instances import random_problem

    p = random_problem(1, X, Y, 1, beta=0.5, support_fraction=0.9, tightness=0.9)
    out: dict = {"entries": X * Y, "m": 1}
    sols = {}
    for backend in ("torch", "numpy"):
        t0 = time.perf_counter()
        sols[backend] = s = dg.solve(p.replace(), backend=backend)
        ev = dg.dual_oracle(p, s.lam, order=1)
        out[backend] = {"seconds": time.perf_counter() - t0, "passes": s.passes,
                        "kkt_residual": dg.kkt_residual(s.lam, ev.gradient)}
    out["lam_difference"] = float(np.abs(sols["torch"].lam - sols["numpy"].lam).max())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on CPU (also without CUDA)")
    ap.add_argument("--skip-llm", action="store_true", help="only the dual oracle")
    ap.add_argument("--out", default=str(HERE / "results" / "gpu.json"))
    args = ap.parse_args(argv)
    info = card()
    smoke = args.smoke or not info["cuda"]
    if not info["cuda"]:
        print("gpu.py: no CUDA device here; running the CPU smoke sizes only")
    else:
        print(f"gpu.py: card {info['name']} ({info['memory_gib']:.0f} GiB, CUDA "
              f"{info['cuda_version']}, torch {info['torch']})")
    device = "cpu" if smoke else "cuda"
    result: dict = {"benchmark": "gpu", "smoke": smoke, "card": info,
                    "platform": platform.platform()}
    t0 = time.perf_counter()
    sizes = ([(100, 100, 1), (100, 100, 3)] if smoke else
             [(20_000, 5_000, 1), (20_000, 5_000, 3), (200_000, 5_000, 1)])
    result["oracle"] = [oracle_rate(X, Y, m, device, 1 if smoke else 3) for X, Y, m in sizes]
    for row in result["oracle"]:
        print(f"  oracle {row['entries']:.0e} entries, m = {row['m']}: float64 "
              f"{row['float64']['seconds']:.4f} s ({row['float64']['entries_per_s']:.2e}/s), "
              f"float32 {row['float32']['seconds']:.4f} s; float32 error of D "
              f"{row['float32_error']['value']:.1e}")
    result["solve"] = solve_rows(*((100, 100) if smoke else (20_000, 5_000)))
    s = result["solve"]
    print(f"  solve {s['entries']:.0e} entries: torch {s['torch']['seconds']:.2f} s, numpy "
          f"{s['numpy']['seconds']:.2f} s, |lam_torch - lam_numpy| = {s['lam_difference']:.1e}")
    if not args.skip_llm:
        from llm_loop import gpu_throughput

        result["llm"] = llm = gpu_throughput(smoke=smoke)
        for stage, key in (("generation", "new_tokens_per_s"), ("scoring", "tokens_per_s"),
                           ("dpo", "tokens_per_s")):
            print(f"  {stage}: {llm[stage][key]:.0f} tokens/s ({llm['card']}, "
                  f"{llm['parameters'] / 1e9:.2f}B parameters, {llm['dtype']})")
    result["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"gpu.py: wrote {out} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
