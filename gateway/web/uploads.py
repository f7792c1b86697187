"""Files posted with a portal form (a new request, a comment; and a reply
form's text with them, ``read_reply``): read into
``ParsedAttachment``s the desk's operations store like a mail's, with
display-only names, at most ``web.max_upload_size`` bytes together.

Too many bytes is a message next to the field, not an error page: the body
is read up to a hard ceiling (``Portal.form``) so that the form's other
fields survive, the files are dropped, and the user is told the limit."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData, UploadFile

from gateway.domain import ParsedAttachment
from gateway.pipeline.parse import sanitize_filename

MAX_FILES = 10
# The browser's word for the type is kept (it decides only how the file is
# offered for download, never how it is shown); an empty one is generic.
_GENERIC = "application/octet-stream"


@dataclass
class Uploads:
    files: list[ParsedAttachment]
    error: str | None = None  # an i18n key for the field's message


async def read_uploads(form: FormData, name: str, limit: int) -> Uploads:
    """The files of field ``name``; none, with an error key, when there are
    more than ``MAX_FILES`` or more than ``limit`` bytes together. A file
    input left empty posts a nameless empty part: that is no file."""
    parts = [p for p in form.getlist(name) if isinstance(p, UploadFile) and (p.filename or p.size)]
    if len(parts) > MAX_FILES:
        return Uploads([], "error.too_many_files")
    if sum(p.size or 0 for p in parts) > limit:
        return Uploads([], "error.files_too_large")
    files: list[ParsedAttachment] = []
    total = 0
    for index, part in enumerate(parts, start=1):
        data = await part.read()
        total += len(data)
        if total > limit:  # size was not declared: counted while reading
            return Uploads([], "error.files_too_large")
        content_type = (part.content_type or _GENERIC).split(";")[0].strip().lower()[:100] or _GENERIC
        files.append(ParsedAttachment(
            filename=sanitize_filename(part.filename, index, content_type),
            content_type=content_type,
            data=data,
        ))
    return Uploads(files)


@dataclass
class Reply:
    """A posted reply (the customer's comment box, the agent's reply or
    note): its text, its files, and the messages for its fields."""

    body: str
    files: list[ParsedAttachment]
    errors: dict[str, str]


async def read_reply(form: FormData, limit: int, max_chars: int) -> Reply:
    """``body`` and ``attachments`` of a reply form: text or a file is
    needed, the text at most ``max_chars`` long, the files at most ``limit``
    bytes together."""
    raw = form.get("body")
    body = raw.replace("\r\n", "\n").strip("\n").rstrip() if isinstance(raw, str) else ""
    uploads = await read_uploads(form, "attachments", limit)
    errors: dict[str, str] = {}
    if uploads.error:
        errors["attachments"] = uploads.error
    if not body.strip() and not uploads.files:
        errors["body"] = "error.comment_empty"
    elif len(body) > max_chars:
        errors["body"] = "error.description_long"
    return Reply(body, uploads.files, errors)
