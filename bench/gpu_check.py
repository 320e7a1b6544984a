"""Every GPU figure in one call: correctness, kernel speed, prefill, ingest, passkey, two processes.

    python bench/gpu_check.py --out gpu_check_out           # one NVIDIA GPU, about 7 minutes
    python bench/gpu_check.py --smoke --out /tmp/smoke      # the same stages at tiny sizes on the CPU

Writes `gpu_check.json` and `gpu_check.txt` (a short report) under `--out`. Stages run in this order,
each within its own time budget (`--budget STAGE=SECONDS`) and all within `--total-s`:

1. correctness: the Llama forward in bf16 against fp32; the Triton dilated-attention kernel against the
   PyTorch reference at several shapes and patterns (the engine's own included); the decode kernel
   against the reference; the engine's stored keys computed on the GPU against the CPU's, in int8 steps.
2. kernel: forward time per token from 8k tokens doubling while memory and the budget last, for the
   engine's pattern and LongNet's, beside dense causal SDPA (flash); effective TFLOP/s.
3. prefill: tokens/s at 2k and 8k, our model beside transformers' Llama holding the same weights.
4. ingest: a corpus of real code (the installed standard library, copied) through the product's API,
   front end, model pass, durable states and key index timed apart; then `ask` time to first token.
5. passkey: trials at 256k, 1M and 10M tokens through the product's self-test path.
6. two processes: `engine ingest --devices cuda:0,cuda:0` against one process, state files compared.

A stage that raises is recorded as `error`, one whose budget (or the total) is spent before it starts
as `skipped`, one that stopped some of its steps for time as `partial`; the next stage runs either way.
The JSON is rewritten after every step, so a killed run still leaves what it measured. `targets` in
the JSON states, per target of the GPU work, the measured value and whether it is met.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
STAGES = ("correctness", "kernel", "prefill", "ingest", "passkey", "two_processes")
BUDGETS_S = {"correctness": 45, "kernel": 75, "prefill": 25, "ingest": 130, "passkey": 115, "two_processes": 30}
TOTAL_S = 420
# The smoke run's sizes are what keep it short; its budgets only guard against a stuck stage on a busy CPU.
SMOKE_BUDGET_S, SMOKE_TOTAL_S = 300, 1200
BYTES_PER_TOKEN = 4.6  # the standard library's code, measured with the embedded model's tokenizer
BF16_TOLERANCE = 2e-2
# How far two stores of one corpus read by one process and by two may differ: one int8 step in fp32; in bf16
# (a GPU's, or a CPU's with bf16 instructions) batches of other sizes and other thread counts round products
# apart, 2 steps measured on the CPU between batches of 1 and 4. Keys of another segment differ by up to 254.
STEPS_APART = 4
KEY_INDEX_RESERVE_S = 60  # what the ingest stage keeps for the key index and the asks  # the kernel tests' bound for bf16 against the fp32 reference


class BudgetSpent(Exception):
    """A stage cannot start a step it needs within its time."""


@dataclass
class Plan:
    """Sizes of every stage: the GPU's, or tiny ones for the CPU smoke run."""

    device: str
    model_tokens: int
    kernel_cases: list[tuple]  # name, batch, seq, heads, kv_heads, dim, segment_lengths, dilation_rates, causal, rope
    decode_cases: list[tuple]  # rows, keys
    key_tokens: int | None  # None: the engine's segment length
    kernel_min_seq: int
    kernel_max_seq: int
    kernel_shapes: list[str]
    kernel_configs: list[str]
    kernel_dtype: str
    max_call_s: float
    prefill_lengths: list[int]
    prefill_repeats: int
    corpus_tokens: int
    asks: int
    ask_new_tokens: int
    ask_warm_up: bool
    passkey: list[tuple[int, int]]  # (length, trials)
    two_corpus_tokens: int
    two_devices: list[str]


def gpu_plan(corpus_tokens: int) -> Plan:
    longnet = ((2048, 4096, 8192, 16386, 32772), (1, 2, 4, 6, 12))
    return Plan(
        device="cuda:0", model_tokens=1024,
        kernel_cases=[("engine", 8, 2048, 9, 3, 64, None, None, True, "true"),
                      ("longnet-64k", 1, 65536, 9, 3, 64, *longnet, True, None),
                      ("16x128-compressed-16k", 1, 16384, 16, 16, 128, (2048, 4096, 8192), (1, 2, 4), True, "compressed"),
                      ("noncausal-ragged", 2, 5000, 8, 2, 64, (1000, 3000), (1, 3), False, "true")],
        decode_cases=[(4, 131072), (1, 8192)], key_tokens=None,
        kernel_min_seq=8192, kernel_max_seq=2**24, kernel_shapes=["9x64-kv3"], kernel_configs=["window2048", "longnet"],
        kernel_dtype="bf16", max_call_s=4.0, prefill_lengths=[2048, 8192], prefill_repeats=5,
        corpus_tokens=corpus_tokens, asks=10, ask_new_tokens=8, ask_warm_up=True,
        passkey=[(256 * 1024, 5), (1024 * 1024, 5), (10 * 1024 * 1024, 1)],
        two_corpus_tokens=200_000, two_devices=["cuda:0", "cuda:0"])


