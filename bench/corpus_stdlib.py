"""A corpus of about a million tokens of real code for the engine's benches: top-level stdlib modules.

    python bench/corpus_stdlib.py /tmp/corpus-1m [--tokens 1000000]

Copies this interpreter's top-level standard library modules (`sysconfig` stdlib path, `*.py` only), in
name order, skipping any module that would take the total past `--tokens` (counted with the embedded
model's tokenizer) and the machine-generated `_sysconfigdata*`. Copies, not links: ingest records the
folder it is given, and the store must not change when the interpreter does.
"""

from __future__ import annotations

import argparse
import shutil
import sysconfig
from pathlib import Path

from engine.model.files import resolve_model_path
from engine.model.weights import load_model_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    args = parser.parse_args()
    backend = load_model_tokenizer(resolve_model_path(None)).backend
    args.target.mkdir(parents=True, exist_ok=True)
    total = copied = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        if path.name.startswith("_sysconfigdata"):
            continue
        tokens = len(backend.encode(path.read_text(errors="replace"), add_special_tokens=False).ids)
        if total + tokens > args.tokens:
            continue
        total += tokens
        copied += 1
        shutil.copy(path, args.target / path.name)
    print(f"{copied} modules, {total:,} tokens in {args.target}")


if __name__ == "__main__":
    main()
