"""Generate the seeded support-mail corpus: ``n`` raw messages to
servicedesk@xitrust.com plus a ground-truth manifest; as .eml files, an
mbox (mboxrd escaping) or in memory. Same seed and n, same bytes.

    python -m tests.corpus.generate --n 2000 --seed 1 --mbox /tmp/c.mbox [--dir DIR] [--manifest PATH]

Mix per message (approximate): 60 % new requests from ~200 people at ~40
companies (a few companies write most), 37 % replies to earlier threads
(In-Reply-To/References name earlier customer mails of the thread, some
only one of the two; Re:/AW:/RE:/Antwort: subjects, no ticket key; ~15 %
from a colleague of the reporter), 2 % out-of-office replies to an invented
desk notification, 1 % bounces (multipart/report, MAILER-DAEMON, null
Return-Path).

Manifest: one JSON object per message, in order: index (1-based), kind
(new|reply|auto_reply|bounce), message_id, thread (message-id of the
thread's first mail), in_reply_to, references (bool), sender (as in From),
subject (decoded), lang, charset, cte, html, attachment (null or
{type, filename, bytes}); and, beyond those, client, reply_style,
colleague, date. The manifest is never written inside --dir.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import html
import json
import random
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.corpus import attachments, content, mime
from tests.corpus.clients import (
    CLIENTS,
    EXTRA_CLIENTS,
    EXTRA_QUOTE_STYLES,
    Client,
    boundary,
    encoding_for,
    message_id,
    thread_index,
    weighted,
)
from tests.corpus.content import DESK_ADDR, TOPICS, Quoted, Topic
from tests.corpus.people import Person, make_people

DESK_HOST = "servicedesk.xitrust.com"
DESK_MX = "mx01.xitrust.com"
# Monday 4 March 2024, 07:50 in Vienna; 2,000 mails run into April, across the
# switch to summer time on 31 March.
START = dt.datetime(2024, 3, 4, 6, 50, tzinfo=dt.UTC)
MIX = (("new", 0.60), ("reply", 0.37), ("auto_reply", 0.02), ("bounce", 0.01))
COLLEAGUE_SHARE = 0.15

Message = tuple[bytes, dict[str, Any]]

# --------------------------------------------------------------------------
# time
# --------------------------------------------------------------------------
_BASE_OFFSET = {"GB": 0, "IE": 0, "EE": 2}  # hours; everyone else is on Central European Time


def _last_sunday(year: int, month: int) -> dt.date:
    d = dt.date(year, month, 31)
    return d - dt.timedelta(days=(d.weekday() + 1) % 7)


def utc_offset(country: str, utc: dt.datetime) -> dt.timedelta:
    """EU rules: summer time from 01:00 UTC on the last Sunday of March to
    01:00 UTC on the last Sunday of October."""
    start = dt.datetime.combine(_last_sunday(utc.year, 3), dt.time(1), dt.UTC)
    end = dt.datetime.combine(_last_sunday(utc.year, 10), dt.time(1), dt.UTC)
    return dt.timedelta(hours=_BASE_OFFSET.get(country, 1) + (1 if start <= utc < end else 0))


def local(country: str, utc: dt.datetime) -> dt.datetime:
    return utc.astimezone(dt.timezone(utc_offset(country, utc)))


def rfc_date(t: dt.datetime, pad_day: bool = False) -> str:
    off = t.utcoffset() or dt.timedelta()
    minutes = int(off.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    day = f"{t.day:02d}" if pad_day else str(t.day)
    zone = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return f"{content.wd(t)}, {day} {content.mon(t)} {t.year} {t:%H:%M:%S} {zone}"


# --------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------
@dataclass
class Sent:
    """A customer mail of a thread, as later replies see it."""

    mid: str
    person: Person
    when: dt.datetime  # UTC
    subject: str
    text: str
    refs: list[str]  # the References a reply to it starts from


@dataclass
class Thread:
    topic: Topic
    reporter: Person
    subject: str
    values: dict[str, str]
    index_base: bytes  # the first 22 bytes of every Thread-Index in the thread (Outlook)
    mails: list[Sent] = field(default_factory=list)

    @property
    def root(self) -> str:
        return self.mails[0].mid


@dataclass
class Attachment:
    kind: str
    filename: str
    data: bytes


# --------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------
def _client(p: Person) -> Client:
    return CLIENTS.get(p.client) or EXTRA_CLIENTS[p.client]


class Corpus:
    """Deterministic: everything random comes from one ``random.Random(seed)``,
    and nothing iterates over a set or depends on the clock.

    ``extra_styles`` (on by default) adds the reply styles this corpus taught
    the gateway's reply-text extraction (Zimbra's "----- Ursprüngliche Mail
    -----", classic Notes' "... schrieb am 04.03.2024 09:12:52:", Horde's
    "Zitat von ...:"); off gives the basic set of clients."""

    def __init__(self, seed: int, senders: int = 200, extra_styles: bool = True) -> None:
        self.rng = random.Random(seed)
        self.extra_styles = extra_styles
        self.people, self.weights = make_people(self.rng, senders, extra_styles)
        self.by_domain: dict[str, list[Person]] = {}
        for p in self.people:
            self.by_domain.setdefault(p.domain, []).append(p)
        self.display = {p.addr: self._display_name(p) for p in self.people}
        self.threads: list[Thread] = []
        self.now = START
        self.index = 0
        self.used_ids: set[str] = set()

    # ------------------------------------------------------------ helpers
    def _display_name(self, p: Person) -> str:
        # Exchange address books in the DACH region often show "Last, First"
        if not p.role and p.client in ("outlook", "owa") and self.rng.random() < 0.3:
            first, _, last = p.name.partition(" ")
            return f"{last}, {first}"
        return p.name

    def _advance(self) -> None:
        """Next arrival: a few minutes later, within Vienna business hours
        (Mon-Fri 07:00-18:30) but for the odd evening or weekend mail."""
        rng = self.rng
        self.now += dt.timedelta(seconds=int(rng.expovariate(1 / 420)) + 15)
        vienna = local("AT", self.now)
        in_hours = vienna.weekday() < 5 and dt.time(7) <= vienna.time() < dt.time(18, 30)
        if in_hours or rng.random() < 0.03:
            return
        day = vienna.date() + dt.timedelta(days=0 if vienna.time() < dt.time(7) else 1)
        while day.weekday() >= 5:
            day += dt.timedelta(days=1)
        # 07:00 read as UTC lies on the same side of the 01:00 UTC summer-time
        # switch as 07:00 Vienna time, so it gives that morning's offset
        guess = dt.datetime.combine(day, dt.time(7), dt.UTC)
        self.now = guess - utc_offset("AT", guess) + dt.timedelta(seconds=rng.randint(0, 3000))

    def _unique_id(self, make: Callable[[], str]) -> str:
        """A fresh id: random ids can collide, and the corpus promises unique Message-IDs."""
        while True:
            mid = make()
            if mid not in self.used_ids:
                self.used_ids.add(mid)
                return mid

    def _colleague(self, p: Person) -> Person:
        return self.rng.choice([c for c in self.by_domain[p.domain] if c.addr != p.addr])

    def _pick_thread(self) -> Thread:
        """Mostly one of the recently active threads, sometimes an old one."""
        n = len(self.threads)
        if self.rng.random() < 0.8:
            return self.threads[max(0, n - 1 - int(self.rng.expovariate(1 / 18)))]
        return self.threads[self.rng.randrange(n)]

    def _values(self, p: Person, topic: Topic) -> dict[str, str]:
        other = self._colleague(p)
        company = p.company
        now = local(company.country, self.now)
        return content.values_for(self.rng, topic.key, p.lang, other.name, p.phone, company.city, p.domain,
                                  now)

    def _attachment(self, p: Person, topic: Topic, values: dict[str, str]) -> Attachment:
        rng = self.rng
        kind = topic.attachment if rng.random() < 0.6 else "png"
        when = local(p.company.country, self.now) - dt.timedelta(minutes=rng.randint(1, 50))
        name = attachments.filename(rng, kind, p.lang, p.client, when, topic.key)
        if kind == "png":
            data = attachments.png(rng)
        elif kind == "log":
            data = attachments.log_excerpt(rng, when, values["code"])
        else:
            title = name.rsplit(".", 1)[0].replace("_", " ")
            company = p.company
            if topic.key == "invoice":
                items = ("MOXIS Lizenz", "Wartung", "Signaturpaket", "Schulung")
                body = [f"Position {i}: {rng.choice(items)}  {rng.randint(1, 90) * 10},00 EUR"
                        for i in range(1, rng.randint(3, 12))]
            else:
                body = [f"Dokument-ID: {values['doc']}", f"Erstellt: {when:%d.%m.%Y %H:%M}", "",
                        *(f"{i}. {rng.choice(('Vertragsgegenstand', 'Laufzeit', 'Vergütung', 'Haftung'))}"
                          for i in range(1, rng.randint(3, 9)))]
            data = attachments.pdf(rng, title, [company.name, company.street, company.city, "", *body])
        return Attachment(kind, name, data)

    # ------------------------------------------------------------ bodies
    def _own_lines(
        self,
        p: Person,
        paragraphs: list[str],
        client: Client,
        greet: bool = True,
        fields: list[str] | None = None,
    ) -> list[str]:
        """Form fields, greeting, paragraphs (wrapped; Thunderbird marks soft
        breaks with a trailing space, format=flowed) and the closing formula."""
        rng = self.rng
        lines: list[str] = [*fields, ""] if fields else []
        if greet:
            lines += [content.greeting(rng, p.lang, p.company.country), ""]
        for i, para in enumerate(paragraphs):
            # German starts lower case after "Hallo," only in the first paragraph
            if para[:1].islower() and (p.lang == "en" or i > 0 or not greet):
                para = para[0].upper() + para[1:]
            if client.typographic:
                para = content.typographic(para, p.lang)
            if para.startswith("\t") or "\n" in para:  # preformatted (fields block, log line)
                lines += para.lstrip("\t").split("\n")
            else:
                wrapped = content.wrap(para)
                if client.key == "thunderbird":
                    wrapped = [w + " " for w in wrapped[:-1]] + wrapped[-1:]
                lines += wrapped
            lines.append("")
        lines.append(content.closing(rng, p.lang, p.company.country, p.company.city))
        return lines

    def _signature(self, p: Person, full_share: float) -> list[str]:
        if p.client == "iphone":
            return [p.name.split(" ")[0], "", content.MOBILE_TRAILERS[p.lang]]
        full = self.rng.random() < full_share
        company = p.company
        lines = content.signature(self.rng, p.name, p.title, company.name, company.street, company.city,
                                  p.phone, p.domain, p.lang, company.country, full)
        if self.rng.random() < 0.04:
            lines += ["", content.MOBILE_TRAILERS[p.lang]]
        return lines

    # ------------------------------------------------------------ assembly
    def _text_part(self, client: Client, subtype: str, text: str, charset: str, cte: str) -> mime.Part:
        flowed = "; format=flowed" if client.key == "thunderbird" and subtype == "plain" else ""
        if client.key == "gmail":
            ctype = f'text/{subtype}; charset="{charset.upper()}"'
        elif client.key in ("apple", "iphone"):
            ctype = f"text/{subtype};\n\tcharset={charset}"
        elif client.key == "thunderbird":
            ctype = f"text/{subtype}; charset={charset.upper()}{flowed}"
        else:
            ctype = f'text/{subtype}; charset="{charset}"'
        headers = [("Content-Type", ctype)]
        if not (cte == "7bit" and client.omit_7bit_cte):
            headers.append(("Content-Transfer-Encoding", cte))
        return mime.Part(headers, mime.encode_body(text, charset, cte))

    def _attachment_part(self, client: Client, att: Attachment, header_charset: str) -> mime.Part:
        ctype = {"png": "image/png", "pdf": "application/pdf", "log": "text/plain"}[att.kind]
        # macOS hands over decomposed (NFD) file names
        name = (
            unicodedata.normalize("NFD", att.filename) if client.key in ("apple", "iphone") else att.filename
        )
        style = "rfc2047" if client.key in ("outlook", "owa", "outlook_mac", "gmail") else "rfc2231"
        name_param, file_param = mime.filename_params(name, style, header_charset)
        if att.kind == "log":
            ctype += "; charset=utf-8"
        headers: list[tuple[str, str]]
        if client.key in ("apple", "iphone"):
            headers = [
                ("Content-Disposition", f"attachment;\n\t{file_param}"),
                ("Content-Type", f"{ctype};\n\tx-unix-mode=0644;\n\t{name_param}"),
                ("Content-Transfer-Encoding", "base64"),
            ]
        elif client.key == "gmail":
            att_id = f"f_{self.rng.getrandbits(40):010x}0"
            headers = [
                ("Content-Type", f"{ctype}; {name_param}"),
                ("Content-Disposition", f"attachment; {file_param}"),
                ("Content-Transfer-Encoding", "base64"),
                ("Content-ID", f"<{att_id}>"),
                ("X-Attachment-Id", att_id),
            ]
        elif client.key in ("outlook", "owa", "outlook_mac"):
            headers = [
                ("Content-Type", f"{ctype};\n\t{name_param}"),
                ("Content-Description", mime.text_header(att.filename, header_charset)),
                ("Content-Disposition", f"attachment;\n\t{file_param}; size={len(att.data)}"),
                ("Content-Transfer-Encoding", "base64"),
            ]
        else:
            headers = [
                ("Content-Type", f"{ctype};\n {name_param}"),
                ("Content-Transfer-Encoding", "base64"),
                ("Content-Disposition", f"attachment;\n {file_param}"),
            ]
        return mime.Part(headers, mime.encode_binary(att.data))

    def _build(
        self,
        p: Person,
        client: Client,
        top: dict[str, str],
        header_charset: str,
        text: str,
        html_text: str | None,
        charset: str,
        cte: str,
        att: Attachment | None,
    ) -> tuple[bytes, dict[str, Any]]:
        """The raw message: the client's headers in its order around the MIME
        tree; and the manifest's encoding facts."""
        rng = self.rng
        body = self._text_part(client, "plain", text, charset, cte)
        preamble = {
            "outlook": "This is a multipart message in MIME format.",
            "thunderbird": "This is a multi-part message in MIME format.",
        }.get(client.key, "")
        if html_text is not None:
            longest = max(len(line) for line in html_text.split("\n"))
            html_cte = cte if cte in ("quoted-printable", "base64") or longest < 900 else "quoted-printable"
            if html_cte == "7bit" and not html_text.isascii():
                html_cte = "quoted-printable"
            html_part = self._text_part(client, "html", html_text, charset, html_cte)
            b = boundary(rng, client)
            body = mime.Part(
                [("Content-Type", f'multipart/alternative;\n\tboundary="{b}"')],
                parts=[body, html_part],
                boundary=b,
                preamble="" if att else preamble,
            )
        if att is not None:
            b = boundary(rng, client)
            body = mime.Part(
                [("Content-Type", f'multipart/mixed;\n\tboundary="{b}"')],
                parts=[body, self._attachment_part(client, att, header_charset)],
                boundary=b,
                preamble=preamble,
            )
        if "X-MS-Has-Attach" in top:
            top["X-MS-Has-Attach"] = "yes" if att else ""
        for k, v in body.headers:
            top[k] = v
        top["MIME-Version"] = client.mime_version
        order = [h for h in client.header_order if h in top]
        order += [h for h in top if h not in order]
        if client.key in ("apple", "iphone"):
            top["Message-Id"] = top.pop("Message-ID")
            order = ["Message-Id" if h == "Message-ID" else h for h in order]
            top["Mime-Version"] = top.pop("MIME-Version")
            order = ["Mime-Version" if h == "MIME-Version" else h for h in order]
        trace = self._trace(p, client)
        body.headers = trace + [(h, top[h]) for h in order]
        facts = {
            "charset": charset,
            "cte": cte,
            "html": html_text is not None,
            "attachment": None
            if att is None
            else {"type": att.kind, "filename": att.filename, "bytes": len(att.data)},
        }
        return body.to_bytes(), facts

    def _trace(self, p: Person, client: Client) -> list[tuple[str, str]]:
        """Return-Path and the Received lines the desk's MX adds."""
        rng = self.rng
        recv = local("AT", self.now + dt.timedelta(seconds=rng.randint(1, 20)))
        ip = f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randint(2, 250)}"
        if client.key == "owa":
            site = f"{rng.choice(('am6', 'db9', 'vi1'))}eur0{rng.randint(1, 5)}on{rng.randint(2000, 2199)}"
            host = f"mail-{site}.outbound.protection.outlook.com"
        elif client.key == "gmail":
            host = f"mail-{rng.choice(('wr1', 'wm1', 'ej1', 'lf1'))}-f{rng.randint(41, 199)}.google.com"
        else:
            host = f"{rng.choice(('mail', 'mx', 'smtp', 'mailgw'))}.{p.domain}"
        queue = f"{rng.getrandbits(40):010X}"
        received = (
            f"from {host} ({host} [{ip}])\n\tby {DESK_MX} (Postfix) with ESMTPS id {queue}\n"
            f"\tfor <{DESK_ADDR}>; {rfc_date(recv)}"
        )
        return [("Return-Path", f"<{p.addr}>"), ("Received", received)]

    def _headers(
        self,
        p: Person,
        client: Client,
        subject: str,
        mid: str,
        charset: str,
        depth: int,
        thread: Thread,
        irt: str | None,
        refs: list[str] | None,
        cc: Person | None,
    ) -> tuple[dict[str, str], str]:
        """The client's own headers, and the charset of its encoded words:
        Outlook and Notes use the body's charset where it encodes them."""
        rng = self.rng
        hcs = charset if charset not in ("us-ascii",) and client.key in ("outlook", "notes") else "utf-8"
        try:
            (subject + self.display[p.addr] + (self.display[cc.addr] if cc else "")).encode(hcs)
        except UnicodeEncodeError:
            hcs = "utf-8"
        enc = "B" if client.key in ("gmail", "owa") else "Q"
        whole = client.key not in ("thunderbird", "apple", "iphone")
        when = self.now if client.date_in_utc else local(p.company.country, self.now)
        top: dict[str, str] = {}
        top["From"] = mime.address(
            self.display[p.addr],
            p.addr,
            hcs,
            enc,
            quoted_words=client.key == "outlook" and rng.random() < 0.15,
        )
        top["To"] = rng.choice(
            (
                DESK_ADDR,
                DESK_ADDR,
                f"XiTrust Servicedesk <{DESK_ADDR}>",
                f"'{DESK_ADDR}' <{DESK_ADDR}>",
                f'"Servicedesk XiTrust" <{DESK_ADDR}>',
            )
        )
        if cc is not None:
            top["Cc"] = mime.address(self.display[cc.addr], cc.addr, hcs, enc)
        top["Subject"] = mime.fold(mime.text_header(subject, hcs, enc, whole), len("Subject: "))
        top["Date"] = rfc_date(when, pad_day=client.key in ("roundcube", "notes"))
        top["Message-ID"] = mid
        if refs:
            top["References"] = "\n ".join(refs) if client.key != "gmail" else mime.fold(" ".join(refs), 12)
        if irt:
            top["In-Reply-To"] = irt
        if client.key in ("outlook", "owa"):
            top["Thread-Topic"] = mime.fold(
                mime.text_header(thread.subject, hcs, enc, whole), len("Thread-Topic: ")
            )
            top["Thread-Index"] = thread_index(rng, thread.index_base, depth)
            top["Accept-Language"] = "de-AT, en-US" if p.lang == "de" else "en-GB, en-US"
            top["X-MS-Has-Attach"] = ""
        if client.key in ("outlook", "owa", "thunderbird", "outlook_mac"):
            top["Content-Language"] = {
                "de": {"DE": "de-DE", "CH": "de-CH"}.get(p.company.country, "de-AT"),
                "en": "en-GB",
            }[p.lang]
        if p.mailer is not None:
            top[p.mailer[0]] = p.mailer[1]
        return top, hcs

    def _stamp(self) -> str:
        return f"{self.now:%Y%m%d%H%M%S}"

    # ------------------------------------------------------------ kinds
    def new_request(self) -> Message:
        rng = self.rng
        p = rng.choices(self.people, weights=self.weights)[0]
        client = _client(p)
        topic = rng.choice(TOPICS)
        values = self._values(p, topic)
        subject = content.fill(rng.choice(topic.subjects[p.lang]), values)
        if rng.random() < 0.04:
            subject = ("WICHTIG: " if p.lang == "de" else "URGENT: ") + subject
        att = self._attachment(p, topic, values) if rng.random() < 0.1 else None
        paras: list[str] = []
        fields = None
        if rng.random() < 0.05:  # the desk's request form, filled in at the very top
            fields = [content.fill(f, values) for f in content.FIELDS_BLOCK[p.lang]]
        problem = content.fill(rng.choice(topic.problem[p.lang]), values)
        details = rng.sample(topic.details[p.lang], rng.randint(1, min(3, len(topic.details[p.lang]))))
        filled = [content.fill(d, values) for d in details]
        if rng.random() < 0.5:
            paras += [problem + " " + " ".join(filled)]
        else:
            paras += [problem, " ".join(filled)]
        if rng.random() < 0.04:  # a line starting with "From " (mbox escaping)
            paras.append(
                "\t"
                + content.fill(rng.choice(content.FROM_LINES[p.lang]), values)
                + f"\n  {values['code']} at {values['time']}"
            )
        if att is not None:
            paras.append(content.ATTACHMENT_NOTES[att.kind][p.lang])
        paras.append(content.fill(rng.choice(topic.asks[p.lang]), values))
        own = self._own_lines(p, paras, client, fields=fields)
        sig = self._signature(p, 0.75)
        text = content.plain_body(own, None, sig, sig_dashes=client.key == "thunderbird")
        html_text = None
        charset, cte = encoding_for(rng, client, text)
        if rng.random() < client.html:
            html_text = content.html_body(client.key, p.lang, charset, own, sig, None)
        mid = self._unique_id(lambda: message_id(rng, client, p.domain, self._stamp()))
        cc = self._colleague(p) if rng.random() < 0.08 else None
        thread = Thread(topic, p, subject, values, rng.randbytes(22))
        top, hcs = self._headers(p, client, subject, mid, charset, 0, thread, None, None, cc)
        raw, facts = self._build(p, client, top, hcs, text, html_text, charset, cte, att)
        thread.mails.append(Sent(mid, p, self.now, subject, text, []))
        self.threads.append(thread)
        return raw, {
            "kind": "new",
            "message_id": mid,
            "thread": mid,
            "in_reply_to": None,
            "references": False,
            "sender": p.addr,
            "subject": subject,
            "lang": p.lang,
            **facts,
            "client": client.key,
            "reply_style": None,
            "colleague": False,
        }

    def _reply_subject(self, client: Client, lang: str, parent_subject: str) -> str:
        prefix = client.prefix[lang]
        if re.match(r"(?i)(re|aw|antwort):", parent_subject):
            # Most clients keep an existing prefix of their own; a few stack it
            # (AW: AW:). Half of them add theirs to another one (AW: Re:).
            same = parent_subject.lower().startswith(prefix.lower().strip())
            if self.rng.random() >= (0.08 if same else 0.5):
                return parent_subject
        return prefix + parent_subject

    def reply(self) -> Message:
        rng = self.rng
        thread = self._pick_thread()
        reporter = thread.reporter
        colleague = rng.random() < COLLEAGUE_SHARE
        if colleague:
            earlier = [m.person for m in thread.mails if m.person.addr != reporter.addr]
            p = earlier[-1] if earlier and rng.random() < 0.5 else self._colleague(reporter)
        else:
            p = reporter
        client = _client(p)
        parent = thread.mails[-1] if rng.random() < 0.75 else rng.choice(thread.mails)
        subject = self._reply_subject(client, p.lang, parent.subject)
        refs = [*parent.refs, parent.mid]
        if len(refs) > 12:  # clients shorten long References, keeping the first
            refs = [refs[0], *refs[-10:]]
        mode = rng.random()
        only_refs = 0.04 + (0.15 if client.key == "roundcube" else 0)
        only_irt = 0.04 + (0.3 if client.key == "notes" else 0)
        irt: str | None = parent.mid
        send_refs: list[str] | None = refs
        if mode < only_refs:
            irt = None
        elif mode < only_refs + only_irt:
            send_refs = None
        # the thread's facts (document, version, ...), with this writer's phone and today's time
        fresh = self._values(p, thread.topic)
        values = dict(thread.values, **{k: fresh[k] for k in ("phone", "time")})
        att = self._attachment(p, thread.topic, values) if rng.random() < 0.11 else None
        paras: list[str] = []
        if colleague and p.addr != reporter.addr:
            paras.append(
                content.fill(rng.choice(content.COLLEAGUE_INTROS[p.lang]), {"reporter": reporter.name})
            )
        topic, lang = thread.topic, p.lang
        state = rng.random()
        if state < 0.2:  # solved
            pool = topic.resolved[lang] if rng.random() < 0.6 else content.RESOLVED[lang]
            paras.append(content.fill(rng.choice(pool), values))
        elif state < 0.5:  # chasing an answer
            paras.append(content.fill(rng.choice(content.CHASERS[lang]), values))
            if rng.random() < 0.3:
                paras.append(content.fill(rng.choice(topic.followups[lang]), values))
        else:  # news on the open issue
            news = content.fill(rng.choice(topic.followups[lang]), values)
            paras.append(f"{rng.choice(content.ADDENDA[lang])} {news}" if rng.random() < 0.4 else news)
        if att is not None:
            paras.append(content.ATTACHMENT_NOTES[att.kind][p.lang])
        own = self._own_lines(p, paras, client, greet=rng.random() < 0.75)
        sig = self._signature(p, 0.45)
        styles = client.quote_styles
        if self.extra_styles:
            styles += EXTRA_QUOTE_STYLES.get(client.key, ())
        style = weighted(rng, styles) if rng.random() < 0.88 else None
        quote = None
        if style is not None:
            shown = local(p.company.country, parent.when)
            parent_text = parent.text.rstrip("\n")
            if client.key != "thunderbird":  # only Thunderbird keeps format=flowed soft breaks in a quote
                parent_text = "\n".join(
                    ln if ln == "-- " else ln.rstrip(" ") for ln in parent_text.split("\n")
                )
            quoted = Quoted(
                shown, parent.person.name, parent.person.addr, parent.subject, parent_text, parent.mid
            )
            quote = content.make_quote(rng, style, p.lang, quoted)
        text = content.plain_body(own, quote, sig, sig_dashes=client.key == "thunderbird")
        charset, cte = encoding_for(rng, client, text)
        html_text = None
        if rng.random() < client.html:
            html_text = content.html_body(client.key, p.lang, charset, own, sig, quote, parent.mid)
        mid = self._unique_id(lambda: message_id(rng, client, p.domain, self._stamp()))
        cc = self._colleague(p) if rng.random() < 0.05 else None
        top, hcs = self._headers(p, client, subject, mid, charset, len(refs), thread, irt, send_refs, cc)
        raw, facts = self._build(p, client, top, hcs, text, html_text, charset, cte, att)
        thread.mails.append(Sent(mid, p, self.now, subject, text, refs))
        return raw, {
            "kind": "reply",
            "message_id": mid,
            "thread": thread.root,
            "in_reply_to": irt,
            "references": send_refs is not None,
            "sender": p.addr,
            "subject": subject,
            "lang": p.lang,
            **facts,
            "client": client.key,
            "reply_style": style,
            "colleague": p.addr != reporter.addr,
        }

    # Robot markers of out-of-office replies: each set holds at least one
    # marker a desk must recognise; X-Auto-Response-Suppress alone is not one.
    _OOF_MARKERS: tuple[tuple[tuple[str, str], ...], ...] = (
        (("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")),
        (
            ("Auto-Submitted", "auto-generated"),
            ("X-Auto-Response-Suppress", "All"),
            ("X-MS-Exchange-Inbox-Rules-Loop", "{addr}"),
        ),
        (("X-Autoreply", "yes"), ("Precedence", "auto_reply")),
        (("Auto-Submitted", "auto-replied (vacation)"), ("Precedence", "bulk")),
        (("Precedence", "auto_reply"),),
        (("X-Autoreply", "yes"),),
        (("Precedence", "bulk"), ("X-Auto-Response-Suppress", "OOF, AutoReply")),
    )

    def _desk_id(self) -> str:
        return self._unique_id(
            lambda: f"<{self.rng.getrandbits(64):016x}.{self.rng.randint(1, 99999)}@{DESK_HOST}>"
        )

    def auto_reply(self) -> Message:
        rng = self.rng
        thread = self._pick_thread()
        p = thread.mails[-1].person
        client = _client(p)
        desk_mid = self._desk_id()
        back = local(p.company.country, self.now) + dt.timedelta(days=rng.randint(2, 20))
        deputy = self._colleague(p)
        text_tpl = rng.choice(content.OUT_OF_OFFICE[p.lang])
        back_s = f"{back:%d.%m.%Y}" if p.lang == "de" else f"{back.day} {content.month(back)} {back.year}"
        body = content.fill(text_tpl, {"back": back_s, "deputy": f"{deputy.name} ({deputy.addr})"})
        own = [*content.wrap(body), "", content.closing(rng, p.lang, p.company.country, p.company.city)]
        text = content.plain_body(own, None, [p.name], sig_dashes=False)
        subject = rng.choice(content.OUT_OF_OFFICE_SUBJECT[p.lang]) + "Re: " + thread.subject
        charset, cte = encoding_for(rng, client, text)
        html_text = (
            content.html_body(client.key, p.lang, charset, own, [p.name], None)
            if rng.random() < client.html
            else None
        )
        mid = self._unique_id(lambda: message_id(rng, client, p.domain, self._stamp()))
        with_refs = rng.random() < 0.8
        refs = [m.mid for m in thread.mails[-3:]] + [desk_mid] if with_refs else None
        top, hcs = self._headers(p, client, subject, mid, charset, 1, thread, desk_mid, refs, None)
        for k, v in rng.choice(self._OOF_MARKERS):
            top[k] = v.format(addr=p.addr)
        raw, facts = self._build(p, client, top, hcs, text, html_text, charset, cte, None)
        return raw, {
            "kind": "auto_reply",
            "message_id": mid,
            "thread": thread.root,
            "in_reply_to": desk_mid,
            "references": with_refs,
            "sender": p.addr,
            "subject": subject,
            "lang": p.lang,
            **facts,
            "client": client.key,
            "reply_style": None,
            "colleague": False,
        }

    def bounce(self) -> Message:
        """A DSN for a desk notification to an address of the thread's
        company that no longer exists (or whose mailbox is full): rejected
        at the desk's relay, or accepted and bounced by the customer's
        server."""
        rng = self.rng
        thread = self._pick_thread()
        p = thread.reporter
        user, _, domain = p.addr.partition("@")
        bad = rng.choice((f"{user}.old@{domain}", f"{user[:-1]}@{domain}", f"ex-{user}@{domain}"))
        desk_mid = self._desk_id()
        desk_subject = "Re: " + thread.subject
        mta_kind = rng.choice(("postfix", "postfix", "exim", "exchange", "sendmail"))
        mta = content.MTAS[mta_kind]
        host = DESK_MX if rng.random() < 0.6 else f"mail.{domain}"
        lang = "de" if mta_kind == "exchange" and p.company.lang == "de" else "en"
        diag = (mta.unknown_user if rng.random() < 0.8 else mta.mailbox_full).format(bad=bad)
        arrival = local("AT", self.now - dt.timedelta(seconds=rng.randint(3, 90)))
        facts = {
            "mta": host,
            "remote": f"mail.{domain}" if host == DESK_MX else f"mbx{rng.randint(1, 4)}.{domain}",
            "ip": f"{rng.choice(('192.0.2', '198.51.100'))}.{rng.randint(2, 250)}",
            "bad": bad,
            "diag": diag,
            "received": rfc_date(arrival),
            "desk_host": DESK_HOST,
            "domain": domain,
        }
        notice = mta.notices[lang].format(**facts)
        subject = mta.subjects[lang].format(subject=desk_subject)
        if notice.isascii():
            charset, cte = "us-ascii", "7bit"
        else:
            charset, cte = "utf-8", rng.choice(("quoted-printable", "base64"))
        first = mime.Part(
            [
                ("Content-Description", "Notification"),
                ("Content-Type", f"text/plain; charset={charset}"),
                ("Content-Transfer-Encoding", cte),
            ],
            mime.encode_body(notice, charset, cte),
        )
        if mta.html:
            markup = (
                '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head><body>'
                '<p style="font-family:Segoe UI">'
                + "<br>\n".join(html.escape(x) for x in notice.split("\n"))
                + "</p></body></html>\n"
            )
            html_part = mime.Part(
                [("Content-Type", f"text/html; charset={charset}"), ("Content-Transfer-Encoding", cte)],
                mime.encode_body(markup, charset, cte),
            )
            b = f"_{rng.getrandbits(64):016x}_"
            first = mime.Part(
                [("Content-Type", f'multipart/alternative; differences=Content-Type;\n\tboundary="{b}"')],
                parts=[first, html_part],
                boundary=b,
            )
        per_message = [f"Reporting-MTA: dns; {host}"]
        if mta_kind == "postfix":
            per_message += [
                f"X-Postfix-Queue-ID: {rng.getrandbits(40):010X}",
                f"X-Postfix-Sender: rfc822; {DESK_ADDR}",
            ]
        per_message.append(f"Arrival-Date: {rfc_date(arrival)}")
        per_recipient = [
            f"Final-Recipient: rfc822; {bad}",
            f"Original-Recipient: rfc822;{bad}",
            "Action: failed",
            f"Status: {diag.split(' ')[1]}",
            f"Remote-MTA: dns; {facts['remote']}",
            f"Diagnostic-Code: smtp; {diag}",
        ]
        status = mime.Part(
            [("Content-Description", "Delivery report"), ("Content-Type", "message/delivery-status")],
            ("\n".join(per_message) + "\n\n" + "\n".join(per_recipient) + "\n").encode("ascii"),
        )
        returned = mime.Part(
            [("Content-Description", "Undelivered Message Headers"), ("Content-Type", "text/rfc822-headers")],
            "".join(
                f"{k}: {v}\n"
                for k, v in (
                    ("Return-Path", f"<{DESK_ADDR}>"),
                    ("From", f"XiTrust Servicedesk <{DESK_ADDR}>"),
                    ("To", bad),
                    ("Subject", mime.text_header(desk_subject, "utf-8")),
                    ("Date", rfc_date(arrival)),
                    ("Message-ID", desk_mid),
                    ("In-Reply-To", thread.mails[-1].mid),
                    ("Auto-Submitted", "auto-replied"),
                    ("MIME-Version", "1.0"),
                    ("Content-Type", "text/plain; charset=utf-8"),
                )
            ).encode("ascii"),
        )
        b = f"{rng.getrandbits(40):010X}.{int(self.now.timestamp())}/{host}"
        mid = self._unique_id(lambda: f"<{self._stamp()}.{rng.getrandbits(40):010X}@{host}>")
        sender = f"{mta.local_part}@{host}"
        now = rfc_date(local("AT", self.now))
        top = [
            ("Return-Path", "<>"),
            ("Received", f"by {host} ({mta.software})\n\tid {rng.getrandbits(40):010X}; {now}"),
            ("Date", now),
            ("From", mta.sender.format(addr=sender)),
            ("Subject", mime.fold(mime.text_header(subject, "utf-8"), 9)),
            ("To", DESK_ADDR),
            ("Auto-Submitted", "auto-replied"),
            ("Message-ID", mid),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/report; report-type=delivery-status;\n\tboundary="{b}"'),
        ]
        msg = mime.Part(
            top, parts=[first, status, returned], boundary=b, preamble="This is a MIME-encapsulated message."
        )
        return msg.to_bytes(), {
            "kind": "bounce",
            "message_id": mid,
            "thread": thread.root,
            "in_reply_to": None,
            "references": False,
            "sender": sender,
            "subject": subject,
            "lang": lang,
            "charset": charset,
            "cte": cte,
            "html": mta.html,
            "attachment": None,
            "client": f"mta:{mta_kind}",
            "reply_style": None,
            "colleague": False,
            "failed_recipient": bad,
        }

    # ------------------------------------------------------------ driver
    def message(self) -> Message:
        self._advance()
        self.index += 1
        kind = "new"
        if self.threads:  # the first mail must open a thread
            x = self.rng.random()
            for candidate, share in MIX:
                kind = candidate
                x -= share
                if x < 0:
                    break
        raw, info = {
            "new": self.new_request,
            "reply": self.reply,
            "auto_reply": self.auto_reply,
            "bounce": self.bounce,
        }[kind]()
        return raw, {"index": self.index, **info, "date": self.now.isoformat()}