def smoke_plan(corpus_tokens: int | None) -> Plan:
    return Plan(
        device="cpu", model_tokens=32,
        kernel_cases=[("engine", 2, 96, 9, 3, 64, None, None, True, "true"),
                      ("longnet-like", 1, 200, 6, 2, 64, (32, 64, 128), (1, 2, 4), True, None),
                      ("noncausal-compressed", 1, 100, 4, 4, 128, (50, 100), (1, 2), False, "compressed")],
        decode_cases=[(2, 300)], key_tokens=128,
        kernel_min_seq=128, kernel_max_seq=128, kernel_shapes=["9x64-kv3"], kernel_configs=["window2048"],
        kernel_dtype="fp32", max_call_s=20.0, prefill_lengths=[64], prefill_repeats=1,
        corpus_tokens=corpus_tokens or 400, asks=1, ask_new_tokens=1, ask_warm_up=False,
        passkey=[(256, 1)], two_corpus_tokens=2300, two_devices=["cpu", "cpu"])


class Clock:
    """Seconds left to a stage (never past the whole run's end)."""

    def __init__(self, seconds: float):
        self.started = time.monotonic()
        self.end = self.started + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, predicted_s: float = 0.0) -> bool:
        return self.left() > predicted_s


@dataclass
class Context:
    args: argparse.Namespace
    plan: Plan
    workdir: Path
    save: object
    _runtime: object = None
    notes: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.plan.device.startswith("cuda")

    def runtime(self):
        """The product's runtime on the checked device in its default dtype, loaded once for every stage."""
        if self._runtime is None:
            from engine.runtime import load_runtime

            self._runtime = load_runtime(self.args.model, self.plan.device)
        return self._runtime


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is first imported
    run_started = time.monotonic()
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible to torch; run on a GPU machine, or use --smoke for the CPU check")
        return 2
    sys.path[:0] = [str(REPO), str(BENCH)]
    plan = smoke_plan(args.corpus_tokens) if args.smoke else gpu_plan(args.corpus_tokens or 10_000_000)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"what": "bench/gpu_check.py: correctness, kernel, prefill, ingest, passkey, two processes",
              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "smoke": args.smoke, "machine": machine(torch, plan), "started": now(), "budgets_s": args.budgets,
              "total_budget_s": args.total_s, "stages": {}, "targets": {}}

    def save() -> None:
        """Both files as they stand; a fault in summarising is written down, never allowed to end the run."""
        report["elapsed_s"] = round(time.monotonic() - run_started, 1)
        try:
            report["targets"] = targets(report["stages"], plan)
        except Exception as error:  # the measurements matter more than their summary
            report["targets"] = {"error": f"{type(error).__name__}: {error}"}
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        try:
            text = text_report(report)
        except Exception as error:
            text = f"gpu_check: the short report failed ({type(error).__name__}: {error}); see gpu_check.json\n"
        (out / "gpu_check.txt").write_text(text)

    with tempfile.TemporaryDirectory(prefix="gpu-check-", dir=args.workdir) as workdir:
        context = Context(args, plan, Path(workdir), save)
        functions = {"correctness": stage_correctness, "kernel": stage_kernel, "prefill": stage_prefill,
                     "ingest": stage_ingest, "passkey": stage_passkey, "two_processes": stage_two_processes}
        for name in STAGES:
            result: dict = {"budget_s": args.budgets[name]}
            report["stages"][name] = result
            if name not in args.stages:
                result |= {"status": "skipped", "note": "not in --stages"}
                save()
                continue
            total_left = args.total_s - (time.monotonic() - run_started)
            if total_left < 5:
                result |= {"status": "skipped", "note": f"the run's total budget ({args.total_s} s) is spent"}
                save()
                continue
            run_stage(context, name, functions[name], Clock(min(args.budgets[name], total_left)), result, torch)
            print(f"gpu_check: {name}: {result['status']}" + (f" ({result['note']})" if result.get("note") else ""),
                  flush=True)
        report["finished"] = now()
        save()
    print((out / "gpu_check.txt").read_text())
    return 0


def run_stage(context: Context, name: str, function, clock: Clock, result: dict, torch) -> None:
    result["status"] = "running"
    context.save()
    if context.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        function(context, clock, result)
        left_out = result.get("stopped_for_time")
        result["status"] = "partial" if left_out else "ok"
        if left_out:
            result["note"] = "; ".join(left_out)
    except BudgetSpent as spent:
        result |= {"status": "skipped", "note": str(spent)}
    except Exception as error:  # the next stage runs whatever this one hit
        result |= {"status": "error", "note": f"{type(error).__name__}: {error}"[:2000],
                   "traceback": traceback.format_exc()[-4000:]}
    result["seconds"] = round(time.monotonic() - clock.started, 2)
    if context.cuda:
        result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.empty_cache()
    context.save()


def stopped(result: dict, note: str) -> None:
    result.setdefault("stopped_for_time", []).append(note)


# 1. correctness ------------------------------------------------------------------------------------

def stage_correctness(context: Context, clock: Clock, result: dict) -> None:
    import torch

    from engine.runtime import load_runtime

    plan = context.plan
    # On the CPU the product's runtime is already fp32; on a GPU it is bf16 and an fp32 one is loaded beside it.
    fp32 = load_runtime(context.args.model, plan.device, torch.float32) if context.cuda else context.runtime()
    ids = text_tokens(fp32.tokenizer, plan.model_tokens)
    bf16 = copy.deepcopy(fp32.model).to(torch.bfloat16)
    tokens = torch.tensor([ids], device=plan.device)
    with torch.inference_mode():
        exact, rounded = fp32.model(tokens), bf16(tokens)
    result["model_bf16_vs_fp32"] = {
        "tokens": len(ids), "max_abs_logit_diff": (exact - rounded).abs().max().item(),
        "logit_scale": exact.abs().max().item(),
        "top1_agreement": (exact.argmax(-1) == rounded.argmax(-1)).float().mean().item()}
    del bf16, exact, rounded
    context.save()
    result["dilated_kernel_vs_reference"] = dilated_checks(context, clock, result)
    result["decode_kernel_vs_reference"] = decode_checks(context, clock, result)
    if not clock.allows(2):
        stopped(result, "engine keys on the device against the CPU's: no time left")
        return
    result["engine_keys_device_vs_cpu"] = key_agreement(context, fp32)


