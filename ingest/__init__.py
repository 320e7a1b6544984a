"""The ingestion front end: files -> documents -> spans -> one append-only token sequence, in a SQLite catalog.

Modules, one job each:
- `sources`: walk the roots (stable order, .gitignore/.ignore at every level, safe symbolic links, size cap).
- `extract`: bytes -> text (plain, Markdown, reStructuredText, code, PDF pages), with a status and reason.
- `spans`: text -> citable spans at natural boundaries (langchain-text-splitters), with lines, page, heading.
- `tokens`: the model's tokenizer in document mode.
- `sequence`: tokens.u32, the append-only sequence, and `read_tokens` for readers.
- `catalog`: the schema and every SQL statement, including the hand-off to the engine
  (`unprocessed_ranges`, `record_segments`, `segment_ranges`, `citations`, `search_spans`, `sequence_length`,
  `check_tokenizer`, `status_report`).
- `store`: a store directory opened for reading or writing (lock, crash repair, format check); it owns the
  layout (`catalog.db`, `tokens.u32`, the engine's `states/` and `index/`).
- `durable`: write a file whole or not at all (temporary name, fsync, rename, fsync the directory).
- `pipeline`: one run (`ingest`), incremental and crash-safe.

Nothing here imports `engine`: the caller hands in the tokenizer (see `tokens.sequence_tokenizer`).
"""
