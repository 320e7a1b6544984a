"""The full-text path ranks blocks, not whole spans: inside a long span the block holding the question's
words comes first, and blocks holding none of them are not offered at all; its blocks and the heads' take
turns."""

from __future__ import annotations

import pytest

from engine.answer.retrieval import lexical_block_ranking, merge, question_words, text_reader
from engine.api import open_store
from engine.runtime import load_runtime

BLOCK = 64
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."


@pytest.fixture(scope="module")
def runtime(default_model_path):
    return load_runtime(str(default_model_path), "cpu")


def test_the_block_with_the_words_leads_its_span(tmp_path, runtime):
    # One paragraph: the fact's span is several blocks, the fact near its end.
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "haystack.txt").write_text(
        " ".join([FILLER] * 8 + ["The pass key is 40417. Remember it. 40417 is the pass key."])
        + "\n\n" + " ".join([FILLER] * 8) + "\n")
    with open_store(tmp_path / "store", runtime=runtime, write=True) as store:
        store.add([tmp_path / "corpus"])
        db = store.store.db
        (first, last), = db.execute("SELECT token_start, token_end FROM spans WHERE text LIKE '%pass key%'").fetchall()
        text_of = text_reader(runtime, store.store)
        ranking = lexical_block_ranking(db, "What is the pass key?", BLOCK, text_of)

    blocks = range(first // BLOCK, (last - 1) // BLOCK + 1)
    assert len(blocks) >= 3
    # Expected from the text itself: which of the span's blocks hold "pass" or "key".
    holding = [block for block in blocks
               if {"pass", "key"} & set(text_of(max(first, block * BLOCK), min(last, (block + 1) * BLOCK))
                                        .lower().replace(".", " ").split())]
    needle_block = max(holding, key=lambda block: text_of(block * BLOCK, min(last, (block + 1) * BLOCK)).count("pass key"))
    assert ranking[0] == needle_block
    assert set(ranking) == set(holding)
    assert needle_block != blocks[0]  # the old span-order ranking would have put blocks[0] first


def test_question_words_leave_out_stopwords_and_repeats():
    assert question_words("What is the pass key? The KEY!") == ["pass", "key"]


def test_full_text_and_the_heads_take_turns_full_text_first_each_block_once():
    lexical, heads = [7, 3, 9], [3, 5, 8, 1]
    order = [block for block, _ in merge(lexical, heads)]
    assert order == [7, 3, 5, 9, 8, 1]  # 3 is full-text's second and the heads' first: it comes once, early
    assert [score for _, score in merge(lexical, heads)] == [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6]
    assert [block for block, _ in merge([], heads)] == heads  # --no-lexical: the heads alone
