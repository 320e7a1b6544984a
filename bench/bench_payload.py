"""K/V payload or none: what storing every token's quantised keys and values would buy over re-reading the
retrieved blocks from their tokens (the engine's default), measured side by side on the same answers.

    python bench/bench_payload.py [--passkey 4k:4,32k:2] [--modes none,fp16,int4,int2]

Every mode places the same excerpts in the same prompt; they differ only in where the excerpts' keys and
values come from:
  none              the model reads the excerpt tokens inside the prompt (what `engine ask` does);
  fp16, int4, int2  the keys and values the engine computed for those tokens when it read their segment
                    (every layer, the store's dilated attention, positions from the segment's start),
                    kept before RoPE, quantised KIVI-style (keys per channel over each 64-token block,
                    values per token over each head's channels, min/max with fp16 scale and zero), read
                    back from a file and rotated to their place in the prompt; the model computes only
                    the rest of the prompt.
Reported per mode: bytes per token on disk (the payload plus the retrieval keys every mode keeps),
passkey accuracy, how many of data/questions.json are answered right, time to first token (payload read
and dequantised + prefill + first token), and the payload's cost when reading the corpus (all layers
instead of stopping at the deepest retrieval head). Writes bench/results/payload_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import torch
from eval_questions import answer_matches  # bench/ is the script's own folder
from safetensors import safe_open
from safetensors.numpy import save_file

from engine.answer.excerpts import Excerpt, excerpts_for_blocks
from engine.answer.prompt import build_prompt
from engine.answer.retrieval import retrieve
from engine.api import MAX_CONTEXT_TOKENS, open_store
from engine.memory.segments import encode_segments
from engine.memory.states import recorded_state_bytes
from engine.model.attention import DilatedAttention, KeyRecorder
from engine.model.llama import apply_rope
from engine.runtime import Runtime, load_runtime
from engine.selftest.passkey import QUESTION, make_trial
from ingest.sequence import read_tokens

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GROUP = 64  # tokens per key-quantisation group: the store's block
MAX_NEW_TOKENS = 24


@dataclass
class KVRecorder(KeyRecorder):
    """`KeyRecorder` that keeps the same layers' values too."""

    values: dict[int, torch.Tensor] = field(default_factory=dict)

    def __call__(self, q, k, v, *, layer: int, start: int) -> torch.Tensor:
        if layer in self.layers:
            self.values[layer] = v.detach()
        return super().__call__(q, k, v, layer=layer, start=start)


