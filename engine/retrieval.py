"""Finding the blocks a question needs: the model's own retrieval heads (MaxSim over stored keys, through
faiss) fused with the catalog's full-text search.

For each retrieval head the question's own tokens are encoded by the model; each token's query (unit
length) searches that head's stored keys; a block's score is the sum over question tokens of the best
match inside the block (MaxSim, as in ColBERT: a block absent from a token's candidates counts 0).
Heads are summed. The lexical path ranks spans by BM25 (SQLite FTS5); both rankings are fused by
reciprocal rank, which needs no score calibration between them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.attention import QueryRecorder
from engine.config import EngineConfig
from engine.generate import question_prompt
from engine.key_index import KeyIndex
from engine.runtime import Runtime
from ingest import catalog
from ingest.sequence import read_tokens

CANDIDATES_PER_TOKEN = 256
RRF_K = 60
STOPWORDS = set("a an and are as at be by did do does for from had has have how i in is it its my of on or that "
                "the their there this to was were what when where which who why will with you your me we our".split())


@torch.inference_mode()
def question_queries(runtime: Runtime, config: EngineConfig, question: str) -> list[np.ndarray]:
    """Per retrieval head, unit pre-RoPE queries (question tokens, head_dim) of the question's own tokens."""
    prompt, start, own = question_prompt(runtime.tokenizer, question)
    deepest = max(layer for layer, _ in config.heads)
    recorder = QueryRecorder(*runtime.model.rope(len(prompt)), {layer for layer, _ in config.heads})
    runtime.model.run_layers(torch.tensor([prompt], device=runtime.device), recorder, deepest + 1)
    return [F.normalize(recorder.queries[layer][start:start + own, head].float(), dim=-1).cpu().numpy()
            for layer, head in config.heads]


def model_block_scores(index: KeyIndex, queries: list[np.ndarray], block_tokens: int) -> dict[int, float]:
    scores: dict[int, float] = defaultdict(float)
    if index.tokens == 0:
        return scores
    k = min(CANDIDATES_PER_TOKEN, index.tokens)
    for head_index, head_queries in zip(index.indexes, queries):
        similarities, rows = head_index.search(np.ascontiguousarray(head_queries), k)
        for token_sims, token_rows in zip(similarities, rows):
            best: dict[int, float] = {}
            for sim, row in zip(token_sims, token_rows):
                if row < 0:  # the probed lists of an approximate index held fewer than k keys
                    break
                block = int(index.positions[row]) // block_tokens
                if sim > best.get(block, -1.0):
                    best[block] = float(sim)
            for block, sim in best.items():
                scores[block] += sim / len(head_queries)
    return scores


def question_words(question: str) -> list[str]:
    """The question's content words, lower case, in order, once each."""
    words = [w for w in re.findall(r"\w+", question.lower()) if w not in STOPWORDS and len(w) > 1]
    return list(dict.fromkeys(words))


def fts_query(question: str) -> str | None:
    """The question's content words, OR-ed, each quoted: FTS5 syntax can never be broken by user text."""
    return " OR ".join(f'"{w}"' for w in question_words(question)) or None


def lexical_block_ranking(db, question: str, block_tokens: int, text_of: Callable[[int, int], str],
                          limit: int = 20) -> list[int]:
    """Blocks of the spans full-text search ranks best (BM25, SQLite FTS5), best span first; inside a span,
    the blocks holding more of the question's words first and blocks holding none left out.

    A span is several blocks and BM25 scores it whole: ranking its blocks in sequence order put a passkey
    at the end of a 4-block span fourth, behind three blocks of filler. `text_of(start, end)` is the text
    of the tokens in [start, end)."""
    query = fts_query(question)
    if query is None:
        return []
    words = set(question_words(question))
    ranking: list[int] = []
    for span in catalog.search_spans(db, query, limit):
        hits = {}
        for block in range(span["token_start"] // block_tokens, (span["token_end"] - 1) // block_tokens + 1):
            start, end = max(span["token_start"], block * block_tokens), min(span["token_end"], (block + 1) * block_tokens)
            hits[block] = sum(word in words for word in re.findall(r"\w+", text_of(start, end).lower()))
        for block in sorted((block for block in hits if hits[block]), key=lambda block: -hits[block]):
            if block not in ranking:
                ranking.append(block)
    return ranking


def fuse(rankings: list[list[int]]) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: sum of 1/(60 + rank) over the rankings a block appears in, best first."""
    fused: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, block in enumerate(ranking):
            fused[block] += 1.0 / (RRF_K + rank + 1)
    return sorted(fused.items(), key=lambda item: -item[1])


def text_reader(runtime: Runtime, root: Path) -> Callable[[int, int], str]:
    """The text of a store's tokens [start, end)."""
    return lambda start, end: runtime.tokenizer.decode(read_tokens(root / "tokens.u32", start, end).tolist())


def retrieve(runtime: Runtime, config: EngineConfig, index: KeyIndex, root: Path, db, question: str, top_k: int,
             lexical: bool = True) -> list[tuple[int, float]]:
    """The `top_k` best blocks (block number, fused score), best first."""
    model_scores = model_block_scores(index, question_queries(runtime, config, question), config.block_tokens)
    rankings = [sorted(model_scores, key=lambda block: -model_scores[block])[:4 * top_k]]
    if lexical:
        rankings.append(lexical_block_ranking(db, question, config.block_tokens, text_reader(runtime, root)))
    return fuse(rankings)[:top_k]
