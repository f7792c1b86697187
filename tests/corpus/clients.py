"""How each mail client shapes a message: its Message-ID and boundary style,
X-Mailer / User-Agent, header order, reply prefix, quote style, charsets and
transfer encodings, HTML habit. A person keeps one client (and one version of
it) for all their mail, as people do."""

from __future__ import annotations

import base64
import random
import string
import uuid
from dataclasses import dataclass

# (charset, transfer encoding, weight)
Encoding = tuple[str, str, int]


@dataclass(frozen=True)
class Client:
    key: str
    mailers: tuple[tuple[str, str], ...]  # (header, value) variants; empty: the client sends none
    prefix: dict[str, str]  # reply subject prefix by language
    quote_styles: tuple[tuple[str, int], ...]  # content.QUOTE_STYLES keys with weights
    html: float  # share of mails sent as multipart/alternative with HTML
    encodings: tuple[Encoding, ...]  # for text that is not plain ASCII
    ascii_encodings: tuple[Encoding, ...]  # for plain ASCII text
    typographic: bool  # autocorrect turns "..." into „…“ / “…” and " - " into " – "
    date_in_utc: bool = False  # Exchange Online stamps Date in UTC
    omit_7bit_cte: bool = False  # Gmail sends no Content-Transfer-Encoding for 7bit
    header_order: tuple[str, ...] = ()
    mime_version: str = "1.0"


_OUTLOOK_ORDER = (
    "From", "To", "Cc", "Subject", "Thread-Topic", "Thread-Index", "Date", "Message-ID", "References",
    "In-Reply-To", "Accept-Language", "Content-Language", "X-MS-Has-Attach", "X-Mailer",
    "Content-Type", "Content-Transfer-Encoding", "MIME-Version",
)
_GMAIL_ORDER = (
    "MIME-Version", "References", "In-Reply-To", "From", "Date", "Message-ID", "Subject", "To", "Cc",
    "Content-Type", "Content-Transfer-Encoding",
)
_THUNDERBIRD_ORDER = (
    "Message-ID", "Date", "MIME-Version", "User-Agent", "Subject", "To", "Cc", "References",
    "Content-Language", "From", "In-Reply-To", "Content-Type", "Content-Transfer-Encoding",
)
_APPLE_ORDER = (
    "From", "Content-Type", "Content-Transfer-Encoding", "MIME-Version", "Subject", "Date", "References",
    "Cc", "To", "In-Reply-To", "Message-ID", "X-Mailer",
)