def kernel_dtype(context: Context):
    import torch

    return torch.bfloat16 if context.cuda else torch.float32


def dilated_checks(context: Context, clock: Clock, result: dict) -> list[dict]:
    import torch

    from engine.memory.config import EngineConfig
    from kernels import reference
    from kernels.dilated_attention import dilated_attention_triton
    from kernels.rope import RoPE

    engine = EngineConfig(model_digest="", heads=[], kv_heads=[], key_means=[])
    rows = []
    result["dilated_kernel_vs_reference"] = rows
    for name, batch, seq, heads, kv_heads, dim, lengths, rates, causal, rope_mode in context.plan.kernel_cases:
        if not clock.allows(3):
            stopped(result, f"dilated kernel case {name} not run: no time left")
            continue
        if lengths is None:
            lengths, rates, rope_mode = engine.segment_lengths, engine.dilation_rates, engine.rope_mode
        gen = torch.Generator(device=context.plan.device).manual_seed(seq)
        q, k, v = (torch.randn(batch, seq, h, dim, generator=gen, device=context.plan.device).to(kernel_dtype(context))
                   for h in (heads, kv_heads, kv_heads))
        rope = None
        if rope_mode is not None:
            cos, sin = rope_tables(dim, seq, context.plan.device)
            rope = RoPE(cos, sin, mode=rope_mode)
        options = dict(segment_lengths=list(lengths), dilation_rates=list(rates), causal=causal, rope=rope)
        out, lse = dilated_attention_triton(q, k, v, **options)
        want, want_lse = reference.dilated_attention(q, k, v, **options)
        seen = torch.isfinite(want_lse)
        row = {"case": name, "batch": batch, "seq": seq, "heads": heads, "kv_heads": kv_heads, "head_dim": dim,
               "segment_lengths": list(lengths), "dilation_rates": list(rates), "causal": causal, "rope": rope_mode,
               "dtype": str(q.dtype).replace("torch.", ""),
               "max_abs_out_diff": (out.float() - want.float()).abs().max().item(),
               "max_abs_lse_diff": (lse[seen] - want_lse[seen]).abs().max().item() if seen.any() else 0.0,
               "unseen_rows_agree": bool(torch.equal(torch.isfinite(lse), seen))}
        row["within_tolerance"] = (row["max_abs_out_diff"] <= BF16_TOLERANCE and row["max_abs_lse_diff"] <= BF16_TOLERANCE
                                   and row["unseen_rows_agree"])
        row["tolerance"] = BF16_TOLERANCE
        rows.append(row)
        del q, k, v, out, lse, want, want_lse
        context.save()
    return rows


def decode_checks(context: Context, clock: Clock, result: dict) -> list[dict]:
    import torch

    from kernels import reference
    from kernels.decode import attend_triton
    from kernels.rope import RoPE

    rows = []
    result["decode_kernel_vs_reference"] = rows
    for n_rows, n_keys in context.plan.decode_cases:
        if not clock.allows(2):
            stopped(result, f"decode kernel at {n_keys} keys not run: no time left")
            continue
        gen = torch.Generator(device=context.plan.device).manual_seed(n_keys)
        q, k, v = (torch.randn(1, length, heads, 64, generator=gen, device=context.plan.device).to(kernel_dtype(context))
                   for length, heads in ((n_rows, 9), (n_keys, 3), (n_keys, 3)))
        cos, sin = rope_tables(64, n_keys, context.plan.device)
        options = dict(causal_offset=n_keys - n_rows, rope=RoPE(cos, sin))
        out, lse = attend_triton(q, k, v, **options)
        want, want_lse = reference.attend(q, k, v, **options)
        row = {"rows": n_rows, "keys": n_keys, "heads": 9, "kv_heads": 3, "head_dim": 64,
               "max_abs_out_diff": (out.float() - want.float()).abs().max().item(),
               "max_abs_lse_diff": (lse - want_lse).abs().max().item(), "tolerance": BF16_TOLERANCE}
        row["within_tolerance"] = max(row["max_abs_out_diff"], row["max_abs_lse_diff"]) <= BF16_TOLERANCE
        rows.append(row)
        context.save()
    return rows


def key_agreement(context: Context, fp32_runtime) -> dict:
    """The int8 keys the store would hold for one segment: the product's runtime on the checked device
    (bf16 on a GPU) against the CPU runtime in fp32, the reference the CPU stores were built with."""
    import numpy as np

    from engine.memory.calibration import calibration_for
    from engine.memory.config import EngineConfig
    from engine.memory.segments import encode_segments
    from engine.runtime import load_runtime

    device_runtime = context.runtime()
    cpu_runtime = fp32_runtime if not context.cuda else replace(load_runtime(context.args.model, "cpu"),
                                                                reading_dtype=None)
    config = EngineConfig.from_calibration(device_runtime, calibration_for(device_runtime))
    length = context.plan.key_tokens or config.segment_tokens
    segment = np.array(text_tokens(device_runtime.tokenizer, length), dtype=np.uint32)
    on_device = encode_segments(device_runtime, config, [segment])[0].astype(np.int16)
    on_cpu = encode_segments(cpu_runtime, config, [segment])[0].astype(np.int16)
    steps = np.abs(on_device - on_cpu)
    a, b = on_device.astype(np.float64), on_cpu.astype(np.float64)
    cosine = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-9)
    return {"tokens": length, "heads": config.heads, "device": str(device_runtime.device),
            "device_dtype": str(device_runtime.model.embed.weight.dtype).replace("torch.", ""),
            "max_int8_steps": int(steps.max()), "mean_int8_steps": float(steps.mean()),
            "share_within_1_step": float((steps <= 1).mean()), "share_within_2_steps": float((steps <= 2).mean()),
            "mean_cosine": float(cosine.mean()), "min_cosine": float(cosine.min()),
            "note": "both on the CPU in the smoke run" if not context.cuda else ""}


