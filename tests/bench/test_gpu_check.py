"""bench/gpu_check.py's CPU smoke run: every stage of the GPU check runs, at tiny sizes, and says so in its JSON.

The GPU is rarely at hand; this keeps the one command that measures it from rotting in the meantime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"
STAGES = ["correctness", "kernel", "prefill", "ingest", "passkey", "two_processes"]


def run_check(*arguments: str, timeout: float = 900) -> subprocess.CompletedProcess:
    environment = os.environ | {"PYTHONPATH": str(REPO), "TRITON_INTERPRET": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True,
                          env=environment, cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu-check")
    done = run_check("--smoke", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "gpu_check.txt").read_text().startswith("gpu_check on ")
    return json.loads((out / "gpu_check.json").read_text())


def test_every_stage_runs_and_reports_ok(smoke):
    assert list(smoke["stages"]) == STAGES
    statuses = {name: (stage["status"], stage.get("note")) for name, stage in smoke["stages"].items()}
    assert all(status == "ok" for status, _ in statuses.values()), statuses


def test_kernels_agree_with_the_reference_and_keys_with_themselves(smoke):
    correctness = smoke["stages"]["correctness"]
    assert correctness["dilated_kernel_vs_reference"]
    assert all(case["within_tolerance"] for case in correctness["dilated_kernel_vs_reference"])
    assert all(case["within_tolerance"] for case in correctness["decode_kernel_vs_reference"])
    assert 0.5 < correctness["model_bf16_vs_fp32"]["top1_agreement"] <= 1.0
    # On the CPU both key computations are the same fp32 runtime: not one int8 step apart.
    assert correctness["engine_keys_device_vs_cpu"]["max_int8_steps"] == 0


def test_kernel_speed_records_both_the_dilated_kernel_and_dense_attention(smoke):
    records = smoke["stages"]["kernel"]["records"]
    assert {(r["method"], r["status"]) for r in records} >= {("triton", "ok"), ("dense-sdpa", "ok")}
    assert all(r["us_per_token"] > 0 for r in records if r["status"] == "ok")


def test_prefill_compares_with_transformers_on_the_same_weights_when_installed(smoke):
    prefill = smoke["stages"]["prefill"]
    assert prefill["rows"] and prefill["rows"][0]["ours_tok_s"] > 0
    if "same_weights_check" in prefill:  # transformers installed: its Llama with our weights gives our logits
        assert prefill["same_weights_check"]["max_abs_logit_diff"] < 1e-3
        assert prefill["same_weights_check"]["top1_agreement"] == 1.0
    else:
        assert prefill["transformers"].startswith("not installed")


def test_ingest_passkey_and_two_processes_report_figures_and_targets(smoke):
    stages = smoke["stages"]
    ingest = stages["ingest"]
    assert ingest["end_to_end"]["tokens"] == ingest["model_pass"]["tokens"] == ingest["front_end"]["tokens"] > 0
    assert len(ingest["ask"]["first_token_s"]) == 1
    assert len(stages["passkey"]["trials"]) == 1
    two = stages["two_processes"]
    assert all(rank["segments"] >= 1 for rank in two["two_processes"]["ranks"])  # both ranks computed
    assert two["two_processes"]["tokens"] == two["one_process"]["tokens"] > 2048
    assert two["states"]["same_segments"] and two["states"]["agree"], two["states"]
    targets = smoke["targets"]
    assert {"ingest_tokens_per_s", "ask_first_token_s", "passkey_256"} <= set(targets)
    assert targets["ingest_tokens_per_s"]["met"] is False  # a few hundred tokens/s on the CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where there is no GPU")
def test_without_a_gpu_and_without_smoke_it_stops_with_one_line(tmp_path):
    done = run_check("--out", str(tmp_path), timeout=300)
    assert done.returncode == 2
    assert done.stdout.strip().count("\n") == 0 and "no CUDA GPU" in done.stdout
    assert not (tmp_path / "gpu_check.json").exists()
