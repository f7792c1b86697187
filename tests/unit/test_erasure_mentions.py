"""How an erasure finds a person in other people's text (#16,
``store/erasure.Mentions``): their whole address in any case, never a part
of another address; their full name as whole words; a JSON value that is
exactly their name; in raw mail, the address or an 8-bit name."""

from __future__ import annotations

from gateway.store.erasure import Mentions
from gateway.store.personal import Person, address_pattern

ANNA = Person(id=7, email="anna@bauwerk-ag.de", name="Anna  Müller", role="customer", state="active",
              organization_id=None)
PLACEHOLDER = "deleted-user-7@invalid"


def test_the_whole_address_in_any_case_and_nothing_else() -> None:
    m = Mentions(ANNA, PLACEHOLDER)
    assert m.text("Bitte an ANNA@Bauwerk-AG.de, cc <anna@bauwerk-ag.de>.") == (
        f"Bitte an {PLACEHOLDER}, cc <{PLACEHOLDER}>.")
    for other in ("hanna@bauwerk-ag.de", "anna@bauwerk-ag.de.example", "maria.anna@bauwerk-ag.de",
                  "anna@bauwerk-ag.dev"):
        assert m.text(f"an {other}") == f"an {other}", other
        assert not address_pattern(ANNA.email).search(other)
    assert m.text("<1234.anna@bauwerk-ag.de>") == "<1234.anna@bauwerk-ag.de>"  # part of another local part
    assert m.text("<x@y>anna@bauwerk-ag.de") == f"<x@y>{PLACEHOLDER}"


def test_the_full_name_as_whole_words() -> None:
    m = Mentions(ANNA, PLACEHOLDER)
    assert m.text("Wie bei anna MÜLLER und Anna\nMüller.") == "Wie bei deleted user und deleted user."
    assert m.text("Hannah Müllerova, Anna") == "Hannah Müllerova, Anna"  # a first name alone stays
    assert m.needles(json_column=False) == ["anna@bauwerk-ag.de", "Anna Müller"]
    assert m.needles(json_column=True) == ["anna@bauwerk-ag.de", "Anna Müller", "Anna M\\u00fcller"]
    alone = Mentions(Person(8, "kai@x.de", "Kai", "customer", "active", None), "deleted-user-8@invalid")
    assert alone.text("Kai sagt hallo") == "Kai sagt hallo"
    assert alone.needles(json_column=False) == ["kai@x.de"]
    assert alone.value({"by": "Kai", "list": ["kai@x.de", 3]}) == {
        "by": "deleted user", "list": ["deleted-user-8@invalid", 3]}


def test_raw_mail() -> None:
    m = Mentions(ANNA, PLACEHOLDER)
    assert m.in_raw(b"Cc: Anna <ANNA@bauwerk-ag.de>\r\n\r\nhi")
    assert m.in_raw("Am Montag schrieb Anna Müller:".encode())
    assert not m.in_raw(b"From: hanna@bauwerk-ag.de\r\n\r\nhi")
    assert not m.in_raw(b"Subject: =?utf-8?q?Anna_M=C3=BCller?=\r\n\r\n")  # encoded: not found
