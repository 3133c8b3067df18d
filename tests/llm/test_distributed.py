"""The tiny config as two processes (torchrun, gloo on CPU) gives the single-process lam
trajectory, and there really were two ranks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from dualgap.llm.run import lam_trajectory, read_jsonl

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tiny_run, tmp_path):
    out = tmp_path / "two"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "dualgap.cli", "llm", "train", "--config", "tiny",
           "--output-dir", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:  # end torchrun and both workers (their own group)
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail("torchrun timed out:\n" + stderr[-5000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-5000:]
    pol = [m for m in read_jsonl(out / "metrics.jsonl") if m["stage"].startswith("policy_")]
    assert [m["world_size"] for m in pol] == [2, 2]
    assert all(m["per_device_train_batch_size"] == 4 for m in pol)  # global batch 8 = 2 x 4
    np.testing.assert_allclose(lam_trajectory(out), lam_trajectory(tiny_run.directory),
                               rtol=1e-6, atol=1e-9)
    final2 = read_jsonl(out / "lam_history.jsonl")[-1]
    final1 = read_jsonl(tiny_run.directory / "lam_history.jsonl")[-1]
    np.testing.assert_allclose(final2["E_pi_g"], final1["E_pi_g"], rtol=1e-6, atol=1e-9)
