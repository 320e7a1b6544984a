"""Evidence, "found" and unsupported names through `engine ask --json`: the sentence that holds the question's
words, quoted verbatim with its file and line; a question about nothing in the files is not found. The tiny
model reads the store: evidence is chosen by the question's words, whatever the model makes of them."""

from __future__ import annotations

import json
import re

import pytest

from engine import Answer, Grounds, Token
from engine.answer.citations import Citation, pinned_to_evidence, supporting
from engine.answer.evidence import (
    SENTENCE_BREAK,
    Choice,
    Evidence,
    asks_why,
    best_sentences,
    choose_evidence,
    completed,
    layout_titles,
    sentences,
)
from engine.answer.excerpts import Excerpt
from engine.answer.prompt import PLACEHOLDER, QUOTE_PLACEHOLDER, build_prompt, fit_excerpts, without_quote_label
from engine.answer.support import unsupported
from engine.api import open_store, read_excerpts
from engine.cli import main
from ingest import catalog
from tests.engine.tiny_gguf import tiny_model_in

pytest.importorskip("transformers")

FACT = "The spare key for the boathouse hangs behind the blue tide clock."
FILLER = ["Some thoughts about growing tomatoes, written down on a quiet evening.",
          "Nothing here matters much; the rules of chess are simply something I read about.", ""]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(command prefix, the corpus, the fact's 1-based line in notes/boat.md)."""
    folder = tmp_path_factory.mktemp("evidence")
    with tiny_model_in(folder) as model:
        corpus = folder / "notes"
        corpus.mkdir()
        lines = ["# Boat notes", ""] + FILLER * 8 + [FACT, ""] + FILLER * 8
        (corpus / "boat.md").write_text("\n".join(lines) + "\n")
        (corpus / "garden.md").write_text("\n".join(FILLER * 10) + "\n")
        tail = ["--store", str(folder / "store"), "--model", str(model), "--device", "cpu"]
        assert main(["ingest", str(corpus), *tail]) == 0
        yield tail, corpus, lines.index(FACT) + 1


def ask(capsys, tail: list[str], question: str, *options: str) -> dict:
    capsys.readouterr()
    assert main(["ask", question, "--json", *options, *tail]) == 0
    return json.loads(capsys.readouterr().out)


def test_evidence_is_the_sentence_with_its_file_and_line(store, capsys):
    tail, corpus, line = store
    result = ask(capsys, tail, "Where does the spare key for the boathouse hang?")
    assert result["found"] is True, result
    [evidence] = result["evidence"]
    assert evidence["path"].endswith("boat.md")
    assert evidence["start_line"] == evidence["end_line"] == line
    assert evidence["text"] == (corpus / "boat.md").read_text().splitlines()[line - 1]


def test_a_question_about_nothing_in_the_files_is_not_found(store, capsys):
    tail, _, _ = store
    result = ask(capsys, tail, "Which volcano erupted during the 1783 expedition of Captain Ferreira?")
    assert result["found"] is False


def test_names_and_numbers_no_passage_holds_are_unsupported():
    passages = ["The lock was changed by Marta Kowalska in 2019.", "Room 12 is on the second floor."]
    answer = "Marta Kowalska changed the lock in 2021, with Jonas, in room 12."
    assert unsupported(answer, passages) == ["2021", "Jonas"]
    budget = ["The Q3 budget for project Osprey is 48,200 euros; error E17 means the fan is blocked."]
    assert unsupported("Q3 is 48,200 euros and E17 a blocked fan, Q4 unknown.", budget) == ["Q4"]
    link = ["under a thread called <https://groups.example/d/msg/comp.lang.python/B_VxeTBClM0/L8W9KlsiriUJ>"]
    assert unsupported("Posted under <https://groups.example/d/msg/comp.lang.python/B_VxeTBClM0/L8W9KlsiriUJ>, "
                       "B_VxeTBClM1", link) == ["VxeTBClM1", "B_VxeTBClM1"]  # the link quoted whole is held


def test_each_list_item_is_a_sentence_of_its_own():
    text = ("## People\n\n- Project lead: Marta Kowalczyk\n- Hardware: Dev Patel (tablets)\n"
            "  * Vendor contact: Joost de Vries\nat Lumenscan, since May. Then more.")
    pieces = [piece.strip() for piece in SENTENCE_BREAK.split(text)]
    assert pieces == ["## People", "- Project lead: Marta Kowalczyk", "- Hardware: Dev Patel (tablets)",
                      "* Vendor contact: Joost de Vries\nat Lumenscan, since May.", "Then more."]


def test_the_stop_of_a_title_an_abbreviation_or_an_initial_ends_no_sentence():
    text = ("- Dentist appointment on 12 June at 09:40 (Dr. Haddad). Bring the card, e.g. the blue one.\n"
            "J. Smith and Mrs. Lee agreed. Done.")
    assert [piece.strip() for piece in SENTENCE_BREAK.split(text)] == [
        "- Dentist appointment on 12 June at 09:40 (Dr. Haddad).", "Bring the card, e.g. the blue one.",
        "J. Smith and Mrs. Lee agreed.", "Done."]


def test_a_heading_is_no_evidence_however_many_words_it_has():
    text = ("Why not just use namedtuple?\n----------------------------\n\n"
            "Any namedtuple can be compared to any other with the same fields.\n\n"
            "## Where the spare key hangs\n\nBehind the blue tide clock, since May.")
    span = catalog.Citation(span_id=1, paths=("notes.rst",), page=None, line_start=1, line_end=9, heading=None,
                            token_start=0, token_end=0, date=None)
    excerpt = Excerpt(span, [], [], 1, 0)
    assert [(e.start_line, e.text) for e in (s.evidence for s in sentences(excerpt, text))] == [
        (4, "Any namedtuple can be compared to any other with the same fields."),
        (8, "Behind the blue tide clock, since May.")]


def test_a_title_whose_paragraph_follows_its_underline_at_once_is_no_evidence():
    text = ("Allowing the readme to imply plain text\n---------------------------------------\n"
            "The authors considered it, but decided to be explicit.\n")
    span = catalog.Citation(span_id=1, paths=("notes.rst",), page=None, line_start=1, line_end=3, heading=None,
                            token_start=0, token_end=0, date=None)
    assert [(e.start_line, e.text) for e in (s.evidence for s in sentences(Excerpt(span, [], [], 1, 0), text))] == [
        (3, "The authors considered it, but decided to be explicit.")]


def test_the_title_of_the_evidence_section_counts_towards_covering_the_question():
    text = "The lock was removed because the door kept jamming. Tomatoes grow by the wall."

    def choice(heading: str | None) -> Choice:
        span = catalog.Citation(1, ("notes.md",), None, 1, 1, heading, 0, 0, None)
        return choose_evidence([Excerpt(span, [], [], 1, 0)], [text], "Why was the lock of the shed removed?")

    assert choice("Garden > The shed").support == pytest.approx(1.0)
    assert choice("Garden > The shed").evidence[0].text == "The lock was removed because the door kept jamming."
    assert choice(None).support < 0.5  # "shed", which no sentence holds, weighs most
    assert choice("The shed > Garden").support == choice(None).support  # only the section it lies in counts


# A PDF page as pypdf gives it: no markup, titles only by their layout.
MANUAL = ["Nordvarm HX-9 Heat Pump", "Quick Reference for Owners", "1. Everyday use",
          "Keep the flow temperature at 35 degrees for the floor heating. Raising it to 45 degrees costs a",
          "quarter more electricity. Clean the water filter",
          "every 90 days.", "2. Error codes", "E04: low water pressure. Top up the system.",
          "E17: the outdoor fan is blocked. Clear the leaves.", "Author: Jo Smith", "Status: Final",
          "1. Buy milk", "2. Call the installer", "See you", "Then again."]


def test_lines_that_stand_as_titles_by_their_layout_alone():
    text = "\n".join(MANUAL)
    starts = {text.count("\n", 0, at) for at in layout_titles(text)}
    # wrapped prose, a field and a value, list items and a short line after an unfinished sentence are no titles
    assert [MANUAL[number] for number in sorted(starts)] == [
        "Nordvarm HX-9 Heat Pump", "Quick Reference for Owners", "1. Everyday use", "2. Error codes"]
    assert layout_titles("the 45 degrees\nQuick Reference\nText.", before="It costs about") == set()
    assert layout_titles("Quick Reference\nText.", before="-2-") == {0}  # a page number ends nothing


def test_a_title_by_layout_is_no_evidence_and_titles_the_sentences_under_it():
    span = catalog.Citation(1, ("manual.pdf",), 1, 1, len(MANUAL), None, 0, 0, None)
    found = sentences(Excerpt(span, [], [], 1, 0), "\n".join(MANUAL[:9]))
    assert [(s.evidence.start_line, s.evidence.text, s.title) for s in found] == [
        (4, "Keep the flow temperature at 35 degrees for the floor heating.", "1. Everyday use"),
        (4, "Raising it to 45 degrees costs a\nquarter more electricity.", "1. Everyday use"),
        (5, "Clean the water filter\nevery 90 days.", "1. Everyday use"),
        (8, "E04: low water pressure.", "2. Error codes"), (8, "Top up the system.", "2. Error codes"),
        (9, "E17: the outdoor fan is blocked.", "2. Error codes"), (9, "Clear the leaves.", "2. Error codes")]
    # the same lines in a Markdown file are left to its markup: one paragraph
    markdown = catalog.Citation(1, ("manual.md",), None, 1, len(MANUAL), None, 0, 0, None)
    assert sentences(Excerpt(markdown, [], [], 1, 0), "\n".join(MANUAL[:4]))[0].evidence.start_line == 1


def test_an_excerpt_starting_under_a_title_is_titled_by_it_from_the_document():
    def lines(name: str, page, first: int, last: int) -> tuple[int, list[str]]:
        return first, MANUAL[first - 1:last]

    span = catalog.Citation(1, ("manual.pdf",), 1, 1, len(MANUAL), None, 0, 0, None)
    [sentence, _] = sentences(Excerpt(span, [], [], 9, 0), MANUAL[8], lines)
    assert (sentence.evidence.start_line, sentence.title) == (9, "2. Error codes")
    assert sentences(Excerpt(span, [], [], 9, 0), MANUAL[8])[0].title == ""  # without the document, unknown
    question = "What does error code E17 mean?"
    choice = choose_evidence([Excerpt(span, [], [], 9, 0)], [MANUAL[8]], question, lines)
    assert choice.evidence[0].text == "E17: the outdoor fan is blocked. Clear the leaves."
    untitled = choose_evidence([Excerpt(span, [], [], 9, 0)], [MANUAL[8]], question)
    assert choice.support > 0.5 > untitled.support  # "error" and "code" come from the title; "mean" from nowhere


def test_the_name_of_the_evidence_file_counts_towards_covering_the_question():
    text = "The service visit is due every two years."

    def choice(name: str) -> Choice:
        span = catalog.Citation(1, (name,), None, 1, 1, None, 0, 0, None)
        return choose_evidence([Excerpt(span, [], [], 1, 0)], [text], "When is the heat pump service visit due?")

    assert choice("manuals/heat-pump_notes.txt").support == pytest.approx(1.0)
    assert choice("manuals/notes.txt").support < 0.5  # "heat" and "pump", which no sentence holds, weigh most


def test_the_evidence_runs_on_to_the_sentence_naming_what_the_question_asks():
    document = ["Saw Dr. Okafor about the left knee. It is a mild strain.", "She prescribed physiotherapy for six",
                "weeks. We went for tea after. The tea was cold.", "", "Next day."]

    def lines(name: str, page, first: int, last: int) -> tuple[int, list[str]]:
        return first, document[first - 1:last]

    first = Evidence("knee.md", None, 1, 1, "Saw Dr. Okafor about the left knee.")
    assert completed(first, lines).text == "Saw Dr. Okafor about the left knee. It is a mild strain."
    assert completed(first, lines, frozenset({"prescrib", "okafor"})).text == (
        "Saw Dr. Okafor about the left knee. It is a mild strain.\nShe prescribed physiotherapy for six\nweeks.")
    assert completed(first, lines, frozenset({"cold"})).text == completed(first, lines).text  # two sentences at most
    assert completed(first, lines, frozenset({"next"})).text == completed(first, lines).text  # not past the paragraph


def test_the_quotes_label_at_the_start_of_a_line_of_the_answer_is_not_shown():
    def shown(pieces: list[str]) -> str:
        return "".join(without_quote_label(iter(pieces)))

    assert shown(["The", " most", " relevant", " sentence", " is", ":", "\n\n", '"- Dentist', ' on 12 June."']) == (
        '"- Dentist on 12 June."')
    assert shown(["The most relevant sentence: ", '"Pixel."']) == '"Pixel."'
    assert shown(["The", " most", " important", " step", " is", " rest."]) == "The most important step is rest."
    assert shown(["The", " most"]) == "The most"
    # repeated at the start of a later line, after a first try; inside a line it is the answer's own words
    assert shown(["It uses locks.\nThe most", " relevant sentence is", ': "A much simpler', ' alternative."']) == (
        'It uses locks.\n"A much simpler alternative."')
    assert shown(["As the most relevant sentence is: x"]) == "As the most relevant sentence is: x"
    assert shown(["One.\n", "\n", "Two, the most relevant sentence: yes."]) == (
        "One.\n\nTwo, the most relevant sentence: yes.")


DOCUMENT = ["# Shed", "", "We talked about where the spare key for the shed",
            "should go. It hangs behind the tide clock", "since March. Then we ate.", "",
            "- The ladder is in the barn.", "- The rake is broken."]


def lines_of(name: str, page, first: int, last: int) -> tuple[int, list[str]]:
    assert name == "shed.md" and page is None
    return first, DOCUMENT[first - 1:last]


def test_the_evidence_is_completed_from_its_document_with_the_sentence_after_it():
    cut = Evidence("shed.md", None, 3, 3, "We talked about where the spare key for the shed")
    whole = completed(cut, lines_of)
    assert (whole.start_line, whole.end_line) == (3, 5)
    assert whole.text == ("We talked about where the spare key for the shed\nshould go. It hangs behind the tide clock"
                          "\nsince March.")


def test_no_sentence_is_added_across_a_blank_line_or_a_list_item():
    last = Evidence("shed.md", None, 5, 5, "Then we ate.")
    assert completed(last, lines_of) == last
    item = Evidence("shed.md", None, 7, 7, "- The ladder is in the barn.")
    assert completed(item, lines_of) == item


def test_a_sentence_that_asks_is_completed_with_the_answer_after_it_even_past_its_paragraph():
    document = ["So why not keep the key in the shed?", "", "Because the shed has no lock.", "",
                "Why not?", "", "Heading", "-------", "", "Text under it."]

    def lines(name: str, page, first: int, last: int) -> tuple[int, list[str]]:
        return first, document[first - 1:last]

    whole = completed(Evidence("shed.md", None, 1, 1, document[0]), lines)
    assert (whole.start_line, whole.end_line, whole.text) == (
        1, 3, "So why not keep the key in the shed?\n\nBecause the shed has no lock.")
    assert completed(Evidence("shed.md", None, 5, 5, "Why not?"), lines).end_line == 5  # a heading is no answer


def test_a_question_asking_why_runs_the_evidence_on_to_the_reason_in_the_next_paragraph():
    document = ["The spare key was kept under the mat until May.", "", "That stopped when the dog next door",
                "dug it up twice. It hangs by the door now.", "", "The shed was painted in June."]

    def lines(name: str, page, first: int, last: int) -> tuple[int, list[str]]:
        return first, document[first - 1:last]

    first = Evidence("shed.md", None, 1, 1, document[0])
    assert completed(first, lines) == first  # a fact asked: the paragraph ends the evidence
    reason = completed(first, lines, reason=True)
    assert (reason.start_line, reason.end_line) == (1, 4)
    assert reason.text == ("The spare key was kept under the mat until May.\n\nThat stopped when the dog next door\n"
                           "dug it up twice.")  # the reason; what follows it only for the question's words
    assert completed(first, lines, frozenset({"hang"}), reason=True).text.endswith("It hangs by the door now.")
    assert "painted" not in completed(first, lines, frozenset({"paint"}), reason=True).text  # one paragraph end


def test_code_after_the_paragraph_or_a_line_announcing_it_is_no_reason():
    for code in (["    key = hashed(spare)"], ["```", "key = hashed(spare)", "```"], ["The stored form looks like this:"]):
        document = ["The spare key is stored hashed, as here.", "", *code, "", "Plain keys would leak into logs."]

        def lines(name: str, page, first: int, last: int, document=document) -> tuple[int, list[str]]:
            return first, document[first - 1:last]

        first = Evidence("keys.md", None, 1, 1, document[0])
        assert completed(first, lines, reason=True) == first


def test_the_last_of_two_questions_is_answered_past_the_paragraph_end():
    document = ["1. Why must the key be a string?  What is wrong", "   with bytes?", "",
                "   Strings print plainly in the log.", "", "2. Next question?"]

    def lines(name: str, page, first: int, last: int) -> tuple[int, list[str]]:
        return first, document[first - 1:last]

    whole = completed(Evidence("faq.md", None, 1, 1, "1. Why must the key be a string?"), lines)
    assert (whole.start_line, whole.end_line) == (1, 4)
    assert whole.text.endswith("with bytes?\n\n   Strings print plainly in the log.")


def test_a_question_asks_why_by_its_word_why():
    assert asks_why("Why was the shed moved?") and asks_why("The key moved, but why?")
    assert not asks_why("When was the shed moved?") and not asks_why("Whyte's key: where is it?")


def test_evidence_its_document_no_longer_holds_is_kept_as_it_was():
    gone = Evidence("shed.md", None, 3, 3, "A sentence the document does not hold")
    assert completed(gone, lines_of) == gone


def test_an_answer_quoting_the_whole_evidence_sentence_is_known_as_a_quotation():
    evidence = Evidence("shed.md", None, 3, 4, "The key hangs\nby the  door.")
    assert evidence.quoted_in('Your notes say: "The key hangs by the door." It has hung there for years.')
    assert not evidence.quoted_in("The key hangs")  # a part of it leaves the rest to be shown
    assert not evidence.quoted_in("The key hangs by the gate.")


def test_quotations_and_file_labels_no_passage_holds_are_unsupported():
    passages = ["The lock was changed by Marta Kowalska in 2019.\nThe new key   hangs by the door."]
    answer = ('As [notes/lock.md] says, "the new key hangs by the door" and \u201cthe old key was thrown away\u201d; '
              '[diary.md] adds "nothing"; it returns list[int].')
    assert unsupported(answer, passages, ["/home/me/notes/lock.md"]) == [
        '"the old key was thrown away"', '"nothing"', "[diary.md]"]
    assert unsupported('See [lock.md, page 2019]: "The lock was changed by Marta Kowalska in 2019."', passages,
                       ["notes/lock.md"]) == []


def test_a_question_naming_what_no_file_mentions_is_not_found_and_says_so(store, capsys):
    tail, _, _ = store
    result = ask(capsys, tail, "Where does the spare key for the boathouse of McAllister hang?")
    assert result["found"] is False and result["unknown_names"] == ["McAllister"]
    assert ask(capsys, tail, "Where does the spare key for the boathouse hang?")["unknown_names"] == []
    assert ask(capsys, tail, "Where does the spare key for the Boat-House hang?")["unknown_names"] == []  # run together
    assert main(["ask", "Where does the spare key for the boathouse of McAllister hang?", *tail]) == 0
    out = capsys.readouterr().out
    assert "Not found in your files. No file mentions \u201cMcAllister\u201d." in out
    assert f"\u201c{FACT}\u201d" in out  # the closest passage, with the sentence it marks


def test_the_command_prints_the_evidence_or_says_not_found(store, capsys):
    tail, _, line = store
    capsys.readouterr()
    assert main(["ask", "Where does the spare key for the boathouse hang?", *tail]) == 0
    out = capsys.readouterr().out
    assert "Evidence: " in out and f"boat.md:{line}" in out and FACT in out
    assert main(["ask", "Which volcano erupted during the 1783 expedition of Captain Ferreira?", *tail]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Not found in your files.")  # said at once, and no words of the model's own streamed
    assert any(line.startswith("  ") and ".md:" in line for line in out.splitlines())  # then the closest passages


def test_the_citation_holding_the_evidence_comes_first_marking_its_lines():
    other = Citation(path="a.md", paths=["a.md"], page=None, start_line=5, end_line=6, text="e\nf",
                     context="a\nb\nc\nd\ne\nf", context_lines=[1, 6], score=0.5)
    holder = Citation(path="b.md", paths=["b.md"], page=None, start_line=10, end_line=10, text="first",
                      context="first\nsecond\nthird", context_lines=[10, 12], score=0.3)
    pinned = pinned_to_evidence([other, holder], Evidence("b.md", None, 12, 12, "third"))
    assert [(c.path, c.start_line, c.end_line, c.text) for c in pinned] == [("b.md", 12, 12, "third"),
                                                                          ("a.md", 5, 6, "e\nf")]
    assert pinned_to_evidence([other], Evidence("c.md", None, 1, 1, "elsewhere")) == [other]


def test_evidence_running_on_past_its_passage_widens_the_citation_to_its_end():
    holder = Citation(path="shed.md", paths=["shed.md"], page=None, start_line=3, end_line=3, text=DOCUMENT[2],
                      context="\n".join(DOCUMENT[1:3]), context_lines=[2, 3], score=0.4)
    evidence = completed(Evidence("shed.md", None, 3, 3, DOCUMENT[2]), lines_of)
    [pinned] = pinned_to_evidence([holder], evidence, lines_of)
    assert (pinned.start_line, pinned.end_line, pinned.context_lines) == (3, 5, [2, 5])
    assert pinned.text == "\n".join(DOCUMENT[2:5])


def test_a_follow_up_finds_its_evidence_through_the_question_before(store, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # where the CLI keeps the last question
    tail, corpus, line = store
    assert main(["ask", "Is it still there?", "--follow-up", "--json", *tail]) == 2  # nothing asked before
    assert ask(capsys, tail, "Is it still there?")["found"] is False  # alone, its words point at nothing
    ask(capsys, tail, "Where does the spare key for the boathouse hang?")
    result = ask(capsys, tail, "Is it still there?", "--follow-up")
    assert result["found"] is True, result
    [evidence] = result["evidence"]
    assert evidence["path"].endswith("boat.md") and evidence["start_line"] == line


def open_tail(tail: list[str]):
    """The store the command-line options `tail` name, opened through the API."""
    options = dict(zip(tail[::2], tail[1::2]))
    return open_store(options["--store"], model=options["--model"], device=options["--device"])


def test_the_prompt_quotes_the_evidence_sentence_under_the_question_and_keeps_its_excerpt(store):
    tail, _, _ = store
    question = "Where does the spare key for the boathouse hang?"
    with open_tail(tail) as opened:
        excerpts = opened.passages(question)
        decode = opened.runtime.tokenizer.decode
        [holding] = [e for e in excerpts if FACT in decode(e.ids)]
        plain = build_prompt(opened.runtime, excerpts, question)
        ranges = [(e.prompt_start, e.prompt_end) for e in excerpts]
        quoted = build_prompt(opened.runtime, excerpts, question, (holding, FACT))
        assert [(e.prompt_start, e.prompt_end) for e in excerpts] == ranges  # the excerpts sit where they did
        assert decode(quoted[holding.quote_start:holding.quote_end]) == FACT
        assert all(e.quote_start == e.quote_end == 0 for e in excerpts if e is not holding)
        text = decode(quoted)
        assert text.index(f"Question: {question}") < text.rindex(FACT)
        assert decode(plain).count(FACT) == 1 and text.count(FACT) == 2
        smallest = len(build_prompt(opened.runtime, [holding], question, (holding, FACT)))
        others = [e for e in excerpts if e is not holding]
        assert others  # otherwise nothing would have to be dropped
        kept = fit_excerpts(opened.runtime, [*others, holding], question, smallest, (holding, FACT))
        assert kept == [holding]  # the last excerpt, but the quoted one: the others go
        hostile = f"{question} {PLACEHOLDER} {QUOTE_PLACEHOLDER}"  # the template's own markers, typed in
        tricked = build_prompt(opened.runtime, excerpts, hostile, (holding, FACT))
        assert decode(tricked[holding.quote_start:holding.quote_end]) == FACT
        assert decode(tricked[holding.prompt_start:holding.prompt_end]) == decode(holding.ids)


def test_the_evidence_and_the_found_decision_come_before_the_first_token(store):
    tail, _, line = store
    with open_tail(tail) as opened:
        events = list(opened.ask("Where does the spare key for the boathouse hang?", max_new_tokens=8))
        absent = list(opened.ask("Which volcano erupted during the 1783 expedition of Captain Ferreira?",
                                 max_new_tokens=8))
    grounds, answer = events[0], events[-1]
    assert isinstance(grounds, Grounds) and isinstance(answer, Answer)
    assert all(isinstance(event, Token) for event in events[1:-1])
    assert grounds.found is True and [e.start_line for e in grounds.evidence] == [line]
    assert grounds.evidence == answer.evidence and answer.found is True
    assert [type(event) for event in absent] == [Grounds, Answer]  # no answer, so no words of the model's own
    assert absent[0].found is False and absent[-1].found is False and absent[-1].text == ""


def test_a_question_not_found_cites_nothing_and_offers_the_closest_passages(store, capsys):
    tail, _, _ = store
    result = ask(capsys, tail, "Which volcano erupted during the 1783 expedition of Captain Ferreira?")
    assert result["found"] is False
    assert result["citations"] == [] and result["closest"], result
    assert result["answer"] == "" and result["grounded"] is False and result["unsupported"] == []
    assert {"path", "start_line", "end_line", "text", "context"} <= set(result["closest"][0])


def test_the_closest_passages_mark_the_sentence_nearest_the_question(store, capsys):
    tail, _, line = store
    result = ask(capsys, tail, "Where does the spare key for the boathouse of McAllister hang?")
    assert result["found"] is False  # the name no file mentions
    first = result["closest"][0]
    assert first["path"].endswith("boat.md") and first["start_line"] == first["end_line"] == line
    assert first["text"] == FACT


def test_each_excerpt_offers_its_best_matching_sentence_best_first():
    def excerpt(name: str) -> Excerpt:
        return Excerpt(catalog.Citation(1, (name,), None, 1, 2, None, 0, 0, None), [], [], 1, 0)

    texts = ["Tomatoes grow by the wall. The shed has a red door.", "Nothing at all about it here.",
             "The shed key hangs on a nail. The roof leaks in spring."]
    found = best_sentences([excerpt("a.md"), excerpt("b.md"), excerpt("c.md")], texts, "Where does the shed key hang?")
    assert [(number, evidence.text) for number, evidence in found] == [(2, "The shed key hangs on a nail."),
                                                                       (0, "The shed has a red door.")]


def test_a_found_answer_cites_only_passages_that_hold_the_evidence_or_its_words(store, capsys):
    """Whatever the tiny model writes, each citation kept marks the evidence sentence or lines holding at least
    half of the words the answer adds to the question."""
    tail, corpus, line = store
    question = "Where does the spare key for the boathouse hang?"
    result = ask(capsys, tail, question)
    added = {word for word in re.findall(r"[a-z0-9]+", result["answer"].lower())} - set(re.findall(r"[a-z]+",
                                                                                                    question.lower()))
    for citation in result["citations"]:
        marked = (citation["start_line"], citation["end_line"]) == (line, line) and citation["path"].endswith("boat.md")
        assert marked or any(word in citation["text"].lower() for word in added), citation


def passage(path: str, lines: list[str], first: int, marked: tuple[int, int]) -> Citation:
    low, high = marked
    return Citation(path=path, paths=[path], page=None, start_line=low, end_line=high,
                    text="\n".join(lines[low - first:high - first + 1]), context="\n".join(lines),
                    context_lines=[first, first + len(lines) - 1], score=0.3)


BOAT = ["# Boat notes", "The boathouse is by the lake.", "The spare key hangs behind the blue tide clock.",
        "Tomatoes grow in the garden."]
KEY = Evidence("boat.md", None, 12, 12, BOAT[2])


def test_a_passage_without_the_evidence_or_the_answers_words_is_not_cited():
    holder = passage("boat.md", BOAT, 10, (12, 12))
    garden = passage("garden.md", ["Tomatoes need sun.", "Chess has rules.", "The lake froze in winter."], 1, (1, 2))
    kept = supporting([holder, garden], KEY, "Behind the blue tide clock.", "Where does the spare key hang?")
    assert kept == [holder]


def test_a_passage_holding_the_answers_words_elsewhere_is_cited_at_those_lines():
    """The attention marked line 10; the words the answer adds ("lake", "boathouse") are on line 11."""
    lake = passage("boat.md", BOAT, 10, (10, 10))
    [kept] = supporting([lake], None, "The boathouse is by the lake.", "Where is it?")
    assert (kept.start_line, kept.end_line, kept.text) == (11, 11, BOAT[1])


def test_the_questions_own_words_are_no_sign_that_a_passage_was_drawn_on():
    """Retrieval found every passage by the question's words; an answer that only repeats them cites nothing
    but the evidence."""
    other = passage("boat.md", BOAT, 10, (11, 11))
    assert supporting([other], KEY, "The boathouse key.", "Where is the boathouse key?") == []
    holder = passage("boat.md", BOAT, 10, (12, 12))
    assert supporting([holder, other], KEY, "The boathouse key.", "Where is the boathouse key?") == [holder]


def test_the_prompt_reads_the_best_blocks_excerpts_and_the_evidences_wherever_it_lies():
    def excerpt(start: int, tokens: int) -> Excerpt:  # an excerpt of `tokens` tokens from sequence position `start`
        span = catalog.Citation(start, ("a.md",), None, 1, 1, None, start, start + tokens, None)
        return Excerpt(span, [0] * tokens, [0] * tokens, 1, start)

    # blocks of 64 tokens; the excerpts cover blocks 0, 2-3, 5 and 9, in corpus order
    excerpts = [excerpt(0, 64), excerpt(128, 100), excerpt(320, 64), excerpt(576, 64)]
    best = [3, 0]  # the reader's best blocks: the second excerpt (by its second block) and the first
    evidence = Evidence("a.md", None, 1, 1, "a sentence")
    kept, choice = read_excerpts(excerpts, Choice([evidence], 3, 7.0, 1.0), best, 64)
    assert kept == [excerpts[0], excerpts[1], excerpts[3]]  # block 5's excerpt is neither best nor the evidence's
    assert choice.excerpt == 2 and choice.evidence == [evidence] and choice.score == 7.0
    kept, choice = read_excerpts(excerpts, Choice([], None, 0.0, 0.0), best, 64)
    assert kept == excerpts[:2] and choice.excerpt is None
