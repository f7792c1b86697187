"""Small, valid files customers attach: PNG screenshots of an error dialog
(zlib + struct), PDF documents with a real xref table, server-log
excerpts; and the names people give them."""

from __future__ import annotations

import datetime as dt
import random
import struct
import zlib

# (R, G, B) of the screenshot's window chrome
_GREY, _WHITE, _TITLE, _RED, _TEXT = (
    (240, 240, 240),
    (255, 255, 255),
    (0, 99, 177),
    (196, 43, 28),
    (64, 64, 64),
)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png(rng: random.Random) -> bytes:
    """An RGB screenshot of a browser window with an error dialog: a title
    bar, a white page, a dialog with a red header and 'text' bars."""
    w, h = rng.randint(160, 360), rng.randint(110, 240)
    dx, dy = rng.randint(20, w // 3), rng.randint(30, h // 3)
    dw, dh = rng.randint(w // 3, w - dx - 10), rng.randint(40, h - dy - 10)
    bars = [
        (dy + 22 + 9 * i, dx + 10, dx + 10 + rng.randint(dw // 3, dw - 20)) for i in range((dh - 26) // 9)
    ]
    rows = []
    for y in range(h):
        if y < 18:
            row = bytes(_TITLE) * w
        else:
            spans = [(0, w, _WHITE if y > 30 else _GREY)]
            if dy <= y < dy + dh:
                colour = _RED if y < dy + 16 else _GREY
                spans.append((dx, dx + dw, colour))
                for top, x0, x1 in bars:
                    if top <= y < top + 4:
                        spans.append((x0, x1, _TEXT))
            pixels = bytearray(bytes(_WHITE) * w)
            for x0, x1, colour in spans:
                pixels[x0 * 3 : x1 * 3] = bytes(colour) * (x1 - x0)
            row = bytes(pixels)
        rows.append(b"\x00" + row)  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
        + _chunk(b"IEND", b"")
    )


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", "replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def pdf(rng: random.Random, title: str, lines: list[str]) -> bytes:
    """A one-page PDF 1.4 (Helvetica, WinAnsi) showing ``lines``, with a
    correct cross-reference table, so any PDF reader opens it."""
    ops = [b"BT", b"/F1 14 Tf", b"56 780 Td", _pdf_string(title) + b" Tj", b"/F1 10 Tf", b"0 -28 Td"]
    for line in lines:
        ops += [_pdf_string(line) + b" Tj", b"0 -14 Td"]
    ops.append(b"ET")
    content = b"\n".join(ops)
    flate = rng.random() < 0.6
    if flate:
        content = zlib.compress(content)
    day = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 90))
    stamp = f"D:{day:%Y%m%d}{rng.randint(7, 18):02d}0000"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d%s >>\nstream\n" % (len(content), b" /Filter /FlateDecode" if flate else b"")
        + content
        + b"\nendstream",
        b"<< /Title "
        + _pdf_string(title)
        + b" /Producer ("
        + rng.choice((b"Microsoft\xae Word f\xfcr Microsoft 365", b"LibreOffice 7.6", b"MOXIS 8.1"))
        + b") /CreationDate ("
        + stamp.encode("ascii")
        + b") >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def log_excerpt(rng: random.Random, when: dt.datetime, code: str) -> bytes:
    """A few lines of a MOXIS server log around an error."""
    levels = ("INFO", "INFO", "INFO", "WARN", "DEBUG")
    loggers = (
        "c.x.m.signature.SignService",
        "c.x.m.auth.SamlFilter",
        "c.x.m.api.EnvelopeController",
        "c.x.m.pdf.Converter",
        "c.x.m.mail.Notifier",
    )
    t = when - dt.timedelta(minutes=rng.randint(5, 90))
    lines = []
    for i in range(rng.randint(12, 40)):
        t += dt.timedelta(milliseconds=rng.randint(3, 9000))
        thread = f"http-nio-8443-exec-{rng.randint(1, 40)}"
        if i and rng.random() < 0.15:
            lines.append(
                f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d} ERROR [{thread}] "
                f"{rng.choice(loggers)} - {code}: request failed (tenant={rng.getrandbits(24):06x})"
            )
            lines.append(f"\tat com.xitrust.moxis.core.Pipeline.run(Pipeline.java:{rng.randint(80, 400)})")
        else:
            lines.append(
                f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d} {rng.choice(levels)} [{thread}] "
                f"{rng.choice(loggers)} - handled in {rng.randint(2, 900)} ms"
            )
    return ("\n".join(lines) + "\n").encode("utf-8")


def filename(rng: random.Random, kind: str, lang: str, client: str, when: dt.datetime, topic: str) -> str:
    """The name a person's client gives the file."""
    if kind == "png":
        if client in ("apple",):
            return (
                f"Bildschirmfoto {when:%Y-%m-%d} um {when:%H.%M.%S}.png"
                if lang == "de"
                else f"Screenshot {when:%Y-%m-%d} at {when:%H.%M.%S}.png"
            )
        if client == "iphone":
            return f"IMG_{rng.randint(1000, 9999)}.png"
        return rng.choice(
            (
                f"Screenshot {when:%Y-%m-%d} {when:%H%M%S}.png",
                "image001.png",
                "Fehlermeldung.png" if lang == "de" else "error-message.png",
                "Ausschnitt.PNG" if lang == "de" else "Capture.PNG",
                "Fehler bei Prüfung.png" if lang == "de" else "signing error.png",
            )
        )
    if kind == "log":
        return rng.choice(
            (
                "moxis-server.log",
                f"moxis_{when:%Y%m%d}.log",
                "Logauszug.txt" if lang == "de" else "log-excerpt.txt",
            )
        )
    names = {
        "invoice": ("Rechnung_{n}.pdf", "Lizenzübersicht {y}.pdf", "Bestellung PO-{n}.pdf")
        if lang == "de"
        else ("Invoice_{n}.pdf", "Licence overview {y}.pdf", "Purchase order {n}.pdf"),
        "certificate": ("Identifizierungsnachweis.pdf", "Zertifikatsantrag_{n}.pdf")
        if lang == "de"
        else ("Proof of identity.pdf", "Certificate request {n}.pdf"),
        "validation": ("Prüfbericht Signatur.pdf", "Validierungsergebnis_{n}.pdf")
        if lang == "de"
        else ("Validation report.pdf", "Signature check {n}.pdf"),
    }.get(
        topic,
        (
            "Vertrag_Entwurf_{n}.pdf",
            "Übergabeprotokoll_{n}.pdf",
            "Beispieldokument mit sehr langem Dateinamen für den Upload-Test Größe {n}.pdf",
        )
        if lang == "de"
        else ("Draft contract {n}.pdf", "Handover_{n}.pdf", "sample.pdf"),
    )
    return rng.choice(names).format(n=rng.randint(1000, 99999), y=when.year)
