"""The retrieval heads' queries for a piece of text: a question, or the background passages of the hub scores."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engine.memory.config import EngineConfig
from engine.model.attention import QueryRecorder
from engine.model.generate import question_prompt
from engine.runtime import Runtime


@torch.inference_mode()
def question_queries(runtime: Runtime, config: EngineConfig, question: str) -> list[np.ndarray]:
    """Per retrieval head, unit pre-RoPE queries (question tokens, head_dim) of the question's own tokens, the
    question asked in the chat prompt."""
    prompt, start, own = question_prompt(runtime.tokenizer, question)
    recorder = QueryRecorder(*runtime.model.rope(len(prompt)), {layer for layer, _ in config.heads})
    runtime.model.run_layers(torch.tensor([prompt], device=runtime.device), recorder, config.layers_read)
    return [F.normalize(recorder.queries[layer][start:start + own, head].float(), dim=-1).cpu().numpy()
            for layer, head in config.heads]


def background_queries(runtime: Runtime, config: EngineConfig) -> list[np.ndarray]:
    """Per retrieval head, the queries of every background passage asked as a question, stacked (rows, head_dim)."""
    asked = [question_queries(runtime, config, passage) for passage in config.background]
    return [np.concatenate([queries[head] for queries in asked]) for head in range(len(config.heads))]