# 2. kernel speed -----------------------------------------------------------------------------------

def stage_kernel(context: Context, clock: Clock, result: dict) -> None:
    import bench_dilated_attention as bda
    import torch

    plan = context.plan
    device = torch.device(plan.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[plan.kernel_dtype]
    records: list[dict] = []
    result |= {"dtype": plan.kernel_dtype, "records": records, "max_call_s": plan.max_call_s,
               "configs": {name: dict(zip(("segment_lengths", "dilation_rates"), bda.CONFIGS[name]))
                           for name in plan.kernel_configs}}
    for shape in plan.kernel_shapes:
        heads, kv_heads, dim = bda.SHAPES[shape]
        limits: dict = {}
        seq, last_s = plan.kernel_min_seq, 0.0
        while seq <= plan.kernel_max_seq:
            if not clock.allows(2.5 * last_s):
                stopped(result, f"{shape}: stopped before {seq} tokens ({clock.left():.0f} s left, the last length "
                                f"took {last_s:.1f} s)")
                break
            began = time.monotonic()
            if context.cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                q, k, v = bda.make_inputs(seq, heads, kv_heads, dim, dtype, device)
            except torch.cuda.OutOfMemoryError:
                result.setdefault("notes", []).append(f"{shape}: inputs of {seq} tokens do not fit in memory")
                break
            for config in [*plan.kernel_configs, "dense"]:
                method = bda.DENSE if config == "dense" else "triton"
                record = one_kernel_record(bda, shape, config, method, q, k, v, limits, plan.max_call_s)
                if context.cuda:
                    record["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                records.append(record)
                result["summary"] = bda.summarise(records)
                print("  " + bda.format_record(record), flush=True)
                context.save()
            del q, k, v
            last_s = time.monotonic() - began
            if all(isinstance(state, str) for state in limits.values()):
                break
            seq *= 2


def one_kernel_record(bda, shape, config, method, q, k, v, limits, max_call_s) -> dict:
    """bench_dilated_attention's measurement; an out-of-memory error or a failure outside its own guard
    (the dense call's copies, a kernel launch too large) stops that method for the longer lengths."""
    import torch

    key = (config, method)
    try:
        return bda.run_one(shape, config, method, q, k, v, limits, max_call_s)
    except Exception as error:
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        limits[key] = f"{type(error).__name__} at {q.shape[1]} tokens: {str(error)[:200]}"
        return {"shape": shape, "config": config, "method": method, "seq_len": q.shape[1],
                "status": f"stopped: {limits[key]}"}


# 3. prefill ----------------------------------------------------------------------------------------

def stage_prefill(context: Context, clock: Clock, result: dict) -> None:
    import torch
    from bench_model import timed

    plan = context.plan
    ours = context.runtime()
    device = torch.device(plan.device)
    theirs = None
    try:
        theirs = transformers_twin(ours)
    except ImportError as error:
        result["transformers"] = f"not installed ({error}): ours alone"
    except Exception as error:  # a transformers that cannot hold our weights still leaves our own figures
        result["transformers"] = f"not comparable ({type(error).__name__}: {str(error)[:300]}): ours alone"
    if theirs is not None:
        result["transformers"] = __import__("transformers").__version__
        result["transformers_attention"] = getattr(theirs.config, "_attn_implementation", None)
        ids = torch.tensor([text_tokens(ours.tokenizer, plan.model_tokens)], device=device)
        with torch.inference_mode():
            mine, ref = ours.model(ids), theirs(ids).logits.float()
        result["same_weights_check"] = {"tokens": plan.model_tokens, "max_abs_logit_diff": (mine - ref).abs().max().item(),
                                        "top1_agreement": (mine.argmax(-1) == ref.argmax(-1)).float().mean().item()}
    rows = []
    result["rows"] = rows
    for length in plan.prefill_lengths:
        if not clock.allows(3):
            stopped(result, f"prefill at {length} tokens not run: no time left")
            continue
        tokens = torch.randint(100, min(40000, ours.config.vocab_size), (1, length), device=device)
        with torch.inference_mode():
            row = {"tokens": length, "ours_tok_s": length / timed(lambda tokens=tokens: ours.model.hidden_states(tokens), device,
                                                                   plan.prefill_repeats)}
            if theirs is not None:
                row["transformers_tok_s"] = length / timed(lambda tokens=tokens: theirs.model(tokens), device, plan.prefill_repeats)
                row["ours_over_transformers"] = row["ours_tok_s"] / row["transformers_tok_s"]
        rows.append(row)
        context.save()


def transformers_twin(runtime):
    """transformers' own Llama holding exactly our weights (no GGUF reader needed), on the same device and
    dtype: the prefill comparison then measures the two implementations and nothing else."""
    import torch
    import transformers

    c = runtime.config
    config = transformers.LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads,
        head_dim=c.head_dim, rope_theta=c.rope_theta, rms_norm_eps=c.rms_eps, tie_word_embeddings=c.tie_embeddings,
        attention_bias=c.attention_bias, max_position_embeddings=max(c.trained_context, 8192))
    if isinstance(getattr(config, "rope_parameters", None), dict):  # transformers >= 5 keeps the base here
        config.rope_parameters["rope_theta"] = c.rope_theta
    with torch.device("meta"):  # no random init of weights about to be replaced
        model = transformers.LlamaForCausalLM(config)
    names = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm", "q": "self_attn.q_proj",
             "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj", "gate": "mlp.gate_proj",
             "up": "mlp.up_proj", "down": "mlp.down_proj"}
    weights = {}
    for name, tensor in runtime.model.state_dict().items():
        parts = name.split(".")
        if parts[0] == "embed":
            weights["model.embed_tokens.weight"] = tensor
        elif parts[0] == "norm":
            weights["model.norm.weight"] = tensor
        elif parts[0] == "lm_head":
            weights["lm_head.weight"] = tensor
        else:
            weights[f"model.layers.{parts[1]}.{names[parts[2]]}.{parts[3]}"] = tensor
    if c.tie_embeddings:
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
    missing = [name for name in missing if "rotary" not in name]
    if missing or unexpected:
        raise ValueError(f"our weights do not fill transformers' Llama: missing {missing[:5]}, unexpected {unexpected[:5]}")
    # Its RoPE frequencies are a buffer made at construction, on the meta device here: made again, and after
    # the move to the model's dtype once more, so they stay fp32 as in a model transformers loads itself.
    rotary = type(model.model.rotary_emb)
    model.model.rotary_emb = rotary(config=config)
    left = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left:
        raise ValueError(f"transformers' Llama kept tensors without values: {left[:5]}")
    model = model.to(device=runtime.device, dtype=runtime.model.embed.weight.dtype).eval()
    model.model.rotary_emb = rotary(config=config).to(runtime.device)
    return model


