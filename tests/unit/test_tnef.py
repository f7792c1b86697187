"""The winmail.dat reader (``pipeline.tnef``) and Outlook's compressed RTF
(``pipeline.rtf``) on streams built by ``tests/tnefwriter.py``: real names,
bytes and bodies come out; cut, corrupt and oversized streams raise
``TnefError`` and nothing else, within bounded work."""

from __future__ import annotations

import contextlib
import random
import struct
import time

import pytest

from gateway.pipeline import rtf, tnef
from tests import tnefwriter as w

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n\0\0"  # ends in NULs: kept as they are
DOCX = b"PK\x03\x04" + b"word/document.xml" * 20


def sample() -> bytes:
    return w.tnef(
        [
            w.Attachment("Prüfbericht März 2024.pdf", PDF, mime_type="application/pdf", title="PRFBER~1.PDF"),
            w.Attachment("Angebot.docx", DOCX, data_in_props=True),
            w.Attachment("logo.png", b"\x89PNG\r\n\x1a\n", content_id="<logo@outlook>", flags=4),
        ],
        body="Hallo,\r\nder Drucker druckt nicht.\r\n",
    )


def test_attachments_with_their_long_names_and_bytes() -> None:
    content = tnef.decode(sample(), max_attachments=10)
    assert [(a.name, a.mime_type, a.data) for a in content.attachments] == [
        ("Prüfbericht März 2024.pdf", "application/pdf", PDF),
        ("Angebot.docx", "", DOCX),
        ("logo.png", "", b"\x89PNG\r\n\x1a\n"),
    ]
    assert [(a.content_id, a.inline) for a in content.attachments] == [
        (None, False), (None, False), ("logo@outlook", True)
    ]
    assert content.text == "Hallo,\r\nder Drucker druckt nicht.\r\n"
    assert content.skipped == 0


def test_name_falls_back_to_the_title_in_the_oem_code_page() -> None:
    stream = w.SIGNATURE + b"\1\0" + w.attribute(1, w.ATT_OEM_CODEPAGE, struct.pack("<II", 1250, 0))
    stream += w.attribute(2, w.ATT_ATTACH_REND_DATA, b"\0" * 14)
    stream += w.attribute(2, w.ATT_ATTACH_TITLE, "Účet.txt".encode("cp1250") + b"\0")
    stream += w.attribute(2, w.ATT_ATTACH_DATA, b"data")
    (att,) = tnef.decode(stream, 10).attachments
    assert (att.name, att.data) == ("Účet.txt", b"data")


def test_embedded_messages_are_not_files() -> None:
    inner = w.tnef(body="inner")
    forwarded = w.Attachment("Weitergeleitet", b"", method=5, embedded=inner)
    stream = w.tnef([forwarded, w.Attachment("a.txt", b"a")])
    content = tnef.decode(stream, 10)
    assert [a.name for a in content.attachments] == ["a.txt"]
    assert content.skipped == 1


def test_html_body_in_its_internet_code_page() -> None:
    html = "<p>Grüße aus Graz</p>".encode("cp1252")
    content = tnef.decode(w.tnef(html=html, cpid=1252), 10)
    assert (content.text, content.html) == ("", "<p>Grüße aus Graz</p>")
    utf8 = tnef.decode(w.tnef(html="<p>Grüße</p>".encode(), cpid=65001), 10)
    assert utf8.html == "<p>Grüße</p>"


def test_legacy_and_8bit_bodies_in_the_oem_code_page() -> None:
    assert tnef.decode(w.tnef(legacy_body="Grüße".encode("cp1252") + b"\0"), 10).text == "Grüße"
    string8 = w.tnef(body_string8="Dobrý den".encode("cp1250"), codepage=1250)
    assert tnef.decode(string8, 10).text == "Dobrý den"


def test_named_and_multi_valued_properties_are_read_past() -> None:
    extra = [
        w.prop(w.PT_UNICODE, 0x8005, "Stichwort", name="Keywords"),
        w.prop(w.PT_LONG, 0x8006, 7, name=0x8501),
        w.prop(w.PT_SHORT | w.MV, 0x0F01, [1, 2, 3]),
        w.prop(w.PT_UNICODE | w.MV, 0x0F02, ["a", "bb", "ccc"]),
        w.prop(w.PT_BOOLEAN, 0x0F03, 1),
        w.prop(w.PT_SYSTIME, 0x0039, 133_000_000_000_000_000),
    ]
    content = tnef.decode(w.tnef(body="after them", extra_props=extra), 10)
    assert content.text == "after them"


def test_an_unknown_property_type_ends_its_list_only() -> None:
    message = w.props(w.prop(w.PT_UNICODE, w.PR_BODY, "before"), struct.pack("<HH", 0x0999, 0x0F00) + b"????")
    stream = w.SIGNATURE + b"\1\0" + w.attribute(1, w.ATT_MSG_PROPS, message)
    stream += w.attachment(w.Attachment("a.txt", b"a"))
    content = tnef.decode(stream, 10)
    assert content.text == "before"
    assert [a.name for a in content.attachments] == ["a.txt"]


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"", "no TNEF signature"),
        (b"PK\x03\x04 not tnef", "no TNEF signature"),
        (w.SIGNATURE + b"\1\0" + struct.pack("<BII", 1, 0x00069003, 1 << 31) + b"xx", "cut short"),
        (w.SIGNATURE + b"\1\0" + w.attribute(7, 0x00069003, b"x"), "level"),
        (w.SIGNATURE + b"\1\0" + w.attribute(2, w.ATT_ATTACH_DATA, b"x"), "outside an attachment"),
    ],
    ids=["empty", "not-tnef", "huge-length", "bad-level", "orphan-attachment-attribute"],
)
def test_malformed_streams_raise_tnef_error(stream: bytes, reason: str) -> None:
    with pytest.raises(tnef.TnefError, match=reason):
        tnef.decode(stream, 10)


