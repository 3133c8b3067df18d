"""Multi-GPU sharding, rehearsed on CPU: the DPO policy step through ``accelerate launch`` with
an FSDP config on two CPU processes (gloo) equals the single-process step.

What this torch / accelerate pair does on CPU ranks (torch 2.13, accelerate 1.15):

* torch's FSDP1 wrapper refuses them: ``RuntimeError: FSDP needs a non-CPU accelerator
  device, but no accelerator device is detected``;
* torch's FSDP2 (``fully_shard`` on a ``cpu`` device mesh, gloo) runs on them
  (:func:`test_torch_fsdp2_runs_on_cpu_ranks`);
* but ``accelerate launch`` with ``distributed_type: FSDP`` does not shard on them: its
  ``AcceleratorState`` turns FSDP on only from a multi-accelerator type (MULTI_GPU, MULTI_XPU,
  ...), so on CPU ranks the trainer runs as MULTI_CPU data parallel (without ``use_cpu`` in the
  accelerate config, every rank even runs alone, DistributedType.NO).  The launch test checks the
  step still matches a single process and is an expected failure (xfail) for the sharding
  itself; it becomes a plain pass once accelerate shards on CPU.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

FSDP_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_processes: 2
num_machines: 1
machine_rank: 0
mixed_precision: 'no'
rdzv_backend: static
same_network: true
main_process_ip: 127.0.0.1
main_process_port: {port}
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_reshard_after_forward: true
  fsdp_cpu_ram_efficient_loading: false
"""

STEP = """\
import json, sys
from pathlib import Path

from transformers import AutoTokenizer, TrainerCallback

from dualgap.llm.config import TrainSettings
from dualgap.llm.distributed import barrier, init_distributed, is_main
from dualgap.llm.policy_step import dpo_step
from dualgap.llm.tiny import materialize_tiny_policy

out, ref = Path(sys.argv[1]), Path(sys.argv[2])
init_distributed()
if is_main():
    materialize_tiny_policy(ref, seed=0)
barrier()
tokenizer = AutoTokenizer.from_pretrained(ref)


class Probe(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if is_main():
            (out / "probe.json").write_text(json.dumps({
                "model_class": type(model).__name__,
                "distributed_type": str(args.distributed_state.distributed_type)}))


# eight different pairs: the two ranks must together take the single process's batches (the
# seedable sampler deals each global batch of 4 as 2 + 2), not only average the same gradient
words = ["plan", "cook", "code", "lock", "mix", "tip", "ok", "sorry"]
records = {"prompt": [f"how do i {w}" for w in words],
           "chosen": [f"first check the {w}" for w in words],
           "rejected": [f"weapon hack {w} {w}" for w in words]}
settings = TrainSettings(learning_rate=5e-2, lr_scheduler_type="constant", warmup_steps=0,
                         max_length=32, batch_size=4, gradient_checkpointing=False,
                         logging_steps=1)
res = dpo_step(records, ref, ref, tokenizer, out / "iter_0",
               settings, 0.1, seed=0, progress=False, callbacks=[Probe()])
if is_main():
    (out / "result.json").write_text(json.dumps(
        {k: v for k, v in res.items() if k != "log_history"}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(directory):
    from safetensors.numpy import load_file

    return load_file(str(directory / "model.safetensors"))


def test_dpo_step_under_accelerate_fsdp_on_two_cpu_processes(tmp_path):
    (tmp_path / "fsdp.yaml").write_text(FSDP_CONFIG.format(port=_free_port()))
    (tmp_path / "step.py").write_text(STEP)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="")
    fsdp, single = tmp_path / "fsdp", tmp_path / "single"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(tmp_path / "fsdp.yaml"), str(tmp_path / "step.py"), str(fsdp),
           str(tmp_path / "ref")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # end the launcher and both workers (their own group)
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail("accelerate launch timed out:\n" + stderr[-5000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-5000:]
    probe = json.loads((fsdp / "probe.json").read_text())
    result = json.loads((fsdp / "result.json").read_text())
    assert result["world_size"] == 2 and result["per_device_train_batch_size"] == 2
    # the same step as one process (one rank, same global batch of 4, same reference)
    namespace = {"__name__": "single_step"}
    argv = sys.argv
    try:
        sys.argv = ["step.py", str(single), str(tmp_path / "ref")]
        exec(compile(STEP, "step.py", "exec"), namespace)
    finally:
        sys.argv = argv
    a, b, ref = _weights(fsdp / "iter_0"), _weights(single / "iter_0"), _weights(tmp_path / "ref")
    assert a.keys() == b.keys()
    changed = [k for k in a if not np.allclose(a[k], ref[k])]
    assert changed, "the FSDP step did not change the weights"
    # every weight moved by about lr x steps = 0.1; Adam turns the reduction-order noise of
    # near-zero gradients into differences of ~1e-4, so agree to 1/200 of the move
    assert max(np.abs(a[k] - ref[k]).max() for k in a) > 0.05
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=5e-4, err_msg=k)
    single_loss = json.loads((single / "result.json").read_text())["train_loss"]
    assert result["train_loss"] == pytest.approx(single_loss, rel=1e-5)
    if not probe["distributed_type"].endswith("FSDP"):
        pytest.xfail(f"accelerate ran the FSDP config as {probe['distributed_type']} on CPU "
                     "ranks (it enables FSDP only on accelerators); the step matched one process")
    assert probe["model_class"].startswith("FSDP")  # fully_shard swaps in an FSDP class


TORCH_FSDP2 = """\
import torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

dist.init_process_group("gloo")
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(),
                                                  torch.nn.Linear(64, 32)) for _ in range(2)])
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
for block in model:
    fully_shard(block, mesh=mesh)
fully_shard(model, mesh=mesh)
opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
loss = model(torch.randn(4, 32, generator=torch.Generator().manual_seed(1))).pow(2).mean()
loss.backward()
opt.step()
local = sum(p.to_local().numel() for p in model.parameters())
full = sum(p.numel() for p in model.parameters())
import os, sys
rank = dist.get_rank()
with open(os.path.join(sys.argv[1], f"rank{rank}.txt"), "w") as f:  # not stdout: ranks interleave
    f.write(f"SHARDED {type(model).__name__} {local} {full}\\n")
dist.destroy_process_group()
"""


def test_torch_fsdp2_runs_on_cpu_ranks(tmp_path):
    """torch's own FSDP2 shards a small model over two gloo CPU ranks and takes a step."""
    (tmp_path / "fsdp2.py").write_text(TORCH_FSDP2)
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                           str(tmp_path / "fsdp2.py"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-5000:]
    lines = [(tmp_path / f"rank{r}.txt").read_text().split() for r in range(2)]
    assert len(lines) == 2
    for _, cls, local, full in lines:
        assert cls.startswith("FSDP") and 0 < int(local) < int(full)  # each rank holds a shard
