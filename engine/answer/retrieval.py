"""Finding the blocks a question needs: the model's own retrieval heads (MaxSim over stored keys, through
faiss) fused with the catalog's full-text search.

For each retrieval head the question's own tokens are encoded by the model; each token's query (unit
length) searches that head's stored keys; a block's score is the sum over question tokens of the best
match inside the block (MaxSim, as in ColBERT: a block absent from a token's candidates counts 0).
Heads are summed. The lexical path ranks spans by BM25 (SQLite FTS5). The two rankings take turns, full-text
first (its first block, the heads' first, its second, ...): on real prose (bench/qa, 51 answerable train
questions) full-text search alone put the gold block first in 65% of questions and the heads in none, so it
leads; but taking turns found the gold block among 4 for one more question than full-text blocks first
(70.6% against 68.6%), and among the 6 blocks an answer reads (`TOP_K`), the evidence sentence lay on the gold
lines for 32 of the 36 fact and why/how questions against 29 (bench/results/qa_evidence_train.json).
Reciprocal-rank fusion, which tied both lists' first blocks and kept the heads' first, put the gold block first
in none (bench/results/qa_retrieval_order_train.json).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import zip_longest

import numpy as np
import torch

from engine.memory.config import EngineConfig
from engine.memory.key_index import KeyIndex
from engine.memory.queries import question_queries
from engine.runtime import Runtime
from ingest import catalog
from ingest.sequence import read_tokens
from ingest.store import Store

CANDIDATES_PER_TOKEN = 256
TOP_K = 6  # blocks of the store an answer reads: 384 tokens, a third of the prompt's room for excerpts
STOPWORDS = set("a an and are as at be by did do does for from had has have how i in is it its my of on or that "
                "the their there this to was were what when where which who why will with you your me we our".split())


Matches = list[list[tuple[dict[int, float], float]]]  # per head, per question token: (block -> best sim, floor)


def candidate_matches(index: KeyIndex, queries: list[np.ndarray], block_tokens: int) -> tuple[list[int], Matches]:
    """The candidate blocks, and per head and question token the best similarity inside each block among the
    token's `CANDIDATES_PER_TOKEN` best keys, with the last of those similarities (a bound the best match of a
    block outside them stays under)."""
    if index.tokens == 0:
        return [], [[] for _ in queries]
    k = min(CANDIDATES_PER_TOKEN, index.tokens)
    matches: Matches = []
    for head_index, head_queries in zip(index.indexes, queries):
        similarities, rows = head_index.search(np.ascontiguousarray(head_queries), k)
        per_token = []
        for token_sims, token_rows in zip(similarities, rows):
            valid = token_rows >= 0  # the probed lists of an approximate index may hold fewer than k keys
            best: dict[int, float] = {}
            for sim, row in zip(token_sims[valid], token_rows[valid]):
                block = int(index.positions[row]) // block_tokens
                best[block] = max(best.get(block, -1.0), float(sim))
            per_token.append((best, float(token_sims[valid][-1]) if valid.any() else 0.0))
        matches.append(per_token)
    return sorted({block for per_token in matches for best, _ in per_token for block in best}), matches


def block_maxsim(blocks: list[int], per_token: list[tuple[dict[int, float], float]],
                 missing: np.ndarray | None = None) -> np.ndarray:
    """One head's MaxSim of each block: the mean over question tokens of the token's best match inside the block.
    A block outside a token's candidates counts `missing[block]` there, but never more than the token's floor
    (the token's floor itself when `missing` is None)."""
    scores = np.zeros(len(blocks))
    for best, floor in per_token:
        fallback = np.full(len(blocks), floor) if missing is None else np.minimum(missing, floor)
        scores += [best.get(block, fallback[i]) for i, block in enumerate(blocks)]
    return scores / max(len(per_token), 1)


def exact_block_maxsim(index: KeyIndex, queries: list[np.ndarray], block_tokens: int) -> tuple[list[int], np.ndarray]:
    """Every block's MaxSim for each head (heads, blocks), from every stored key: one product of the question's
    queries with the exact index's keys, then the best per block."""
    blocks, places = index.row_blocks(block_tokens)
    rows_block = torch.from_numpy(places)
    scores = []
    for head, head_queries in enumerate(queries):
        sims = torch.from_numpy(np.ascontiguousarray(head_queries)) @ torch.from_numpy(index.exact_keys(head)).T
        best = torch.full((sims.shape[0], len(blocks)), -1.0).scatter_reduce(
            1, rows_block.expand_as(sims), sims, reduce="amax", include_self=False)
        scores.append(best.mean(dim=0).numpy())
    return blocks.tolist(), np.array(scores)


def model_block_scores(index: KeyIndex, queries: list[np.ndarray], block_tokens: int) -> dict[int, float]:
    """Each block's score: per head its MaxSim less the block's hub score (what it scores against ordinary
    text), standardised over the blocks so that a head with a wide spread of similarities does not drown the
    others; summed over heads.

    The exact index scores every block from every key (on the QA train split, 43% of questions had the gold
    block in the top 4 this way, 16% from the candidates alone). An approximate index scores the candidate blocks
    only; where a block is outside a question token's candidates, its hub score stands in for the match (no sign
    of more than ordinary)."""
    if index.tokens and index.exact_keys(0) is not None:
        blocks, maxsim = exact_block_maxsim(index, queries, block_tokens)
    else:
        blocks, matches = candidate_matches(index, queries, block_tokens)
        maxsim = [block_maxsim(blocks, per_token, index.block_hubs(blocks, head) if index.hubs is not None else None)
                  for head, per_token in enumerate(matches)]
    total = np.zeros(len(blocks))
    for head, scores in enumerate(maxsim):
        centred = scores - index.block_hubs(blocks, head)
        total += (centred - centred.mean()) / (centred.std() + 1e-6)
    return dict(zip(blocks, total.tolist()))


def content_words(text: str) -> list[str]:
    """The content words of `text`, lower case, in order (stopwords and single characters left out)."""
    return [word for word in re.findall(r"\w+", text.lower()) if word not in STOPWORDS and len(word) > 1]


def question_words(question: str) -> list[str]:
    """The question's content words, lower case, in order, once each."""
    return list(dict.fromkeys(content_words(question)))


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


def take_turns(*rankings: list[int]) -> list[int]:
    """The rankings taking turns, the first one first, each block once."""
    return list(dict.fromkeys(block for group in zip_longest(*rankings) for block in group if block is not None))


def merge(lexical: list[int], model: list[int]) -> list[tuple[int, float]]:
    """Full-text and the model heads' blocks taking turns, full-text first; each with the score 1/(1 + place),
    so a caller can see how far down a block came."""
    return [(block, 1.0 / (place + 1)) for place, block in enumerate(take_turns(lexical, model))]


def text_reader(runtime: Runtime, store: Store) -> Callable[[int, int], str]:
    """The text of a store's tokens [start, end)."""
    return lambda start, end: runtime.tokenizer.decode(read_tokens(store.tokens_path, start, end).tolist())


def retrieve(runtime: Runtime, config: EngineConfig, index: KeyIndex, store: Store, question: str, top_k: int,
             lexical: bool = True) -> list[tuple[int, float]]:
    """The `top_k` best blocks (block number, score), best first."""
    model_scores = model_block_scores(index, question_queries(runtime, config, question), config.block_tokens)
    model = sorted(model_scores, key=lambda block: -model_scores[block])[:4 * top_k]
    found = lexical_block_ranking(store.db, question, config.block_tokens, text_reader(runtime, store)) if lexical else []
    return merge(found, model)[:top_k]
