"""`engine generate PROMPT`: talk to the model itself, no corpus, streaming to the terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time

from engine.errors import UsageError
from engine.model.generate import chat_prompt_ids, generate_tokens, stream_text
from engine.runtime import load_runtime


def run(args: argparse.Namespace) -> int:
    if not args.prompt.strip():
        raise UsageError("the prompt is empty")
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1 (got {args.max_new_tokens})")
    runtime = load_runtime(args.model, args.device)
    prompt_ids = chat_prompt_ids(runtime.tokenizer, args.prompt, args.system)
    started = time.perf_counter()
    pieces, new_tokens = [], 0

    def counted():
        nonlocal new_tokens
        for token in generate_tokens(runtime.model, prompt_ids, args.max_new_tokens, runtime.tokenizer.stop_ids):
            new_tokens += 1
            yield token

    for piece in stream_text(runtime.tokenizer, counted()):
        pieces.append(piece)
        if not args.json:
            sys.stdout.write(piece)
            sys.stdout.flush()
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"text": "".join(pieces), "prompt_tokens": len(prompt_ids), "new_tokens": new_tokens,
                          "seconds": round(seconds, 3)}))
    else:
        sys.stdout.write("\n")
    return 0