# 4. ingest and ask ---------------------------------------------------------------------------------

def stage_ingest(context: Context, clock: Clock, result: dict) -> None:
    from bench_ask import QUESTIONS, WARM_UP

    from engine.api import open_store
    from engine.memory.segments import default_batch_segments

    plan = context.plan
    runtime = context.runtime()
    batch_segments = context.args.batch_segments or default_batch_segments(runtime.device)
    began = time.perf_counter()
    corpus = copy_corpus(context.workdir / "corpus", plan.corpus_tokens)
    result["corpus"] = corpus | {"copy_s": round(time.perf_counter() - began, 2)}
    store_path = context.workdir / "store"
    with open_store(store_path, runtime=runtime, write=True) as store:
        began = time.perf_counter()
        summary = store.add([Path(corpus["path"])])
        front_s = time.perf_counter() - began
        result["front_end"] = {"seconds": round(front_s, 2), "tokens": summary.tokens_added,
                               "files": summary.added,
                               "tokens_per_s": round(summary.tokens_added / front_s)}
        context.save()

        def watch(done: int, total: int) -> None:
            """Stops the model's pass between steps once the stage's time is spent (each step is stored
            whole, so the store stays consistent and `ask` reads what was processed)."""
            if done and not clock.allows(25):
                raise BudgetSpent(f"model pass stopped after {done:,} of {total:,} tokens for time")

        began = time.perf_counter()
        try:
            report = store.process(watch, batch_segments=batch_segments)
        except BudgetSpent as spent:
            report = None
            stopped(result, str(spent))
        pass_s = time.perf_counter() - began
        processed = store.figures().processed_tokens
        model_s = sum(load.seconds for load in report.ranks) if report else None
        result["model_pass"] = {"seconds": round(pass_s, 2), "tokens": processed,
                                "tokens_per_s": round(processed / pass_s) if pass_s else None,
                                "forward_s": round(model_s, 2) if model_s is not None else None,
                                "writes_and_catalog_s": round(pass_s - model_s, 2) if model_s is not None else None,
                                "batch_segments": batch_segments}
        context.save()
        if not clock.allows(KEY_INDEX_RESERVE_S):
            # Past 2M keys the index trains its lists (tens of seconds, more at 10M) and cannot be cut short;
            # `ask` would train them too, so both are left out rather than overrunning the run.
            stopped(result, f"key index and ask left out: {clock.left():.0f} s left, {KEY_INDEX_RESERVE_S} s reserved")
            return
        began = time.perf_counter()
        built = store.prepare_index()
        index_s = time.perf_counter() - began
        result["key_index"] = {"seconds": round(index_s, 2), "trained_ivf": built}
        figures = store.figures()
    total_s = front_s + pass_s + index_s
    result["end_to_end"] = {"seconds": round(total_s, 2), "tokens": processed,
                            "tokens_per_s": round(processed / total_s) if total_s else None,
                            "tokens_per_s_without_index": round(processed / (front_s + pass_s)),
                            "state_bytes_per_token": round(figures.state_bytes_per_token, 1),
                            "share": {"front_end": round(front_s / total_s, 3), "model_pass": round(pass_s / total_s, 3),
                                      "key_index": round(index_s / total_s, 3)}}
    context.save()
    if not clock.allows(10):
        stopped(result, "ask not timed: no time left")
        return
    with open_store(store_path, runtime=runtime) as store:
        began = time.perf_counter()
        store.index()
        result["ask"] = {"index_open_s": round(time.perf_counter() - began, 2), "store_tokens": processed}
        if plan.ask_warm_up:  # the first ask after opening pays one-off costs (buffers, kernel compiles)
            ask_first_token(store, WARM_UP, plan.ask_new_tokens)
        times = []
        for index in range(plan.asks):
            if not clock.allows(3 * max(times, default=1.0)):
                stopped(result, f"ask timed {len(times)} of {plan.asks} times for time")
                break
            times.append(ask_first_token(store, QUESTIONS[index % len(QUESTIONS)][0], plan.ask_new_tokens))
            result["ask"] |= {"first_token_s": [round(t, 4) for t in times],
                              "first_token_median_s": round(statistics.median(times), 4)}
            context.save()


