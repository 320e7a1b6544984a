"""The wholecorpus engine: the model, the memory of the corpus, answers with citations.

`open_store` is imported lazily so that `engine --help` and quick commands do not pay for torch.
"""


def open_store(path, **options):
    from engine.api import open_store as _open_store

    return _open_store(path, **options)
