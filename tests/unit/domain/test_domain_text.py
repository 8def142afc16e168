"""Characters (issue 12): no control or format characters (bidirectional controls, invisible
characters) in names and titles; multi-line texts keep their line breaks but not the controls.
Repository names are one repository whatever their case."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prgate.domain import (
    TextKind,
    bad_character,
    canonical_repository,
    fingerprint,
    validate_fields,
)
from tests.unit.domain.domain_builders import (
    accept,
    approve_cmd,
    check_cmd,
    close_cmd,
    merge_cmd,
    open_cmd,
    revert_cmd,
    title_cmd,
)

# The bidirectional controls of the "Trojan Source" paper (CVE-2021-42574), and marks.
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]
MARKS = ["\u200e", "\u200f", "\u061c"]
# Invisible format characters: zero-width space, word joiner, BOM, soft hyphen, a tag letter.
INVISIBLE = ["\u200b", "\u2060", "\ufeff", "\u00ad", "\U000e0041"]
FORMAT = BIDI + MARKS + INVISIBLE

ONE_LINE_FIELDS = [
    ("title", lambda v: open_cmd(title=v)),
    ("title", title_cmd),
    ("author", lambda v: open_cmd(author=v)),
    ("source_branch", lambda v: open_cmd(source_branch=v)),
    ("target_branch", lambda v: open_cmd(target_branch=v)),
    ("changed_by", lambda v: title_cmd("New", changed_by=v)),
    ("reviewer", approve_cmd),
    ("check_name", lambda v: check_cmd(v, 1)),
    ("merged_by_user", lambda v: merge_cmd(user=v)),
    ("actor", lambda v: close_cmd(actor=v)),
]
MULTI_LINE_FIELDS = [
    ("description", lambda v: open_cmd(description=v)),
    ("commit_message_override", lambda v: merge_cmd(override=v)),
    ("reason", lambda v: revert_cmd(reason=v)),
]


def field_reasons(command):
    return [(v.field, v.reason) for v in validate_fields(command)]


@pytest.mark.parametrize(("field", "build"), ONE_LINE_FIELDS + MULTI_LINE_FIELDS)
@pytest.mark.parametrize("character", FORMAT)
def test_format_characters_are_refused_everywhere(field, build, character):
    assert field_reasons(build(f"ab{character}cd")) == [
        (f"command.{field}", f"{field.upper()}_FORMAT_CHARACTERS")
    ]


def test_the_description_names_the_character_and_where_it_is():
    (violation,) = validate_fields(open_cmd(title="Fix \u202eexe.txt"))
    assert violation.reason == "TITLE_FORMAT_CHARACTERS"
    assert violation.description == (
        "title must not contain format characters (bidirectional controls or invisible "
        "characters): U+202E RIGHT-TO-LEFT OVERRIDE at character 5"
    )


def test_the_first_refused_character_is_reported():
    (violation,) = validate_fields(open_cmd(description="a\u202eb\x00c"))
    assert violation.reason == "DESCRIPTION_FORMAT_CHARACTERS"
    (violation,) = validate_fields(open_cmd(description="a\x00b\u202ec"))
    assert violation.reason == "DESCRIPTION_CONTROL_CHARACTERS"
    assert violation.description.endswith("U+0000 at character 2")


# An emoji sequence, and Persian "mi-khaham" (I want), which needs the zero-width non-joiner.
@pytest.mark.parametrize(
    "title", ["👩\u200d💻 dev tooling", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "ok 🐛"]
)
def test_joiners_are_allowed_in_titles_and_texts_but_not_in_names(title):
    assert field_reasons(open_cmd(title=title, description=title)) == []
    if "\u200c" in title or "\u200d" in title:
        assert field_reasons(approve_cmd(title)) == [
            ("command.reviewer", "REVIEWER_FORMAT_CHARACTERS")
        ]


@pytest.mark.parametrize(("field", "build"), MULTI_LINE_FIELDS)
def test_multi_line_texts_keep_tabs_and_line_breaks(field, build):
    assert field_reasons(build("one\r\ntwo\n\tthree\u2028four\u2029five")) == []
    assert field_reasons(build("bell\x07")) == [
        (f"command.{field}", f"{field.upper()}_CONTROL_CHARACTERS")
    ]


@pytest.mark.parametrize("kind", list(TextKind))
def test_ascii_and_non_ascii_texts_follow_the_same_rules(kind):
    # ASCII takes a fast path; the same control characters must be found either way.
    for control in ["\x00", "\x1b", "\x7f", "\n"]:
        ascii_text = bad_character(f"a{control}", kind)
        wide_text = bad_character(f"é{control}", kind)
        assert (ascii_text is None) == (wide_text is None), (kind, control)


def independent_verdict(value: str, kind: TextKind) -> bool:
    """Allowed, by the categories themselves (the oracle of the property test below)."""
    for character in value:
        category = unicodedata.category(character)
        if kind is TextKind.MULTI_LINE and character in "\t\n\r\u2028\u2029":
            continue
        if category in ("Cc", "Cs", "Zl", "Zp"):
            return False
        if category == "Cf" and not (kind is not TextKind.NAME and character in "\u200c\u200d"):
            return False
    return True


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    value=st.text(
        st.one_of(
            st.characters(),
            st.sampled_from([*FORMAT, "\u200c", "\u200d", "\n", "\t", "\u2028", "\x85"]),
        ),
        max_size=20,
    ),
    kind=st.sampled_from(list(TextKind)),
)
def test_the_character_rules_agree_with_the_unicode_categories(value, kind):
    assert (bad_character(value, kind) is None) == independent_verdict(value, kind)


# --- repositories ---------------------------------------------------------------------------


def test_a_repository_is_stored_in_lower_case():
    command = open_cmd(repository="ACME/Widgets")
    state, events = accept(None, command)
    assert events[0].pull_request_opened.repository == "acme/widgets"
    assert state is not None and state.repository == "acme/widgets"
    # The command itself is what the caller sent: a retry has the same fingerprint.
    assert fingerprint(command) == fingerprint(open_cmd(repository="ACME/Widgets"))


@pytest.mark.parametrize("name", ["ACME/Widgets", "acme/widgets", "Acme/WIDGETS"])
def test_one_repository_whatever_its_case(name):
    assert canonical_repository(name) == "acme/widgets"