# --------------------------------------------------------------------------
# function API
# --------------------------------------------------------------------------
def generate(n: int, seed: int, senders: int = 200, extra_styles: bool = True) -> list[Message]:
    """``n`` messages as (raw bytes, manifest row), in order."""
    corpus = Corpus(seed, senders, extra_styles)
    return [corpus.message() for _ in range(n)]


_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


def mbox_entry(raw: bytes, info: dict[str, Any]) -> bytes:
    """One mboxrd entry: a ``From `` separator line, the message with every
    ``>*From `` line given one more '>', and a blank line."""
    sender = "MAILER-DAEMON" if info["kind"] == "bounce" else info["sender"]
    t = dt.datetime.fromisoformat(info["date"])
    stamp = f"{content.wd(t)} {content.mon(t)} {t.day:2d} {t:%H:%M:%S %Y}"
    return f"From {sender} {stamp}\n".encode("ascii") + _FROM_LINE.sub(rb">\1", raw) + b"\n"


def write_manifest(path: Path, messages: list[Message]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for _, info in messages:
            f.write(json.dumps(info, ensure_ascii=False) + "\n")
    return path


def write_mbox(path: Path, messages: list[Message]) -> Path:
    with open(path, "wb") as f:
        for raw, info in messages:
            f.write(mbox_entry(raw, info))
    return path


def write_dir(directory: Path, messages: list[Message]) -> list[Path]:
    """``000001.eml`` ... into ``directory`` (old .eml files removed first)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.eml"):
        old.unlink()
    paths = []
    for raw, info in messages:
        path = directory / f"{info['index']:06d}.eml"
        path.write_bytes(raw)
        paths.append(path)
    return paths


def default_manifest(mbox: Path | None, directory: Path | None) -> Path:
    if mbox is not None:
        return Path(f"{mbox}.manifest.jsonl")
    assert directory is not None
    return Path(str(directory).rstrip("/") + ".manifest.jsonl")


def _manifest_path(mbox: Path | None, directory: Path | None, manifest: Path | None) -> Path:
    if mbox is None and directory is None:
        raise ValueError("need an mbox path and/or a directory")
    path = manifest or default_manifest(mbox, directory)
    if directory is not None and directory.resolve() in path.resolve().parents:
        # a mail-directory reader would take it for mail
        raise ValueError(f"the manifest {path} must not be written inside {directory}")
    return path


def write_corpus(
    n: int,
    seed: int,
    *,
    mbox: Path | None = None,
    directory: Path | None = None,
    manifest: Path | None = None,
    senders: int = 200,
    extra_styles: bool = True,
) -> Path:
    """Generate and write the corpus; the manifest's path (by default
    ``<mbox>.manifest.jsonl`` or ``<dir>.manifest.jsonl``, never inside
    ``directory``)."""
    manifest = _manifest_path(mbox, directory, manifest)
    messages = generate(n, seed, senders, extra_styles)
    if mbox is not None:
        write_mbox(mbox, messages)
    if directory is not None:
        write_dir(directory, messages)
    return write_manifest(manifest, messages)


def summary(messages: list[Message]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    digest = hashlib.sha256()
    for raw, info in messages:
        digest.update(raw)
        counts[info["kind"]] += 1
        counts[f"{info['charset']}/{info['cte']}"] += 1
        counts["html"] += info["html"]
        counts["attachment"] += info["attachment"] is not None
    return {"n": len(messages), "sha256": digest.hexdigest()[:16], "counts": dict(sorted(counts.items()))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of messages")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mbox", type=Path, help="write an mbox (mboxrd escaping) to this path")
    ap.add_argument("--dir", type=Path, help="write NNNNNN.eml files into this directory")
    ap.add_argument("--manifest", type=Path, help="default: <mbox>.manifest.jsonl or <dir>.manifest.jsonl")
    ap.add_argument("--senders", type=int, default=200)
    ap.add_argument("--basic-styles", dest="extra_styles", action="store_false",
                    help="leave out the Zimbra, classic Notes and Horde reply styles")
    a = ap.parse_args(argv)
    try:
        manifest = _manifest_path(a.mbox, a.dir, a.manifest)
    except ValueError as exc:
        ap.error(str(exc))
    messages = generate(a.n, a.seed, a.senders, a.extra_styles)
    if a.mbox is not None:
        write_mbox(a.mbox, messages)
    if a.dir is not None:
        write_dir(a.dir, messages)
    write_manifest(manifest, messages)
    print(json.dumps({**summary(messages), "manifest": str(manifest)}, ensure_ascii=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
