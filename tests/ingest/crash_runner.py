"""One ingest run in its own process, for the kill tests: `python -m tests.ingest.crash_runner STORE TOKENIZER_JSON PATH`.

It commits after every few thousand tokens, so a kill can land between any two steps of a batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tokenizers import Tokenizer

from ingest.pipeline import IngestOptions, ingest
from ingest.store import Store
from ingest.tokens import sequence_tokenizer


def main(store: str, tokenizer_json: str, path: str) -> None:
    backend = Tokenizer.from_file(tokenizer_json)
    with Store.open(Path(store), write=True) as opened:
        ingest(opened, [Path(path)], lambda: sequence_tokenizer(backend, "crash-test"),
               IngestOptions(batch_tokens=3000, batch_seconds=0.05))


if __name__ == "__main__":
    main(*sys.argv[1:])