def ask_first_token(store, question: str, new_tokens: int) -> float:
    """Seconds from the question to the first streamed token (the answer's own timing, retrieval included)."""
    from engine import Answer

    answer = next(event for event in store.ask(question, max_new_tokens=new_tokens) if isinstance(event, Answer))
    return answer.timings.get("first_token_s", answer.timings["total_s"])


def copy_corpus(target: Path, tokens: int) -> dict:
    """About `tokens` tokens of real code: the installed standard library's `.py` files, copied in path
    order (site-packages and caches left out); once the library runs out it is copied again into a
    further folder, each file with a first line naming its copy. Real text nobody here wrote, and on a machine without network it is always there."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(path for path in stdlib.rglob("*.py")
                   if not {"site-packages", "dist-packages", "__pycache__"} & set(path.relative_to(stdlib).parts))
    wanted, copied, size, rounds = int(tokens * BYTES_PER_TOKEN), 0, 0, 0
    while size < wanted * 0.9 and files and rounds < 100:
        rounds += 1
        for path in files:
            data = path.read_bytes()
            if size + len(data) > wanted * 1.1:  # a large module would overshoot a small corpus
                continue
            if rounds > 1:  # identical text is stored once: a further copy must differ
                data = f"# copy {rounds}\n".encode() + data
            destination = target / f"copy{rounds}" / path.relative_to(stdlib)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)
            size += len(data)
            copied += 1
            if size >= wanted:
                break
    return {"path": str(target), "source": str(stdlib), "files": copied, "bytes": size, "copies_of_stdlib": rounds,
            "tokens_asked": tokens}


# 5. passkey ----------------------------------------------------------------------------------------

def stage_passkey(context: Context, clock: Clock, result: dict) -> None:
    from dataclasses import asdict

    from engine.selftest.passkey import run_passkey, summarise

    runtime = context.runtime()
    trials: list = []
    result["trials"] = []
    seconds_per_token = None
    for length, count in context.plan.passkey:
        # Longer haystacks cost more than their share (the key index trains its lists past 2M keys).
        predicted = seconds_per_token * length * 1.5 if seconds_per_token else 0.0
        if not clock.allows(predicted):
            stopped(result, f"{count} trial(s) at {length:,} tokens not run: predicted {predicted:.0f} s, "
                            f"{clock.left():.0f} s left")
            continue
        started = [time.perf_counter()]

        def record(trial, started=started) -> None:
            nonlocal seconds_per_token
            seconds = time.perf_counter() - started[0]
            seconds_per_token = seconds / trial.length
            trials.append(trial)
            result["trials"].append(asdict(trial) | {"seconds": round(seconds, 2)})
            result["lengths"] = summarise(trials)
            context.save()
            started[0] = time.perf_counter()

        def skip(length: int, depth: float) -> bool:
            late = not clock.allows(seconds_per_token * length if seconds_per_token else 0.0)
            if late:
                stopped(result, f"trial at {length:,} tokens, depth {depth:.2f}, not run for time")
            return late

        run_passkey(runtime, [length], count, seed=length, baseline_limit=0, on_result=record, skip=skip)
    result["lengths"] = summarise(trials)


# 6. two processes on one device --------------------------------------------------------------------

def stage_two_processes(context: Context, clock: Clock, result: dict) -> None:
    """The same corpus read into one store by this process (the API, one device) and into a copy of it by
    `engine ingest --devices D,D` (the CLI, two processes on the one device), then their states compared."""
    from engine.api import open_store

    plan = context.plan
    corpus = copy_corpus(context.workdir / "corpus-two", plan.two_corpus_tokens)
    result["corpus"] = corpus
    one, two = context.workdir / "two-one_process", context.workdir / "two-two_processes"
    with open_store(one, runtime=context.runtime(), write=True) as store:
        store.add([Path(corpus["path"])])
        shutil.copytree(one, two)  # the front end's result, before the model's pass
        began = time.perf_counter()
        report = store.process()
        result["one_process"] = {"devices": [str(context.runtime().device)], "tokens": report.tokens,
                                 "segments": report.segments, "pass_seconds": round(time.perf_counter() - began, 2)}
    context.save()
    if not clock.allows(10):
        raise BudgetSpent("no time left for the two-process run")
    result["two_processes"] = ingest_on_devices(two, Path(corpus["path"]), plan.two_devices, max(clock.left(), 30))
    context.save()
    result["states"] = compare_states(one, two)


def ingest_on_devices(store: Path, corpus: Path, devices: list[str], timeout_s: float) -> dict:
    """`engine ingest CORPUS --devices ...` as a user runs it, killed after `timeout_s` (a rank stuck in a
    collective would otherwise wait out the engine's 30-minute collective timeout; the rank it spawned
    leaves when its parent is gone)."""
    command = [sys.executable, "-m", "engine", "ingest", str(corpus), "--store", str(store), "--json",
               "--devices", ",".join(devices)]
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    began = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO, timeout=timeout_s)
    except subprocess.TimeoutExpired as expired:
        raise RuntimeError(f"`engine ingest --devices {','.join(devices)}` still running after {timeout_s:.0f} s: "
                           f"{str(expired.stderr or '')[-1500:]}") from None
    if done.returncode:
        raise RuntimeError(f"`engine ingest --devices {','.join(devices)}` exited {done.returncode}: "
                           f"{done.stderr[-1500:]}")
    processed = json.loads(done.stdout.strip().splitlines()[-1])["processed"]
    return {"devices": devices, "command_seconds": round(time.perf_counter() - began, 2), "tokens": processed["tokens"],
            "segments": processed["segments"], "pass_seconds": round(processed["seconds"], 2),
            "ranks": processed["ranks"], "exchanged_bytes": processed["exchanged_bytes"]}


def compare_states(one: Path, two: Path) -> dict:
    """Both stores' state files: the same segments, the same token ranges, keys within STEPS_APART int8 steps."""
    import numpy as np
    from safetensors.numpy import load_file

    names_one = sorted(p.name for p in (one / "states").glob("*.safetensors"))
    names_two = sorted(p.name for p in (two / "states").glob("*.safetensors"))
    worst, identical, ranges_equal = 0, 0, True
    for name in sorted(set(names_one) & set(names_two)):
        a, b = load_file(str(one / "states" / name)), load_file(str(two / "states" / name))
        ranges_equal &= bool(np.array_equal(a["range"], b["range"]))
        if a["keys"].shape != b["keys"].shape:
            worst = max(worst, 255)
            continue
        steps = int(np.abs(a["keys"].astype(np.int16) - b["keys"].astype(np.int16)).max())
        worst = max(worst, steps)
        identical += steps == 0
    same = names_one == names_two and bool(names_one)
    return {"files_one_process": len(names_one), "files_two_processes": len(names_two), "same_segments": same,
            "ranges_equal": ranges_equal, "files_identical": identical, "max_int8_steps": worst,
            "agree": same and ranges_equal and worst <= STEPS_APART}