def segment_kv(runtime: Runtime, config, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values), each (tokens, layers, kv_heads, head_dim) fp32: one segment read as ingest reads it."""
    model = runtime.model
    cos, sin = model.rope(config.segment_tokens)
    layers = range(len(model.layers))
    recorder = KVRecorder(DilatedAttention(cos, sin, config.segment_lengths, config.dilation_rates, config.rope_mode),
                          set(layers))
    with torch.inference_mode():
        model.run_layers(torch.as_tensor(ids.astype(np.int64), device=runtime.device)[None], recorder,
                         len(model.layers))
    return (torch.stack([recorder.keys[layer][0].float() for layer in layers], dim=1),
            torch.stack([recorder.values[layer][0].float() for layer in layers], dim=1))


def pack(codes: torch.Tensor, bits: int) -> np.ndarray:
    """Codes below 2**bits along the last axis, 8 // bits to a byte."""
    per = 8 // bits
    packed = torch.zeros(*codes.shape[:-1], codes.shape[-1] // per, dtype=torch.uint8)
    for i in range(per):
        packed |= codes[..., i::per].to(torch.uint8) << (bits * i)
    return packed.numpy()


def unpack(packed: np.ndarray, bits: int) -> torch.Tensor:
    per, mask = 8 // bits, (1 << bits) - 1
    packed = torch.from_numpy(packed)
    parts = [(packed >> (bits * i)) & mask for i in range(per)]
    return torch.stack(parts, dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * per).float()


def quantise(x: torch.Tensor, bits: int, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric min/max quantisation over `dims`: (codes, scale, zero), x ≈ codes * scale + zero."""
    low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    scale = ((high - low) / (2 ** bits - 1)).clamp_min(1e-8)
    codes = ((x - low) / scale).round().clamp(0, 2 ** bits - 1)
    return codes, scale.half(), low.half()


def write_payload(path: Path, keys: torch.Tensor, values: torch.Tensor, mode: str) -> None:
    """One segment's payload file. Keys are grouped per GROUP tokens (per channel), values per token."""
    if mode == "fp16":
        save_file({"k": keys.half().numpy(), "v": values.half().numpy()}, str(path))
        return
    bits = int(mode.removeprefix("int"))
    tokens = keys.shape[0]
    groups = -(-tokens // GROUP)
    padded = torch.cat([keys, keys[-1:].expand(groups * GROUP - tokens, *keys.shape[1:])])
    grouped = padded.reshape(groups, GROUP, *keys.shape[1:])
    k_codes, k_scale, k_zero = quantise(grouped, bits, (1,))
    v_codes, v_scale, v_zero = quantise(values, bits, (-1,))
    save_file({"k": pack(k_codes.reshape(groups * GROUP, *keys.shape[1:])[:tokens], bits),
               "k_scale": k_scale[:, 0].numpy(), "k_zero": k_zero[:, 0].numpy(),
               "v": pack(v_codes, bits), "v_scale": v_scale.numpy(), "v_zero": v_zero.numpy()}, str(path))


def read_payload(path: Path, first: int, last: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values (last - first, layers, kv_heads, head_dim) fp32 of the segment's rows first..last."""
    with safe_open(str(path), "np") as payload:
        if mode == "fp16":
            return (torch.from_numpy(payload.get_slice("k")[first:last]).float(),
                    torch.from_numpy(payload.get_slice("v")[first:last]).float())
        bits = int(mode.removeprefix("int"))
        groups = torch.arange(first, last) // GROUP
        g_first, g_last = int(groups[0]), int(groups[-1]) + 1
        k_scale = torch.from_numpy(payload.get_slice("k_scale")[g_first:g_last]).float()[groups - g_first]
        k_zero = torch.from_numpy(payload.get_slice("k_zero")[g_first:g_last]).float()[groups - g_first]
        keys = unpack(payload.get_slice("k")[first:last], bits) * k_scale + k_zero
        v_scale = torch.from_numpy(payload.get_slice("v_scale")[first:last]).float()
        v_zero = torch.from_numpy(payload.get_slice("v_zero")[first:last]).float()
        values = unpack(payload.get_slice("v")[first:last], bits) * v_scale + v_zero
    return keys, values


def payload_bytes_per_token(directory: Path, mode: str, tokens: int) -> float:
    return sum(path.stat().st_size for path in directory.glob(f"*.{mode}.safetensors")) / tokens


@dataclass
class PayloadStore:
    """Every segment's payload in every quantised mode, written beside a store (what ingest would write)."""

    directory: Path
    segments: list[tuple[int, int]]
    tokens: int = 0
    encode_s: float = 0.0  # reading the segments to the deepest retrieval head only (what `none` pays)
    payload_encode_s: float = 0.0  # reading them through every layer, keeping K/V

    @classmethod
    def build(cls, runtime: Runtime, memory, directory: Path, modes: list[str]) -> PayloadStore:
        db, config = memory.store.db, memory.config
        segments = [tuple(row) for row in db.execute("SELECT token_start, token_end FROM segments ORDER BY token_start")]
        built = cls(directory, segments)
        directory.mkdir(parents=True, exist_ok=True)
        for start, end in segments:
            ids = read_tokens(memory.root / "tokens.u32", start, end)
            began = time.perf_counter()
            encode_segments(runtime, config, [ids])
            built.encode_s += time.perf_counter() - began
            began = time.perf_counter()
            keys, values = segment_kv(runtime, config, ids)
            built.payload_encode_s += time.perf_counter() - began
            for mode in modes:
                write_payload(directory / f"{start:012d}.{mode}.safetensors", keys, values, mode)
            built.tokens += end - start
        return built

    def rows(self, first: int, last: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of sequence positions first..last, from the segments that hold them."""
        keys, values = [], []
        for start, end in self.segments:
            low, high = max(first, start), min(last, end)
            if low < high:
                k, v = read_payload(self.directory / f"{start:012d}.{mode}.safetensors", low - start, high - start, mode)
                keys.append(k)
                values.append(v)
        return torch.cat(keys), torch.cat(values)


@torch.inference_mode()
def answer_with(runtime: Runtime, prompt: list[int], excerpts: list[Excerpt], payload: PayloadStore | None,
                mode: str) -> tuple[str, float]:
    """(answer, seconds to the first token): greedy, the excerpts' K/V from `payload` unless mode is none."""
    model, tokenizer = runtime.model, runtime.tokenizer
    device, dtype = runtime.device, model.embed.weight.dtype
    started = time.perf_counter()
    attention = model.cached_attention(1, len(prompt) + MAX_NEW_TOKENS)
    cos, sin = attention.cos, attention.sin
    computed = [(0, len(prompt))]
    if mode != "none":
        computed, cursor = [], 0
        for excerpt in excerpts:
            computed.append((cursor, excerpt.prompt_start))
            keys, values = payload.rows(excerpt.token_start, excerpt.token_start + len(excerpt.ids), mode)
            place = slice(excerpt.prompt_start, excerpt.prompt_end)
            for layer in range(len(model.layers)):
                k = keys[:, layer].to(device=device, dtype=dtype)[None]
                attention.cache.k[layer][:, place] = apply_rope(k, cos[place], sin[place])
                attention.cache.v[layer][:, place] = values[:, layer].to(device=device, dtype=dtype)[None]
            cursor = excerpt.prompt_end
        computed.append((cursor, len(prompt)))
    hidden = None
    for first, last in computed:
        if first < last:
            hidden = model.hidden_states(torch.tensor([prompt[first:last]], device=device), attention, first)
    produced, position = [], len(prompt)
    token = int(model.logits(hidden[:, -1]).argmax(-1))
    first_token_s = time.perf_counter() - started
    while token not in tokenizer.stop_ids and len(produced) < MAX_NEW_TOKENS:
        produced.append(token)
        hidden = model.hidden_states(torch.tensor([[token]], device=device), attention, position)
        position += 1
        token = int(model.logits(hidden[:, -1]).argmax(-1))
    return tokenizer.decode(produced, skip_special_tokens=True), first_token_s


def prompt_for(runtime: Runtime, memory, question: str, top_k: int = 4) -> tuple[list[int], list[Excerpt]]:
    """The prompt and excerpts `engine ask` builds for `question`."""
    blocks = retrieve(runtime, memory.config, memory.index(), memory.store, question, top_k)
    excerpts = excerpts_for_blocks(runtime, memory.store, blocks, memory.config.block_tokens,
                                   MAX_CONTEXT_TOKENS)
    return build_prompt(runtime, excerpts, question), excerpts


@dataclass
class ModeTally:
    passkey: dict[str, list[bool]] = field(default_factory=dict)
    questions: list[bool] = field(default_factory=list)
    first_token_s: list[float] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)


def ask_all_modes(runtime, memory, payload, question, modes, tallies) -> list[str]:
    prompt, excerpts = prompt_for(runtime, memory, question)
    answers = []
    for mode in modes:
        text, first_token_s = answer_with(runtime, prompt, excerpts, payload, mode)
        tallies[mode].first_token_s.append(first_token_s)
        tallies[mode].answers.append(text)
        answers.append(text)
    return answers


def parse_passkey(spec: str) -> list[tuple[int, int]]:
    pairs = []
    for part in spec.split(","):
        length, trials = part.split(":")
        pairs.append((int(length.lower().removesuffix("k")) * 1024, int(trials)))
    return pairs


def write_report(runtime, modes, tallies, bytes_per_token, encode, load_at_start, final: bool = False) -> None:
    """The results so far (written after every answer: a long run stopped early keeps what it measured)."""
    report = {"date": date.today().isoformat(), "device": runtime.device.type, "cores": os.cpu_count(),
              "torch": torch.__version__, "model": runtime.source.name, "load_average_start": load_at_start,
              "load_average_end": os.getloadavg(), "group_tokens": GROUP, "max_new_tokens": MAX_NEW_TOKENS,
              "finished": final,
              "reading_the_corpus": {
                  "tokens": encode["tokens"],
                  "to_deepest_retrieval_head_tok_s": round(encode["tokens"] / encode["deepest_head_s"], 1),
                  "all_layers_keeping_kv_tok_s": round(encode["tokens"] / encode["all_layers_s"], 1)},
              "modes": {}}
    for mode in modes:
        tally = tallies[mode]
        report["modes"][mode] = {
            "bytes_per_token": round(statistics.mean(bytes_per_token[mode]), 1),
            "passkey": {length: f"{sum(hits)}/{len(hits)}" for length, hits in tally.passkey.items()},
            "questions_right": f"{sum(tally.questions)}/{len(tally.questions)}",
            "first_token_s": {"median": round(statistics.median(tally.first_token_s), 3),
                              "max": round(max(tally.first_token_s), 3)},
            "answers": tally.answers}
        if final:
            print(f"{mode:5s} {report['modes'][mode]['bytes_per_token']:>9,.1f} B/token  "
                  f"passkey {report['modes'][mode]['passkey']}  questions {report['modes'][mode]['questions_right']}  "
                  f"first token median {report['modes'][mode]['first_token_s']['median']:.3f} s")
    (RESULTS / f"payload_{runtime.device.type}.json").write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passkey", default="4k:4,32k:2", help="LENGTH:TRIALS,… haystacks (depths spread evenly)")
    parser.add_argument("--modes", default="none,fp16,int4,int2")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    modes = args.modes.split(",")
    stored = [mode for mode in modes if mode != "none"]
    load_at_start = os.getloadavg()
    runtime = load_runtime(None, args.device)
    tallies = {mode: ModeTally() for mode in modes}
    bytes_per_token: dict[str, list[float]] = {mode: [] for mode in modes}
    encode = {"deepest_head_s": 0.0, "all_layers_s": 0.0, "tokens": 0}

    def measure_store(memory, scratch: Path) -> PayloadStore:
        payload = PayloadStore.build(runtime, memory, scratch / "payload", stored)
        encode["deepest_head_s"] += payload.encode_s
        encode["all_layers_s"] += payload.payload_encode_s
        encode["tokens"] += payload.tokens
        _segments, tokens, key_bytes = recorded_state_bytes(memory.store)
        for mode in modes:
            extra = payload_bytes_per_token(payload.directory, mode, tokens) if mode != "none" else 0.0
            bytes_per_token[mode].append(key_bytes / tokens + extra)
        return payload

    questions = json.loads((ROOT / "data" / "questions.json").read_text())["questions"]
    with tempfile.TemporaryDirectory(prefix="payload-") as scratch:
        with open_store(Path(scratch) / "store", runtime=runtime, write=True) as memory:
            memory.add([ROOT / "data"])
            memory.process()
            payload = measure_store(memory, Path(scratch))
            for question in questions:
                answers = ask_all_modes(runtime, memory, payload, question["question"], modes, tallies)
                for mode, text in zip(modes, answers):
                    tallies[mode].questions.append(answer_matches(text, question["answer"]))
                write_report(runtime, modes, tallies, bytes_per_token, encode, load_at_start)
                print(f"{question['id']:14s} " + "  ".join(f"{m}={answer_matches(t, question['answer'])!s:5}"
                                                             for m, t in zip(modes, answers)), flush=True)
    rng = random.Random(0)
    for length, trials in parse_passkey(args.passkey):
        for index in range(trials):
            trial = make_trial(runtime.tokenizer, length, rng, (index + 0.5) / trials)
            with tempfile.TemporaryDirectory(prefix="payload-") as scratch:
                corpus = Path(scratch) / "corpus"
                corpus.mkdir()
                (corpus / "haystack.txt").write_text(trial.haystack)
                with open_store(Path(scratch) / "store", runtime=runtime, write=True) as memory:
                    memory.add([corpus])
                    memory.process()
                    payload = measure_store(memory, Path(scratch))
                    answers = ask_all_modes(runtime, memory, payload, QUESTION, modes, tallies)
            for mode, text in zip(modes, answers):
                tallies[mode].passkey.setdefault(str(length), []).append(trial.passes(text))
            write_report(runtime, modes, tallies, bytes_per_token, encode, load_at_start)
            print(f"passkey {length} depth {trial.depth:.2f} " + "  ".join(
                f"{m}={trial.passes(t)!s:5}" for m, t in zip(modes, answers)), flush=True)

    write_report(runtime, modes, tallies, bytes_per_token, encode, load_at_start, final=True)


if __name__ == "__main__":
    main()
