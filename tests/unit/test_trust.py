"""trust: agent privileges need DMARC/aligned DKIM from our authserv-id."""

from __future__ import annotations

import pytest

from gateway.pipeline.trust import authenticated_by
from tests.mailfactory import make_mail, parsed_from_bytes

OURS = "mx.xitrust.com"
AGENT = "lukas.frei@xitrust.com"


def ar(*values: str, from_addr: str = AGENT) -> bool:
    mail = make_mail(from_addr=from_addr, headers={"authentication-results": list(values)})
    return authenticated_by(mail, OURS)


def test_dmarc_pass_from_our_authserv_id() -> None:
    assert ar("mx.xitrust.com; dmarc=pass (p=reject dis=none) header.from=xitrust.com")


def test_other_authserv_id_is_ignored() -> None:
    # An attacker adds a header of their own; only ours counts.
    assert not ar("mx.evil.example; dmarc=pass header.from=xitrust.com")
    assert not ar("mx.xitrust.com.evil.example; dmarc=pass header.from=xitrust.com")


def test_empty_authserv_id_never_trusts() -> None:
    mail = make_mail(from_addr=AGENT, headers={"authentication-results": "; dmarc=pass"})
    assert not authenticated_by(mail, "")
    assert not authenticated_by(mail, "  ")


def test_authserv_id_is_case_insensitive_and_may_carry_version() -> None:
    assert ar("MX.XiTrust.COM 1; dmarc=pass header.from=xitrust.com")
    mail = make_mail(from_addr=AGENT, headers={"authentication-results": "mx.xitrust.com; dmarc=pass"})
    assert authenticated_by(mail, "MX.XITRUST.COM")


def test_accepts_our_header_among_forged_ones() -> None:
    assert ar(
        "mx.evil.example; dmarc=fail",
        "mx.xitrust.com; spf=pass smtp.mailfrom=xitrust.com; dmarc=pass header.from=xitrust.com",
    )


@pytest.mark.parametrize("result", ["fail", "none", "temperror", "permerror", "neutral", "policy"])
def test_dmarc_other_results(result: str) -> None:
    assert not ar(f"mx.xitrust.com; dmarc={result} header.from=xitrust.com")


def test_dmarc_pass_for_another_from_domain_does_not_count() -> None:
    # Two From headers: DMARC evaluated the other one.
    assert not ar("mx.xitrust.com; dmarc=pass header.from=evil.example")


@pytest.mark.parametrize(
    ("props", "from_addr", "trusted"),
    [
        ("header.d=xitrust.com", AGENT, True),
        ("header.d=XiTrust.com", "Lukas.Frei@XITRUST.COM", True),
        ("header.d=xitrust.com", "lukas@eu.mail.xitrust.com", True),  # parent domain aligns
        ("header.d=mail.xitrust.com", AGENT, False),  # child of the From domain does not
        ("header.d=evil.example", AGENT, False),
        ("header.d=notxitrust.com", AGENT, False),
        ("header.d=com", "x@com", False),  # never a bare TLD
        ("header.i=@xitrust.com", AGENT, True),
        ("header.i=lukas.frei@xitrust.com", AGENT, True),
        ("header.i=@evil.example", AGENT, False),
        ('header.d="xitrust.com" header.s="sel1"', AGENT, True),
        ("header.s=sel1", AGENT, False),  # no signing domain at all
    ],
)
def test_dkim_alignment(props: str, from_addr: str, trusted: bool) -> None:
    assert ar(f"mx.xitrust.com; dkim=pass {props}", from_addr=from_addr) is trusted


def test_dkim_fail_and_other_methods_do_not_count() -> None:
    assert not ar("mx.xitrust.com; dkim=fail header.d=xitrust.com")
    assert not ar("mx.xitrust.com; spf=pass smtp.mailfrom=lukas.frei@xitrust.com")
    assert not ar("mx.xitrust.com; arc=pass header.d=xitrust.com")
    assert not ar("mx.xitrust.com; none")


def test_one_passing_result_among_several() -> None:
    assert ar(
        "mx.xitrust.com; dkim=fail (bad signature) header.d=evil.example; "
        "dkim=pass (2048-bit key) header.d=xitrust.com header.s=sel1; dmarc=none"
    )


def test_comments_and_quotes_do_not_confuse_the_parser() -> None:
    # A comment or quoted string containing ";" or "dmarc=pass" must not
    # count as a result.
    assert not ar("mx.xitrust.com; dkim=fail (pretend; dmarc=pass) header.d=xitrust.com")
    assert not ar('mx.xitrust.com; dkim=fail reason="x; dmarc=pass"')
    assert not ar("mx.xitrust.com (nested (comment; dmarc=pass)); spf=fail")
    assert ar("mx.xitrust.com (Postfix (outer)); dkim=pass (good (nested) sig) header.d=xitrust.com")
    assert ar('mx.xitrust.com; dkim/1=pass reason="ok (really)" header.d=xitrust.com')


def test_comment_before_authserv_id() -> None:
    assert ar("(from our MTA) mx.xitrust.com; dmarc=pass")


def test_folded_real_header() -> None:
    raw = (
        b"Authentication-Results: mx.xitrust.com;\r\n"
        b"\tdkim=pass (2048-bit key; unprotected) header.d=xitrust.com header.i=@xitrust.com\r\n"
        b"\theader.a=rsa-sha256 header.s=sel2024 header.b=Ab12Cd34;\r\n"
        b"\tdmarc=pass (p=quarantine dis=none) header.from=xitrust.com\r\n"
        b"Authentication-Results: attacker.example; dmarc=pass header.from=xitrust.com\r\n"
        b"From: Lukas Frei <lukas.frei@xitrust.com>\r\n"
        b"To: servicedesk@xitrust.com\r\n"
        b"Subject: Re: [SD-12] Signatur\r\n"
        b"Message-ID: <agent-1@xitrust.com>\r\n"
        b"\r\n"
        b"#internal\r\nKunde informiert.\r\n"
    )
    mail = parsed_from_bytes(raw)
    assert authenticated_by(mail, OURS)
    assert not authenticated_by(mail, "mx.other.example")
    assert authenticated_by(mail, "attacker.example")  # only the configured id decides


def test_no_header_or_no_from_address() -> None:
    assert not authenticated_by(make_mail(from_addr=AGENT), OURS)
    assert not ar("mx.xitrust.com; dmarc=pass", from_addr="")
    assert not ar("mx.xitrust.com; dkim=pass header.d=xitrust.com", from_addr="xitrust.com")
