"""Which words of a question are names or numbers, and how a name no file mentions is said."""

from engine.answer.found import names, unknown_said


def test_names_are_words_written_as_names_or_numbers():
    assert names("How do I activate a venv from PowerShell?") == ["PowerShell"]
    assert names("Does kw_only work in PowerShell 7 or on the M1 since 2019?") == ["kw_only", "PowerShell", "M1", "2019"]
    assert names("What does ASGI add?") == ["ASGI"]
    assert names("What is the Wi-Fi password at the lake?") == ["Wi-Fi"]  # one word, hyphen and all


def test_a_word_merely_capitalised_is_no_name():
    assert names("Where does the spare key hang?") == []
    assert names("When did Mom call Doctor Haddad about the Lake House?") == []  # the notes may say it otherwise


def test_the_names_no_file_mentions_are_said_plainly():
    assert unknown_said([]) == ""
    assert unknown_said(["PowerShell"]) == "No file mentions \u201cPowerShell\u201d."
    assert unknown_said(["M1", "2019", "kw_only"]) == (
        "No file mentions \u201cM1\u201d, \u201c2019\u201d or \u201ckw_only\u201d.")
