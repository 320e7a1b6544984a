"""Measurements that decide the next steps (evidence sentences, "not in your files"), on the train split only.

- Where the gold lines are: in the prompt's passages, in the engine's first retrieved block, in the model-head
  and full-text rankings' top blocks.
- Evidence-sentence selectors over the passages a system retrieved: lexical overlap (BM25 over stemmed content
  words, document frequencies from the corpus' own sentences), MiniLM cosine, and both (min-max normalised
  within the question, summed). How often the chosen sentence lies in the gold lines.
- Found vs absent: per signal, its values on answerable and on absent questions, the area under the ROC curve,
  and the thresholds ("found" when the signal is at least t) that give >= 90% abstention on absent questions
  with <= 10% wrong refusals, if any does.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from pathlib import Path

import numpy as np
from check_questions import CORPUS, content_stems

BM25_K1, BM25_B = 1.2, 0.75
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
TOP_BLOCKS = 5


def retrieval_signals(store, question: str) -> dict:
    """What the engine's retrieval sees for `question` (the same calls `retrieve` makes): the best model-head
    score, the merged scores (full-text blocks first), and the lines of the top blocks of each list."""
    from engine.answer.excerpts import excerpts_for_blocks
    from engine.answer.retrieval import lexical_block_ranking, merge, model_block_scores, question_queries, text_reader
    from engine.api import MAX_CONTEXT_TOKENS

    runtime, config, db = store.runtime, store.config, store.store.db
    model_scores = model_block_scores(store.index(), question_queries(runtime, config, question), config.block_tokens)
    model_ranking = sorted(model_scores, key=lambda block: -model_scores[block])[:16]
    lexical_ranking = lexical_block_ranking(db, question, config.block_tokens, text_reader(runtime, store.store))
    fused = merge(lexical_ranking, model_ranking)[:4]

    def lines(blocks: list[int]) -> list[list]:
        found = []
        for block in blocks:
            for e in excerpts_for_blocks(runtime, store.store, [(block, 0.0)], config.block_tokens,
                                         MAX_CONTEXT_TOKENS):
                found.append([Path(e.citation.paths[0]).name, e.line_start, e.line_start + sum(e.breaks)])
        return found

    return {"model_top_score": model_scores[model_ranking[0]] if model_ranking else 0.0,
            "model_scores": [model_scores[block] for block in model_ranking[:TOP_BLOCKS]],
            "fused_scores": [score for _, score in fused], "lexical_blocks": len(lexical_ranking),
            "fused_top_in_both": bool(fused) and fused[0][0] in model_ranking and fused[0][0] in lexical_ranking,
            "fused_top1_lines": lines([block for block, _ in fused[:1]]),
            "model_top_lines": [lines([block]) for block in model_ranking[:TOP_BLOCKS]],
            "lexical_top_lines": [lines([block]) for block in lexical_ranking[:TOP_BLOCKS]]}


def sentences(text: str, path: str, line_start: int) -> list[dict]:
    """The sentences (or paragraphs without a full stop) of a passage, each with its first and last line."""
    found, begin = [], 0
    for boundary in [*SENTENCE_BREAK.finditer(text), None]:
        end = boundary.start() if boundary else len(text)
        piece = text[begin:end]
        if len(re.findall(r"[A-Za-z]{2,}", piece)) >= 3:
            first = line_start + text.count("\n", 0, begin + len(piece) - len(piece.lstrip()))
            found.append({"path": path, "start_line": first, "end_line": first + piece.strip().count("\n"),
                          "text": " ".join(piece.split())})
        begin = boundary.end() if boundary else len(text)
    return found


class Lexical:
    """BM25 of a question's stemmed content words against one sentence, with the corpus' sentences as the
    collection (document frequency and average length)."""

    def __init__(self):
        frequencies, lengths = Counter(), []
        for path in sorted(CORPUS.iterdir()):
            for sentence in sentences(path.read_text(encoding="utf-8"), path.name, 1):
                stems = content_stems(sentence["text"])
                frequencies.update(stems)
                lengths.append(len(stems))
        self.count, self.average = len(lengths), statistics.mean(lengths)
        self.frequencies = frequencies

    def idf(self, stem: str) -> float:
        n = self.frequencies.get(stem, 0)
        return math.log(1 + (self.count - n + 0.5) / (n + 0.5))

    def score(self, question_stems: set[str], text: str) -> float:
        words = Counter()
        for stem in content_stems(text):
            words[stem] += 1
        length = sum(words.values()) or 1
        total = 0.0
        for stem in question_stems:
            tf = words.get(stem, 0)
            if tf:
                total += self.idf(stem) * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * length / self.average))
        return total


def overlaps(item: dict, candidate: dict) -> bool:
    return (candidate["path"] == item["path"] and candidate["start_line"] <= item["end_line"]
            and candidate["end_line"] >= item["start_line"])


def lines_hit(item: dict, lines: list[list]) -> bool:
    return any(overlaps(item, {"path": p, "start_line": a, "end_line": b}) for p, a, b in lines)


def minmax(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min()
    return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)


def select(item: dict, record: dict, lexical: Lexical, embedder, question_vector) -> dict:
    """Each selector's choice among the sentences of the record's passages, and the signals of the best ones."""
    candidates = [s for e in record["excerpts"] for s in sentences(e["text"], e["path"], e["start_line"])]
    stems = content_stems(item["question"])
    if not candidates:
        return {"candidates": 0}
    bm25 = np.array([lexical.score(stems, c["text"]) for c in candidates])
    from baseline import embed

    cosine = embed(embedder, [c["text"] for c in candidates]) @ question_vector
    combined = minmax(bm25) + minmax(cosine)
    passages = " ".join(e["text"] for e in record["excerpts"])
    best_lexical = candidates[int(bm25.argmax())]
    chosen = {"bm25": best_lexical, "cosine": candidates[int(cosine.argmax())],
              "combined": candidates[int(combined.argmax())]}
    result = {"candidates": len(candidates), "best_bm25": float(bm25.max()), "best_cosine": float(cosine.max()),
              "coverage_best_sentence": len(stems & content_stems(best_lexical["text"])) / max(len(stems), 1),
              "coverage_passages": len(stems & content_stems(passages)) / max(len(stems), 1)}
    if item["kind"] != "absent":
        result["any_candidate_in_gold"] = any(overlaps(item, c) for c in candidates)
        result.update({f"{name}_in_gold": overlaps(item, c) for name, c in chosen.items()})
    result["chosen"] = {name: f"{c['path']}:{c['start_line']}-{c['end_line']} {c['text'][:160]}"
                        for name, c in chosen.items()}
    return result


def auc(positive: list[float], negative: list[float]) -> float | None:
    """Probability that an answerable question's signal exceeds an absent one's (ties count half)."""
    if not positive or not negative:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return round(wins / (len(positive) * len(negative)), 3)


def thresholds(answerable: list[float], absent: list[float]) -> dict:
    """"Found" when signal >= t: for each t, abstention on absent and wrong refusals on answerable."""
    rows = []
    for t in sorted(set(answerable) | set(absent)) + [math.inf]:
        rows.append({"t": t, "abstain_absent": sum(v < t for v in absent) / len(absent),
                     "wrong_refusal": sum(v < t for v in answerable) / len(answerable)})
    meets = [r for r in rows if r["abstain_absent"] >= 0.9 and r["wrong_refusal"] <= 0.1]
    low_refusal = [r for r in rows if r["wrong_refusal"] <= 0.1]
    high_abstain = [r for r in rows if r["abstain_absent"] >= 0.9]
    def tidy(r):
        return r and {k: ("inf" if v == math.inf else round(float(v), 4)) for k, v in r.items()}
    return {"meets_target": tidy(max(meets, key=lambda r: r["abstain_absent"] - r["wrong_refusal"]) if meets else None),
            "best_abstention_with_refusals_le_10pct": tidy(max(low_refusal, key=lambda r: r["abstain_absent"])),
            "fewest_refusals_with_abstention_ge_90pct": tidy(min(high_abstain, key=lambda r: r["wrong_refusal"]))}


def distribution(values: list[float]) -> dict:
    if not values:
        return {}
    q = np.quantile(values, [0, 0.25, 0.5, 0.75, 1])
    return {"n": len(values), "min": round(float(q[0]), 4), "q25": round(float(q[1]), 4),
            "median": round(float(q[2]), 4), "q75": round(float(q[3]), 4), "max": round(float(q[4]), 4)}


def signal_report(items: list[dict], records: dict, embedder=None) -> dict:
    """The measurements above from the raw records of a train run."""
    from baseline import embed, load_embedder

    embedder = embedder or load_embedder()
    lexical = Lexical()
    per_question, rates = [], {}
    for item in items:
        engine = records.get((item["id"], "engine"))
        baseline = records.get((item["id"], "baseline"))
        if engine is None:
            continue
        question_vector = embed(embedder, [item["question"]])[0]
        row = {"id": item["id"], "kind": item["kind"], "engine": select(item, engine, lexical, embedder, question_vector),
               "corpus_share": engine["corpus_share"]}
        retrieval = engine.get("retrieval", {})
        row.update({"model_top_score": retrieval.get("model_top_score"),
                    "fused_top_score": (retrieval.get("fused_scores") or [None])[0],
                    "lexical_blocks": retrieval.get("lexical_blocks"),
                    "fused_top_in_both": retrieval.get("fused_top_in_both")})
        if baseline is not None:
            row["baseline"] = select(item, baseline, lexical, embedder, question_vector)
            row["baseline_top_similarity"] = max(e["similarity"] for e in baseline["excerpts"])
        if item["kind"] != "absent":
            row["gold_in_prompt"] = any(overlaps(item, e) for e in engine["excerpts"])
            row["gold_cited"] = any(overlaps(item, c) for c in engine["citations"])
            if retrieval:
                row["gold_in_fused_top1"] = lines_hit(item, retrieval["fused_top1_lines"])
                row["gold_in_model_top1"] = bool(retrieval["model_top_lines"]) and lines_hit(item, retrieval["model_top_lines"][0])
                row["gold_in_model_top5"] = any(lines_hit(item, lines) for lines in retrieval["model_top_lines"])
                row["gold_in_lexical_top1"] = bool(retrieval["lexical_top_lines"]) and lines_hit(item, retrieval["lexical_top_lines"][0])
                row["gold_in_lexical_top5"] = any(lines_hit(item, lines) for lines in retrieval["lexical_top_lines"])
            if baseline is not None:
                row["gold_in_baseline_prompt"] = any(overlaps(item, e) for e in baseline["excerpts"])
        per_question.append(row)

    answerable = [row for row in per_question if row["kind"] != "absent"]
    absent = [row for row in per_question if row["kind"] == "absent"]
    def share(rows, key):
        return round(sum(bool(r.get(key)) for r in rows) / len(rows), 3) if rows else None
    for kind in ("fact", "paraphrase", "why_how", "answerable"):
        rows = answerable if kind == "answerable" else [r for r in answerable if r["kind"] == kind]
        rates[kind] = {"n": len(rows), **{key: share(rows, key) for key in (
            "gold_in_prompt", "gold_cited", "gold_in_fused_top1", "gold_in_model_top1", "gold_in_model_top5",
            "gold_in_lexical_top1", "gold_in_lexical_top5", "gold_in_baseline_prompt")}}
        for pool in ("engine", "baseline"):
            pooled = [r[pool] for r in rows if pool in r]
            rates[kind][f"{pool}_sentence"] = {key: share(pooled, key) for key in (
                "any_candidate_in_gold", "bm25_in_gold", "cosine_in_gold", "combined_in_gold")}
    signals = {}
    getters = {
        "engine_model_top_score": lambda r: r.get("model_top_score"),
        "engine_fused_top_score": lambda r: r.get("fused_top_score"),
        "engine_lexical_blocks": lambda r: r.get("lexical_blocks"),
        "engine_corpus_share": lambda r: r.get("corpus_share"),
        "engine_best_sentence_bm25": lambda r: r["engine"].get("best_bm25"),
        "engine_best_sentence_cosine": lambda r: r["engine"].get("best_cosine"),
        "engine_coverage_best_sentence": lambda r: r["engine"].get("coverage_best_sentence"),
        "engine_coverage_passages": lambda r: r["engine"].get("coverage_passages"),
        "baseline_top_chunk_similarity": lambda r: r.get("baseline_top_similarity"),
        "baseline_best_sentence_bm25": lambda r: r.get("baseline", {}).get("best_bm25"),
        "baseline_best_sentence_cosine": lambda r: r.get("baseline", {}).get("best_cosine"),
        "baseline_coverage_passages": lambda r: r.get("baseline", {}).get("coverage_passages"),
    }
    for name, get in getters.items():
        pos = [float(v) for v in map(get, answerable) if v is not None]
        neg = [float(v) for v in map(get, absent) if v is not None]
        if pos and neg:
            signals[name] = {"answerable": distribution(pos), "absent": distribution(neg), "auc": auc(pos, neg),
                             **thresholds(pos, neg)}
    return {"split": "train", "summary": {"gold_lines": rates,
                                          "found_vs_absent": {name: {"auc": s["auc"], "meets_target": s["meets_target"]}
                                                              for name, s in signals.items()}},
            "signals": signals, "per_question": per_question}