CLIENTS: dict[str, Client] = {
    c.key: c
    for c in (
        Client(
            key="outlook",
            mailers=(("X-Mailer", "Microsoft Outlook 16.0"), ("X-Mailer", "Microsoft Outlook 15.0"),
                     ("X-Mailer", "Microsoft Office Outlook 12.0")),
            prefix={"de": "AW: ", "en": "RE: "},
            quote_styles=(("outlook_rule", 6), ("outlook_classic", 4)),
            html=0.1,
            encodings=(("iso-8859-1", "quoted-printable", 5), ("windows-1252", "quoted-printable", 3),
                       ("utf-8", "quoted-printable", 2)),
            ascii_encodings=(("us-ascii", "7bit", 6), ("iso-8859-1", "quoted-printable", 4)),
            typographic=True,
            header_order=_OUTLOOK_ORDER,
        ),
        Client(
            key="owa",  # Outlook on the web / new Outlook, sent through Exchange Online
            mailers=(),
            prefix={"de": "AW: ", "en": "RE: "},
            quote_styles=(("outlook_rule", 1),),
            html=0.15,
            encodings=(("utf-8", "base64", 5), ("utf-8", "quoted-printable", 3),
                       ("iso-8859-1", "quoted-printable", 2)),
            ascii_encodings=(("us-ascii", "7bit", 5), ("utf-8", "base64", 5)),
            typographic=True,
            date_in_utc=True,
            header_order=_OUTLOOK_ORDER,
        ),
        Client(
            key="outlook_mac",
            mailers=(("User-Agent", "Microsoft-MacOutlook/16.83.24031120"),
                     ("User-Agent", "Microsoft-MacOutlook/16.78.23102801")),
            prefix={"de": "AW: ", "en": "Re: "},
            quote_styles=(("outlook_mac", 1),),
            html=0.15,
            encodings=(("utf-8", "quoted-printable", 1),),
            ascii_encodings=(("us-ascii", "7bit", 1),),
            typographic=True,
            header_order=_OUTLOOK_ORDER,
        ),
        Client(
            key="thunderbird",
            mailers=(("User-Agent", "Mozilla Thunderbird"),
                     ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 "
                                    "Thunderbird/115.8.1"),
                     ("User-Agent",
                      "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0")),
            prefix={"de": "AW: ", "en": "Re: "},
            quote_styles=(("thunderbird", 6), ("thunderbird_bottom", 4)),
            html=0.1,
            encodings=(("utf-8", "8bit", 8), ("windows-1252", "8bit", 1), ("iso-8859-1", "8bit", 1)),
            ascii_encodings=(("utf-8", "7bit", 1),),
            typographic=False,
            header_order=_THUNDERBIRD_ORDER,
        ),
        Client(
            key="apple",
            mailers=(("X-Mailer", "Apple Mail (2.3774.500.171.1.1)"),
                     ("X-Mailer", "Apple Mail (2.3731.700.6)")),
            prefix={"de": "AW: ", "en": "Re: "},
            quote_styles=(("apple", 1),),
            html=0.15,
            encodings=(("utf-8", "quoted-printable", 1),),
            ascii_encodings=(("us-ascii", "7bit", 1),),
            typographic=True,
            header_order=_APPLE_ORDER,
            mime_version="1.0 (Mac OS X Mail 16.0 \\(3774.500.171.1.1\\))",
        ),
        Client(
            key="iphone",
            mailers=(("X-Mailer", "iPhone Mail (21D61)"), ("X-Mailer", "iPhone Mail (20H240)")),
            prefix={"de": "AW: ", "en": "Re: "},
            quote_styles=(("iphone", 1),),
            html=0.1,
            encodings=(("utf-8", "quoted-printable", 1),),
            ascii_encodings=(("us-ascii", "7bit", 1),),
            typographic=True,
            header_order=_APPLE_ORDER,
            mime_version="1.0 (1.0)",
        ),
        Client(
            key="gmail",  # Google Workspace: always sends an HTML alternative
            mailers=(),
            prefix={"de": "Re: ", "en": "Re: "},
            quote_styles=(("gmail", 1),),
            html=1.0,
            encodings=(("utf-8", "quoted-printable", 6), ("utf-8", "base64", 4)),
            ascii_encodings=(("utf-8", "7bit", 1),),
            typographic=False,
            omit_7bit_cte=True,
            header_order=_GMAIL_ORDER,
        ),
        Client(
            key="roundcube",
            mailers=(("User-Agent", "Roundcube Webmail/1.6.6"), ("User-Agent", "Roundcube Webmail/1.5.3")),
            prefix={"de": "AW: ", "en": "Re: "},
            quote_styles=(("roundcube", 1),),
            html=0.15,
            encodings=(("utf-8", "8bit", 6), ("utf-8", "quoted-printable", 4)),
            ascii_encodings=(("us-ascii", "7bit", 1),),
            typographic=False,
        ),
        Client(
            key="notes",
            mailers=(("X-Mailer", "IBM Notes Release 9.0.1FP10 SHF383 December 12, 2019"),
                     ("X-Mailer", "HCL Notes Release 12.0.2 November 03, 2022")),
            prefix={"de": "Antwort: ", "en": "Re: "},
            quote_styles=(("notes", 1),),
            html=0.1,
            encodings=(("iso-8859-1", "quoted-printable", 5), ("utf-8", "base64", 5)),
            ascii_encodings=(("us-ascii", "7bit", 1),),
            typographic=False,
        ),
    )
}

# With Corpus(extra_styles=True), the default: clients whose reply styles the
# gateway's reply-text extraction learned from this corpus (content.EXTRA_QUOTE_STYLES).
EXTRA_CLIENTS: dict[str, Client] = {
    c.key: c
    for c in (
        Client(
            key="zimbra",
            mailers=(("X-Mailer", "Zimbra 9.0.0_GA_4583 (ZimbraWebClient - FF123 (Win)/9.0.0_GA_4583)"),),
            prefix={"de": "AW: ", "en": "Re: "},
            quote_styles=(("zimbra", 1),),
            html=0.3,
            encodings=(("utf-8", "quoted-printable", 1),),
            ascii_encodings=(("us-ascii", "7bit", 1),),
            typographic=False,
        ),
        Client(
            key="horde",
            mailers=(("User-Agent", "Horde Application Framework 5"),),
            prefix={"de": "Re: ", "en": "Re: "},
            quote_styles=(("horde", 1),),
            html=0.0,
            encodings=(("utf-8", "8bit", 1), ("utf-8", "quoted-printable", 1)),
            ascii_encodings=(("us-ascii", "7bit", 1),),
            typographic=False,
        ),
    )
}
EXTRA_COMPANY_CLIENTS: tuple[tuple[str, int], ...] = (("zimbra", 5), ("horde", 4))
# Notes users answer in the classic Notes layout too ("... schrieb am <date> <time>:").
EXTRA_QUOTE_STYLES: dict[str, tuple[tuple[str, int], ...]] = {"notes": (("notes_classic", 1),)}

# Which client a company standardises on, and what some people use instead.
COMPANY_CLIENTS: tuple[tuple[str, int], ...] = (
    ("outlook", 46), ("owa", 22), ("gmail", 9), ("thunderbird", 8), ("roundcube", 6), ("notes", 4),
    ("outlook_mac", 5),
)
PERSONAL_CLIENTS: tuple[tuple[str, int], ...] = (("apple", 6), ("iphone", 3), ("thunderbird", 2))

