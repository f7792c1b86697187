"""HTML mail to readable plain text: blocks and line breaks kept, script
and style dropped, entities decoded, blockquotes prefixed with "> " so the
reply stripper recognises quoted history."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "center", "dd", "div", "dl", "dt", "fieldset", "figure",
        "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
        "ol", "p", "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul",
    }
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript", "xml"})
_SPACES = re.compile(r"[ \t\r\n\f\v]+")


class _HtmlToText(HTMLParser):
    """Minimal renderer: blocks and <br> become line breaks, list items get a
    bullet, script/style vanish, entities are decoded, and text inside
    <blockquote> is prefixed with "> " so reply stripping sees it as quoted."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.cur: list[str] = []
        self.quote = 0
        self.skip = 0
        self.pre = 0

    def _emit(self, force: bool = False) -> None:
        raw = "".join(self.cur)
        self.cur = []
        if not force and not raw.strip(" \t\r\n\f\v"):  # &nbsp; alone still makes a (blank) line
            return  # a block boundary with nothing in it adds no line
        line = raw if self.pre else _SPACES.sub(" ", raw).strip(" ")
        line = line.replace("\xa0", " ").rstrip()
        self.lines.append(("> " * self.quote + line).rstrip() if self.quote else line)

    def _blank(self) -> None:
        self._emit()
        if self.lines and self.lines[-1].strip(">") != "":
            self.lines.append(">" * self.quote if self.quote else "")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag == "br":
            self._emit(force=True)
        elif tag == "blockquote":
            self._emit()
            self.quote += 1
        elif tag in _BLOCK_TAGS:
            self._emit()
            if tag == "li":
                self.cur.append("- ")
            elif tag == "pre":
                self.pre += 1
        elif tag in ("td", "th"):
            self.cur.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag == "blockquote":
            self._emit()
            self.quote = max(0, self.quote - 1)
        elif tag in _BLOCK_TAGS:
            if tag == "pre":
                self._emit()
                self.pre = max(0, self.pre - 1)
            # Outlook writes one <p class=MsoNormal> per line, others one <p>
            # per paragraph: a blank line after </p> only for the latter.
            if tag == "p" and not self._outlook:
                self._blank()
            else:
                self._emit()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre and "\n" in data:
            first, *rest = data.split("\n")
            self.cur.append(first)
            for piece in rest:
                self._emit(force=True)
                self.cur.append(piece)
        else:
            self.cur.append(data)

    _outlook = False

    def convert(self, html: str) -> str:
        self._outlook = "MsoNormal" in html
        self.feed(html)
        self.close()
        self._emit()
        text = "\n".join(self.lines)
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body."""
    return _HtmlToText().convert(html)


# --------------------------------------------------------------------------
# the MIME walk
# --------------------------------------------------------------------------