# targets and the report ----------------------------------------------------------------------------

def targets(stages: dict, plan: Plan) -> dict:
    """Each target of the GPU work with its measured value and whether it is met (None: not measured)."""
    found: dict = {}

    def put(name: str, target: str, value, met, note: str = "") -> None:
        found[name] = {"target": target, "value": value, "met": met, **({"note": note} if note else {})}

    summary = {line["config"]: line for line in stages.get("kernel", {}).get("summary") or []
               if line["method"] == "triton"}
    for config in plan.kernel_configs:
        line = summary.get(config, {})
        flat = line.get("per_token_max_deviation_64k_to_1m")
        put(f"kernel_flat_64k_1m_{config}", "time per token within +-20% from 64k to 1M tokens", flat,
            None if flat is None else flat <= 0.2)
        share = line.get("tflops_fraction_of_dense_at_8k")
        put(f"kernel_tflops_vs_dense_8k_{config}", ">= 60% of dense flash TFLOP/s at 8k", share,
            None if share is None else share >= 0.6)
        speedup = line.get("speedup_over_dense_at_1m")
        put(f"kernel_speedup_1m_{config}", ">= 100x faster than dense at 1M tokens", speedup,
            None if speedup is None else speedup >= 100)
    correctness = stages.get("correctness", {})
    cases = [*(correctness.get("dilated_kernel_vs_reference") or []), *(correctness.get("decode_kernel_vs_reference") or [])]
    put("kernels_match_reference", f"every kernel case within {BF16_TOLERANCE} of the PyTorch reference",
        f"{sum(case['within_tolerance'] for case in cases)} of {len(cases)}",
        all(case["within_tolerance"] for case in cases) if cases else None)
    states = stages.get("two_processes", {}).get("states")
    put("two_processes_same_store", "two processes on one device store what one process stores (within 1 int8 step)",
        states and states["max_int8_steps"], states and states["agree"])
    ingest = stages.get("ingest", {})
    rate = (ingest.get("end_to_end") or {}).get("tokens_per_s")
    put("ingest_tokens_per_s", ">= 1M tokens/s end to end (front end, model pass, states, key index)", rate,
        None if rate is None else rate >= 1_000_000)
    ask = ingest.get("ask") or {}
    ttft, store_tokens = ask.get("first_token_median_s"), ask.get("store_tokens")
    put("ask_first_token_s", "<= 0.3 s time to first token at 10M tokens (median of 10)", ttft,
        None if ttft is None else ttft <= 0.3,
        f"store of {store_tokens:,} tokens" if store_tokens is not None else "")
    rows = {row["length"]: row for row in stages.get("passkey", {}).get("lengths") or []}
    for length, count in plan.passkey:
        label = f"{length // 2**20}M" if length >= 2**20 else f"{length // 1024}k" if length >= 1024 else str(length)
        goal = "the trial passes" if length >= 10 * 2**20 else "100% of trials pass"
        row = rows.get(length)
        if row is None:
            put(f"passkey_{label}", goal, None, None, f"not run ({count} trial(s) planned)")
        else:
            put(f"passkey_{label}", goal, row["accuracy"], row["accuracy"] == 1.0,
                f"{row['trials']} of {count} trial(s) run")
    for row in stages.get("prefill", {}).get("rows") or []:
        ratio = row.get("ours_over_transformers")
        put(f"prefill_{row['tokens']}", "prefill tokens/s >= transformers' on the same device", ratio,
            None if ratio is None else ratio >= 1.0, "ours / transformers")
    return found