# Exchange Online server names look like this (AM6PR07MB5735 in eurprd07).
_EXO_PREFIXES = ("AM6PR07MB", "DB9PR02MB", "VI1PR0402MB", "PA4PR08MB", "FR3P281MB", "GV0P278MB")
_EXO_REGIONS = {
    "AM6PR07MB": "eurprd07", "DB9PR02MB": "eurprd02", "VI1PR0402MB": "eurprd04", "PA4PR08MB": "eurprd08",
    "FR3P281MB": "DEUP281", "GV0P278MB": "CHEP278",
}
_GMAIL_ID_CHARS = string.ascii_letters + string.digits + "_-+="


def weighted(rng: random.Random, items: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([k for k, _ in items], weights=[w for _, w in items])[0]


def encoding_for(rng: random.Random, client: Client, text: str) -> tuple[str, str]:
    """(charset, transfer encoding) the client would pick for ``text``: a
    declared charset always encodes the text, and 7bit is used only for
    ASCII (Outlook falls back to windows-1252 for „“ and €, anyone to UTF-8)."""
    table = client.ascii_encodings if text.isascii() else client.encodings
    charset, cte, _ = rng.choices(table, weights=[w for _, _, w in table])[0]
    # Thunderbird's legacy 8-bit charsets give way to UTF-8; Outlook's
    # ISO-8859-1 gives way to windows-1252 first (for „“, – and €).
    fallbacks = ("utf-8",) if cte == "8bit" else ("windows-1252", "utf-8")
    for candidate in (charset, *fallbacks):
        try:
            text.encode(candidate)
        except UnicodeEncodeError:
            continue
        return candidate, cte
    raise AssertionError("utf-8 encodes everything")


def message_id(rng: random.Random, client: Client, domain: str, stamp: str) -> str:
    """A Message-ID as the client (or its server) would write it; ``stamp``
    is the sending time as YYYYmmddHHMMSS."""
    if client.key == "outlook":
        # Outlook desktop over SMTP: <0001 01da6ef3 $1c9b2e40$55d18ac0$@domain>
        return (f"<{rng.randrange(1, 0x60):04x}01da{rng.getrandbits(16):04x}${rng.getrandbits(32):08x}$"
                f"{rng.getrandbits(32):08x}$@{domain}>")
    if client.key in ("owa", "outlook_mac") and (client.key == "owa" or rng.random() < 0.5):
        server = rng.choice(_EXO_PREFIXES) + str(rng.randint(1000, 9999))
        region = _EXO_REGIONS[server.rstrip("0123456789")]
        return f"<{server}{rng.getrandbits(96):024X}@{server}.{region}.prod.outlook.com>"
    if client.key == "outlook_mac":
        return f"<{str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()}@{domain}>"
    if client.key == "thunderbird":
        return f"<{uuid.UUID(int=rng.getrandbits(128), version=4)}@{domain}>"
    if client.key in ("apple", "iphone"):
        return f"<{str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()}@{domain}>"
    if client.key == "gmail":
        body = "".join(rng.choice(_GMAIL_ID_CHARS) for _ in range(rng.randint(40, 52)))
        return f"<CA{rng.choice('BDEFHJKLM')}{body}@mail.gmail.com>"
    if client.key == "roundcube":
        return f"<{rng.getrandbits(128):032x}@{domain}>"
    if client.key == "zimbra":
        return f"<{rng.randint(10**8, 10**9)}.{rng.randint(1000, 99999)}.{stamp}{rng.randint(100, 999)}" \
               f".JavaMail.zimbra@{domain}>"
    if client.key == "horde":
        return f"<{stamp}.Horde.{rng.getrandbits(64):016x}@webmail.{domain}>"
    if client.key == "notes":
        h = [f"{rng.getrandbits(32):08X}" for _ in range(5)]
        return f"<OF{h[0]}.{h[1]}-ONC1258A{h[2][:2]}.{h[3]}-C1258A{h[2][2:4]}.{h[4]}@{domain}>"
    return f"<{stamp}.{rng.getrandbits(40):010x}@{domain}>"


def boundary(rng: random.Random, client: Client) -> str:
    if client.key == "outlook":
        stamp = f"01DA{rng.getrandbits(16):04X}.{rng.getrandbits(32):08X}"
        return f"----=_NextPart_000_{rng.getrandbits(16):04X}_{stamp}"
    if client.key in ("owa", "outlook_mac"):
        return f"_000_{rng.getrandbits(64):016X}{rng.choice(_EXO_PREFIXES)}_"
    if client.key == "thunderbird":
        alnum = string.ascii_letters + string.digits
        return "------------" + "".join(rng.choice(alnum) for _ in range(24))
    if client.key in ("apple", "iphone"):
        return f"Apple-Mail={str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()}"
    if client.key == "gmail":
        return f"000000000000{rng.getrandbits(64):016x}"[:28]
    if client.key == "roundcube":
        return f"=_{rng.getrandbits(128):032x}"
    return f"=_alternative {rng.getrandbits(32):08X}C1258A{rng.getrandbits(16):04X}_="


def thread_index(rng: random.Random, base: bytes, depth: int) -> str:
    """Outlook's Thread-Index: the thread's 22 bytes, plus 5 per reply level."""
    return base64.b64encode(base + rng.randbytes(5 * min(depth, 20))).decode("ascii")