def test_every_cut_of_a_stream_raises_tnef_error_or_decodes() -> None:
    stream = sample()
    decoded = 0
    for end in range(len(stream)):
        with contextlib.suppress(tnef.TnefError):
            tnef.decode(stream[:end], 10)
            decoded += 1  # a cut between two attributes
    assert 0 < decoded < 20


def test_random_corruption_raises_only_tnef_error() -> None:
    rng = random.Random(16)
    stream = bytearray(sample())
    for _ in range(2000):
        broken = bytearray(stream)
        for _ in range(rng.randint(1, 8)):
            broken[rng.randrange(6, len(broken))] = rng.randrange(256)
        with contextlib.suppress(tnef.TnefError):
            tnef.decode(bytes(broken), 10)


def test_too_many_attachments() -> None:
    stream = w.tnef([w.Attachment(f"{i}.txt", b"x") for i in range(5)])
    assert len(tnef.decode(stream, 5).attachments) == 5
    with pytest.raises(tnef.TnefError, match="too many attachments"):
        tnef.decode(stream, 4)


def test_work_is_bounded_for_a_stream_of_tiny_attributes() -> None:
    tiny = w.attribute(1, 0x00078008, b"")  # 11 bytes each
    stream = w.SIGNATURE + b"\1\0" + tiny * 200_000
    start = time.perf_counter()
    with pytest.raises(tnef.TnefError, match="too complex"):
        tnef.decode(stream, 10)
    assert time.perf_counter() - start < 2


def test_property_counts_are_not_trusted() -> None:
    huge_count = struct.pack("<I", 0xFFFFFFFF) + w.prop(w.PT_UNICODE, w.PR_BODY, "real")
    stream = w.SIGNATURE + b"\1\0" + w.attribute(1, w.ATT_MSG_PROPS, huge_count)
    assert tnef.decode(stream, 10).text == "real"
    many_values = struct.pack("<I", 1) + struct.pack("<HHI", w.PT_BINARY | w.MV, 0x0F00, 0xFFFFFFFF)
    stream = w.SIGNATURE + b"\1\0" + w.attribute(1, w.ATT_MSG_PROPS, many_values)
    assert tnef.decode(stream, 10).text == ""


def test_looks_like_tnef() -> None:
    stream = sample()
    assert tnef.looks_like_tnef("application/ms-tnef", None, stream)
    assert tnef.looks_like_tnef("application/vnd.ms-tnef", "x.dat", stream)
    assert tnef.looks_like_tnef("application/octet-stream", "WINMAIL.DAT", stream)
    assert not tnef.looks_like_tnef("application/octet-stream", "data.dat", stream)
    assert not tnef.looks_like_tnef("application/ms-tnef", "winmail.dat", b"not tnef at all")


# -- compressed RTF -------------------------------------------------------------
def test_decompress_the_specification_example() -> None:
    # MS-OXRTFCP 3.1.1: a stream that refers back into the initial dictionary and into itself
    data = b"\x1a\x00\x00\x00\x1c\x00\x00\x00LZFu\xe2\xd4KQA\x00\x04 WXYZ\rn}\x01\x0e\xb0"
    assert rtf.decompress(data, 1000) == rb"{\rtf1 WXYZWXYZWXYZWXYZWXYZ}"


@pytest.mark.parametrize("uncompressed", [False, True], ids=["LZFu", "MELA"])
def test_decompress_round_trip(uncompressed: bool) -> None:
    document = rb"{\rtf1\ansi Gr\'fc\'dfe aus Graz\par}" * 30
    assert rtf.decompress(w.compress_rtf(document, uncompressed), 10_000) == document


def test_decompress_is_capped_and_survives_cuts() -> None:
    document = b"{\\rtf1 " + b"x" * 5000 + b"}"
    packed = w.compress_rtf(document)
    assert rtf.decompress(packed, 100) == document[:100]
    for end in range(16, len(packed), 97):
        assert document.startswith(rtf.decompress(packed[:end], 10_000))
    with pytest.raises(rtf.RtfError):
        rtf.decompress(packed[:10], 100)
    with pytest.raises(rtf.RtfError, match="unknown"):
        rtf.decompress(struct.pack("<IIII", 12, 0, 0x12345678, 0), 100)


def test_rtf_to_text() -> None:
    document = (
        rb"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0\fswiss Arial;}}{\colortbl;\red0\green0\blue0;}"
        rb"{\*\generator Msftedit 5.41;}\viewkind4\uc1\pard\f0\fs20 Hallo Frau M\'fcller,\par"
        rb"\par der Export bricht ab\tab (Fehler 413)\line siehe {\b Anhang}.\par\par\par\par"
        rb"{\*\htmltag84 <p>}Preis: 5 \u8364?, {\pict\wmetafile8 0123abcd}Gr\u252\'fc\'dfe\par}"
    )
    assert rtf.to_text(document, 10_000) == (
        "Hallo Frau Müller,\n\nder Export bricht ab\t(Fehler 413)\nsiehe Anhang.\n\nPreis: 5 €, Grüße"
    )
    assert rtf.to_text(document, 5) == "Hallo"


def test_rtf_to_text_never_raises() -> None:
    rng = random.Random(7)
    alphabet = b"{}\\'*uc0123456789abcdefparbin -\r\n \xe4"
    for _ in range(500):
        junk = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        assert isinstance(rtf.to_text(junk, 1000), str)
