"""Which words of a question are names or numbers, and how a name no file mentions is said."""

from engine.answer.found import names, unknown_said


def test_names_are_words_written_as_names_or_numbers():
    assert names("How many workers does Gunicorn start by default?") == ["Gunicorn"]
    assert names("Does kw_only work in PowerShell 7 or on the M1 since 2019?") == ["kw_only", "PowerShell", "M1", "2019"]
    assert names("What does ASGI add?") == ["ASGI"]


def test_a_capital_that_starts_a_sentence_makes_no_name():
    assert names("Where does the spare key hang?") == []
    assert names("Gunicorn workers: how many?") == []  # the first word's capital is the sentence's
    assert names("What did she say? Then Anna left.") == ["Anna"]
    assert names('He said "Nothing happened" in Oslo.') == ["Oslo"]


def test_the_names_no_file_mentions_are_said_plainly():
    assert unknown_said([]) == ""
    assert unknown_said(["Gunicorn"]) == "No file mentions \u201cGunicorn\u201d."
    assert unknown_said(["M1", "2019", "Oslo"]) == "No file mentions \u201cM1\u201d, \u201c2019\u201d or \u201cOslo\u201d."
