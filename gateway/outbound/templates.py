"""Find the mail templates and build the one jinja2 Environment that renders
them. The templates live at the top of the repository (``templates/mail``,
where operators look for them) and ship in the wheel as the package
``gateway._templates``; both places are tried so a source checkout, an
editable install and a plain ``pip install .`` all work."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

import gateway

TEMPLATE_SUFFIXES = ("subject", "txt", "html")


def template_dir(kind: str = "mail") -> Path:
    """The folder holding the templates of ``kind``: ``mail``
    (``<name>.<locale>.<part>.j2``) or ``web`` (the portal's pages).

    The installed package is asked first: next to an installed ``gateway``
    the parent folder is site-packages, whose ``templates`` may belong to
    anyone."""
    try:
        root = importlib.resources.files("gateway._templates") / kind
        if root.is_dir():
            # A wheel installs into a real directory; zipped installs are not
            # supported (the example config and migrations need files too).
            return Path(str(root))
    except ModuleNotFoundError:
        pass
    checkout = Path(gateway.__file__).resolve().parent.parent / "templates" / kind
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"{kind} templates not found (neither gateway._templates nor ./templates/{kind})")


def _autoescape(name: str | None) -> bool:
    # Only the HTML bodies are HTML; escaping a subject or a text body would
    # show "&amp;" to the customer.
    return bool(name and name.endswith(".html.j2"))


def nl2br(value: object) -> Markup:
    """Escape text and keep its line breaks in HTML."""
    return Markup("<br>\n").join(escape(line) for line in str(value).split("\n"))


def make_environment(directory: Path | None = None) -> jinja2.Environment:
    """The renderer's Environment: StrictUndefined, so a template naming a
    value the renderer does not provide fails loudly instead of sending a mail
    with a hole; autoescaping for ``.html.j2`` only."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory or template_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["nl2br"] = nl2br
    return env


def template_names(name: str, locale: str) -> tuple[str, str, str]:
    """File names of the subject, text and HTML template of one mail."""
    subject, txt, html = (f"{name}.{locale}.{part}.j2" for part in TEMPLATE_SUFFIXES)
    return subject, txt, html