def text_report(report: dict) -> str:
    lines = [f"gpu_check on {report['machine']['device']} ({'smoke, CPU' if report['smoke'] else 'GPU'}), "
             f"{report.get('elapsed_s', 0):.0f} s, started {report['started']}", ""]
    for name, stage in report["stages"].items():
        line = f"{name:14} {stage.get('status', '?'):8} {stage.get('seconds', 0):6.1f} s"
        lines.append(line + (f"  {stage['note'][:200]}" if stage.get("note") else ""))
    stages = report["stages"]
    correctness = stages.get("correctness", {})
    if "model_bf16_vs_fp32" in correctness:
        m = correctness["model_bf16_vs_fp32"]
        lines.append(f"\nmodel bf16 vs fp32: max |logit diff| {m['max_abs_logit_diff']:.3f}, top-1 agreement "
                     f"{m['top1_agreement']:.1%}")
    for row in correctness.get("dilated_kernel_vs_reference") or []:
        lines.append(f"dilated kernel {row['case']}: out {row['max_abs_out_diff']:.2e}, lse {row['max_abs_lse_diff']:.2e}"
                     f" -> {'ok' if row['within_tolerance'] else 'OUT OF TOLERANCE'}")
    for row in correctness.get("decode_kernel_vs_reference") or []:
        lines.append(f"decode kernel {row['rows']}x{row['keys']}: out {row['max_abs_out_diff']:.2e} -> "
                     f"{'ok' if row['within_tolerance'] else 'OUT OF TOLERANCE'}")
    if "engine_keys_device_vs_cpu" in correctness:
        keys = correctness["engine_keys_device_vs_cpu"]
        lines.append(f"engine keys device vs CPU: max {keys['max_int8_steps']} int8 steps, "
                     f"{keys['share_within_1_step']:.1%} within 1, mean cosine {keys['mean_cosine']:.4f}")
    for line in (stages.get("kernel", {}).get("summary") or []):
        lines.append(f"kernel {line['config']}: longest {line['longest_seq_len']:,} tokens; flat 64k-1M "
                     f"{line['per_token_max_deviation_64k_to_1m']}, vs dense at 8k {line['tflops_fraction_of_dense_at_8k']}, "
                     f"speed-up at 1M {line['speedup_over_dense_at_1m']}")
    for row in (stages.get("prefill", {}).get("rows") or []):
        theirs = row.get("transformers_tok_s")
        lines.append(f"prefill {row['tokens']:,}: ours {row['ours_tok_s']:,.0f} tok/s"
                     + (f", transformers {theirs:,.0f} tok/s" if theirs else ""))
    ingest = stages.get("ingest", {})
    if "end_to_end" in ingest:
        e = ingest["end_to_end"]
        lines.append(f"ingest: {e['tokens']:,} tokens, {e['tokens_per_s']:,} tokens/s end to end; shares {e['share']}")
    if (ingest.get("ask") or {}).get("first_token_median_s") is not None:
        lines.append(f"ask: first token median {ingest['ask']['first_token_median_s']:.3f} s over "
                     f"{len(ingest['ask']['first_token_s'])} questions")
    for row in (stages.get("passkey", {}).get("lengths") or []):
        lines.append(f"passkey {row['length']:,}: {row['accuracy']:.0%} of {row['trials']}, needle retrieved "
                     f"{row['retrieved']}")
    states = stages.get("two_processes", {}).get("states")
    if states:
        lines.append(f"two processes: {states['files_two_processes']} state files, max {states['max_int8_steps']} "
                     f"int8 steps from one process -> {'agree' if states['agree'] else 'DIFFER'}")
    lines.append("\ntargets:")
    for name, t in report["targets"].items():
        mark = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        value = f"{t['value']:.4g}" if isinstance(t["value"], (int, float)) else str(t["value"])
        lines.append(f"  {name:34} {value:>10}  {mark:12} {t['target']}" + (f" ({t['note']})" if t.get("note") else ""))
    return "\n".join(lines) + "\n"


def text_tokens(tokenizer, count: int) -> list[int]:
    """`count` tokens of real prose-and-code from the standard library (repeated if it runs short)."""
    text = (Path(sysconfig.get_paths()["stdlib"]) / "difflib.py").read_text(errors="replace")
    ids = tokenizer.encode(text)
    while len(ids) < count:
        ids = ids + ids
    return ids[:count]


def rope_tables(dim: int, positions: int, device: str):
    """Llama's rotate-half cos/sin tables (base 10000) in fp32."""
    import torch

    inv_freq = 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = torch.outer(torch.arange(positions, dtype=torch.float64), inv_freq).repeat(1, 2)
    return angles.cos().float().to(device), angles.sin().float().to(device)


def machine(torch, plan: Plan) -> dict:
    info = {"device": torch.cuda.get_device_name(0) if plan.device.startswith("cuda") else
            f"{platform.processor() or platform.machine()} CPU", "cpus": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "cuda": torch.version.cuda,
            "model": os.environ.get("ENGINE_MODEL") or "default resolution"}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.json and gpu_check.txt")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (Triton's interpreter)")
    parser.add_argument("--model", help="model path (default: ENGINE_MODEL, then the embedded model)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--budget", action="append", default=[], metavar="STAGE=SECONDS",
                        help="a stage's time budget (defaults: " + ", ".join(f"{k}={v}" for k, v in BUDGETS_S.items()) + ")")
    parser.add_argument("--total-s", type=float, help=f"the whole run's budget, after which stages are skipped "
                                                     f"(default {TOTAL_S}; smoke {SMOKE_TOTAL_S})")
    parser.add_argument("--corpus-tokens", type=int, help="ingest corpus size (default 10M; smoke 400)")
    parser.add_argument("--batch-segments", type=int,
                        help="segments a forward pass in the ingest stage (default: the engine's for the device)")
    parser.add_argument("--workdir", help="where the temporary stores go (default: the system's temp folder)")
    args = parser.parse_args(argv)
    args.stages = [name.strip() for name in args.stages.split(",") if name.strip()]
    unknown = [name for name in args.stages if name not in STAGES]
    budgets = {name: SMOKE_BUDGET_S for name in STAGES} if args.smoke else dict(BUDGETS_S)
    args.total_s = args.total_s or (SMOKE_TOTAL_S if args.smoke else TOTAL_S)
    for item in args.budget:
        name, _, seconds = item.partition("=")
        if name not in STAGES or not seconds.replace(".", "", 1).isdigit():
            parser.error(f"--budget wants STAGE=SECONDS with STAGE one of {', '.join(STAGES)} (got {item!r})")
        budgets[name] = float(seconds)
    if unknown:
        parser.error(f"--stages: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    args.budgets = budgets
    return args


if __name__ == "__main__":
    sys.exit(main())
