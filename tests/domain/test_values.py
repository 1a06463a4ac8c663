import pytest

from messaging_domain.exceptions import InvalidText, InvalidTitle
from messaging_domain.values import TEXT_MAX_LENGTH, TITLE_MAX_LENGTH, Text, Title


def test_a_title_is_stripped():
    assert Title("  Lunch plans \n").value == "Lunch plans"


@pytest.mark.parametrize("raw", ["", "   ", "\n\t", "x" * (TITLE_MAX_LENGTH + 1), 42, None, ["a"]])
def test_a_title_refuses_empty_overlong_and_non_strings(raw):
    with pytest.raises(InvalidTitle):
        Title(raw)


def test_a_title_may_be_exactly_the_maximum_length_after_stripping():
    assert len(Title("  " + "x" * TITLE_MAX_LENGTH + "  ").value) == TITLE_MAX_LENGTH


def test_titles_that_differ_only_in_case_share_a_key():
    assert Title("Straße").key == Title("STRASSE").key
    assert Title("Lunch").key != Title("Dinner").key


def test_a_text_is_stripped():
    assert Text("  hi  ").value == "hi"


@pytest.mark.parametrize("raw", ["", " \n ", "x" * (TEXT_MAX_LENGTH + 1), 3.5, {"text": "hi"}])
def test_a_text_refuses_empty_overlong_and_non_strings(raw):
    with pytest.raises(InvalidText):
        Text(raw)


def test_a_text_may_be_exactly_the_maximum_length():
    assert len(Text("y" * TEXT_MAX_LENGTH).value) == TEXT_MAX_LENGTH
