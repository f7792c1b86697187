"""Configuration: one TOML file plus ``GATEWAY__SECTION__KEY`` environment
overrides, validated into one frozen ``Settings`` object that is passed down
(never a global). Defaults run out of the box with SQLite under ``./var``."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.config_peek import DEFAULT_DESK_ADDRESS, DEFAULT_LOCAL_SOCKET
from gateway.domain import RequestType, normalize_address, routed_type

FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.de",
        "outlook.com",
        "hotmail.com",
        "hotmail.de",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "gmx.de",
        "gmx.at",
        "gmx.net",
        "gmx.ch",
        "web.de",
        "t-online.de",
        "freenet.de",
        "posteo.de",
        "mailbox.org",
        "protonmail.com",
        "proton.me",
        "yandex.com",
        "mail.ru",
        "aon.at",
        "chello.at",
        "bluewin.ch",
        "zoho.com",
        "fastmail.com",
    }
)


_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]\s]*):([0-9]{1,5})")


def _host_port(listen: str) -> str:
    """``host:port`` (an IPv6 host in brackets; port 0 picks a free one)."""
    match = _HOST_PORT.fullmatch(listen)
    if match is None:
        raise ValueError(f"{listen!r} is not host:port (e.g. 127.0.0.1:2525, [::1]:2525)")
    if int(match.group(2)) > 65535:
        raise ValueError(f"port out of range (0-65535) in {listen!r}")
    return listen


def _host_port_or_off(listen: str) -> str:
    return listen and _host_port(listen)


# The SMTP listener is the daemon's reason to run: never empty. The portal
# and the metrics endpoint turn off with "".
Listen = Annotated[str, AfterValidator(_host_port)]
ListenOrOff = Annotated[str, AfterValidator(_host_port_or_off)]


class ConfigError(Exception):
    """Invalid configuration; the message names the offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeskSettings(_Section):
    name: str = "XiTrust Servicedesk"
    ticket_prefix: str = Field(default="SD", pattern=r"^[A-Z][A-Z0-9]{0,9}$")
    addresses: tuple[str, ...] = (DEFAULT_DESK_ADDRESS,)
    default_locale: Literal["de", "en"] = "de"
    portal_url: str = "http://localhost:8080"
    # The desk's time zone: dates on the portal, and the local time of a
    # form's "first occurred" field.
    timezone: str = "Europe/Vienna"
    unknown_senders: Literal["create", "reject"] = "create"
    # Who hears of new tickets and customers' replies while a ticket has no
    # assignee (agents' or a team mailbox's addresses). Empty: nobody, and
    # check-config warns.
    agent_notify: tuple[str, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as Europe/Vienna)") from None
        return v

    @field_validator("addresses")
    @classmethod
    def _norm(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("the desk needs at least one address")
        return tuple(normalize_address(a) for a in v)

    @field_validator("agent_notify")
    @classmethod
    def _norm_notify(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(normalize_address(a) for a in v)
        bad = [a for a in out if "@" not in a or " " in a]
        if bad:
            raise ValueError(f"not an e-mail address: {bad[0]!r}")
        return out


class DatabaseSettings(_Section):
    url: str = "sqlite:///var/gateway.db"
    busy_timeout_ms: int = Field(default=5000, ge=0)


class StorageSettings(_Section):
    blobs: str = "var/blobs"  # a directory, or "database"
    # The blob directory is the same for every instance on the database (a
    # shared filesystem). Without it, a second instance with a directory
    # refuses to start: its files would be missing on the others.
    shared: bool = False
    # Files the gateway keeps for itself (the generated secret key).
    state_dir: str = "var"
    # Messages up to this size wait in the spool inside their database row
    # (one commit for a whole batch); larger ones go to the blob store at
    # once. 0: always the blob store.
    spool_inline_max: int = Field(default=262_144, ge=0)


class SmtpSettings(_Section):
    listen: Listen = "127.0.0.1:2525"
    lmtp: bool = False
    max_message_size: int = Field(default=26_214_400, gt=0)
    max_recipients: int = Field(default=100, gt=0)
    trusted: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    # LMTP on this Unix socket for `gateway ingest` (a Postfix pipe): the
    # command hands its message to the running daemon instead of starting
    # the pipeline itself. "" disables it. The thin client reads this key
    # without loading Settings (config_peek).
    socket: str = DEFAULT_LOCAL_SOCKET
    # Resource limits: one client (or a flood of them) cannot exhaust the
    # daemon's sockets or memory.
    max_connections: int = Field(default=100, gt=0)
    max_connections_per_ip: int = Field(default=20, gt=0)
    # RFC 5321 4.5.3.2 suggests minutes; command_timeout is the idle time
    # allowed between commands, data_timeout bounds the whole DATA phase.
    command_timeout: float = Field(default=300.0, gt=0)
    data_timeout: float = Field(default=600.0, gt=0)
    # Sessions that never end (a NOOP every few seconds passes every idle
    # timeout): commands without a message between two messages (NOOP, RSET,
    # VRFY, EXPN, HELP, ETRN; Postfix's smtpd_junk_command_limit), and the
    # length of a whole session. Over either: 421 and the connection closes.
    junk_command_limit: int = Field(default=100, gt=0)
    max_session_seconds: float = Field(default=600.0, gt=0)


class ImapSettings(_Section):
    host: str
    port: int = 993
    tls: Literal["tls", "starttls", "none"] = "tls"
    username: str
    password_file: str
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    poll_seconds: int = Field(default=60, gt=0)
    idle: bool = True
    recipient: str = "servicedesk@xitrust.com"
    trusted: bool = False
    # Mail larger than smtp.max_message_size is left in ``folder`` (and
    # logged) unless this names a folder to move it to.
    oversize_folder: str | None = None
    # PEM file with the CA that signed the server's certificate (an internal
    # CA or a self-signed server); default: the system's CAs.
    ca_file: str | None = None

    @property
    def key(self) -> str:
        """The name the mailbox's cursor and lease are stored under."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"[:500]


class OutboundSettings(_Section):
    transport: Literal["maildir", "smtp"] = "maildir"
    maildir: str = "var/sent"
    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password_file: str | None = None
    from_: str = Field(default="XiTrust Servicedesk <servicedesk@xitrust.com>", alias="from")
    # Retry policy of the outbox sender: exponential backoff from
    # retry_base_seconds, capped at retry_max_seconds per wait; a mail is
    # given up ("failed") after max_retry_hours or max_attempts attempts.
    max_retry_hours: int = Field(default=48, gt=0)
    max_attempts: int = Field(default=30, gt=0)
    retry_base_seconds: int = Field(default=60, gt=0)
    retry_max_seconds: int = Field(default=3600, gt=0)
    timeout: float = Field(default=60.0, gt=0)  # seconds per SMTP command
    validate_certs: bool = True
    poll_seconds: float = Field(default=5.0, gt=0)  # the daemon's sender loop
    # A claimed row is leased this long, and the lease is renewed every
    # third of it while the sender works on its batch: a sender (or a whole
    # instance) that dies gives its rows back within this time, however
    # slow the relay of a live one is.
    lease_seconds: int = Field(default=60, ge=3)
    batch_size: int = Field(default=50, gt=0)
    # An agent's public reply carries its files as attachments up to this
    # many bytes together; the rest (or all, with 0) as links to the portal.
    max_attachments_size: int = Field(default=10_485_760, ge=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SecuritySettings(_Section):
    secret_key: str | None = None
    agent_domains: tuple[str, ...] = ("xitrust.com",)
    trusted_authserv_id: str = ""
    max_auto_mails_per_hour: int = Field(default=10, ge=0)
    # Backscatter: automatic mail to unverified addresses, desk-wide (any
    # stranger's From can be forged). Over the cap it waits, in order, and
    # is dropped after unverified_mail_max_wait_hours. 0: no desk-wide cap.
    max_unverified_mails_per_hour: int = Field(default=100, ge=0)
    unverified_mail_max_wait_hours: int = Field(default=24, gt=0)
    signup_token_hours: int = Field(default=48, gt=0)  # lifetime of a signup link
    reset_token_hours: int = Field(default=2, gt=0)  # lifetime of a password-reset link
    # Sign-in, signup and reset requests per hour, per address and per client.
    max_login_attempts_per_hour: int = Field(default=10, gt=0)
    max_client_requests_per_hour: int = Field(default=60, gt=0)


class RetentionSettings(_Section):
    """How long the desk keeps mail bytes it no longer needs (``gateway.retention``).
    Only the bytes go: the mail log's and the outbox's rows (sender, subject,
    Message-ID, what became of the mail) and the tickets stay. 0: keep forever."""

    # Raw mail of processed messages (done, ignored), counted from their processing.
    raw_mail_days: int = Field(default=90, ge=0)
    # Quarantined raw mail waits for an operator to look at and reprocess it
    # (SPEC §3: its bytes can be reprocessed), so by default it is kept until
    # then; reprocessed, it follows raw_mail_days.
    quarantine_days: int = Field(default=0, ge=0)
    # Sent (or finally failed or bounced) mail: what it was rendered from
    # (the outbox row's data), and its copy in outbound.maildir when that is the
    # transport. A month covers bounces and questions about a mail; its text
    # lives on in the ticket.
    outbox_days: int = Field(default=30, ge=0)


class LimitsSettings(_Section):
    """Budgets that bound the work one hostile message can cause."""

    max_parts: int = Field(default=500, gt=0)
    max_depth: int = Field(default=30, gt=0)
    max_attachment_size: int = Field(default=26_214_400, gt=0)
    max_text_chars: int = Field(default=1_000_000, gt=0)
    # A Content-Type or Content-Disposition field (folded lines included):
    # the stdlib's parameter parser is quadratic in it (0.5 s for 256 KB).
    max_mime_header_bytes: int = Field(default=8192, gt=0)


class WorkerSettings(_Section):
    parse_processes: int = Field(default=0, ge=0)  # 0: one per CPU core
    batch_size: int = Field(default=50, gt=0)  # messages per transaction
    claim_size: int = Field(default=500, gt=0)  # spool rows claimed at once
    claim_timeout_seconds: int = Field(default=600, gt=0)




class WebSettings(_Section):
    """The portal (SPEC §6): ``gateway serve`` runs it in worker processes of
    its own; ``listen = ""`` leaves it to a separate ``gateway web``."""

    listen: ListenOrOff = "127.0.0.1:8080"
    processes: int = Field(default=1, gt=0)  # uvicorn worker processes
    # X-Forwarded-For / -Proto are believed only from these addresses.
    trusted_proxies: tuple[str, ...] = ()
    max_upload_size: int = Field(default=26_214_400, gt=0)  # bytes per request
    session_hours: int = Field(default=12, gt=0)
    color: str = Field(default="#004b87", pattern=r"^#[0-9a-fA-F]{6}$")  # the desk's colour


class FieldOption(_Section):
    """One choice of a list field: its stored value and its labels (empty:
    the value itself)."""

    value: str = Field(pattern=r"^[a-z0-9][a-z0-9_]{0,39}$")
    de: str = ""
    en: str = ""


# The built-in labels of the default options (de, en); an option configured
# as a plain value takes these when it is one of them.
KNOWN_OPTION_LABELS: dict[str, tuple[str, str]] = {
    "chrome": ("Chrome", "Chrome"),
    "firefox": ("Firefox", "Firefox"),
    "edge": ("Edge", "Edge"),
    "safari": ("Safari", "Safari"),
    "other": ("Andere", "Other"),
    "cloud": ("MOXIS Cloud", "MOXIS Cloud"),
    "on_premises": ("On-Premises", "On premises"),
    "private_cloud": ("Private Cloud", "Private cloud"),
    "signing": ("Signieren", "Signing"),
    "workflow": ("Workflow", "Workflow"),
    "user_management": ("Benutzerverwaltung", "User management"),
    "integrations": ("Integrationen", "Integrations"),
    "mobile": ("Mobil", "Mobile"),
}


def _option(value: str) -> dict[str, str]:
    de, en = KNOWN_OPTION_LABELS.get(value, (value, value))
    return {"value": value, "de": de, "en": en}


def _options(*values: str) -> tuple[FieldOption, ...]:
    return tuple(FieldOption(**_option(v)) for v in values)


class FieldsSettings(_Section):
    """The choices of the technical-support form (SPEC §2 "Fields"). Each is
    a list of values (``"chrome"``) or of tables with labels
    (``{ value = "ie", de = "Internet Explorer", en = "Internet Explorer" }``).
    Values read from mail are matched to these where they can be."""

    browser: tuple[FieldOption, ...] = _options("chrome", "firefox", "edge", "safari", "other")
    hosting: tuple[FieldOption, ...] = _options("cloud", "on_premises", "private_cloud")
    components: tuple[FieldOption, ...] = _options(
        "signing", "workflow", "user_management", "integrations", "mobile", "other"
    )

    @field_validator("browser", "hosting", "components", mode="before")
    @classmethod
    def _plain_values(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [_option(o) if isinstance(o, str) else o for o in v]
        return v

    @field_validator("browser", "hosting", "components")
    @classmethod
    def _distinct(cls, v: tuple[FieldOption, ...]) -> tuple[FieldOption, ...]:
        if not v:
            raise ValueError("needs at least one option")
        values = [o.value for o in v]
        if len(set(values)) != len(values):
            raise ValueError("an option is listed twice")
        return v


# -- operations (logging, metrics) ---------------------------------------


class InstanceSettings(_Section):
    """This daemon among several on one PostgreSQL (``gateway status`` lists
    them)."""

    # Default: "<host>:<pid>". A fixed name per host keeps the registry tidy
    # across restarts; two running daemons must never share one.
    name: str = Field(default="", max_length=200)
    # How long an instance's leases (an IMAP mailbox's poller) outlive its
    # last heartbeat; the heartbeat comes every third of it. Another
    # instance takes a dead one's mailbox over within this plus one
    # poll_seconds.
    lease_seconds: float = Field(default=30.0, ge=3.0)


class LoggingSettings(_Section):
    """Log lines go to stderr (journald under systemd); ``$GATEWAY_LOG_LEVEL``
    overrides ``level`` for one run."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["human", "json"] = "human"


class MetricsSettings(_Section):
    """Prometheus endpoint of ``gateway serve``; ``listen = ""`` disables it.
    It has no authentication: keep it on loopback (or behind a proxy)."""

    listen: ListenOrOff = "127.0.0.1:9125"


# -- end operations -------------------------------------------------------


class Settings(BaseSettings):
    """The whole effective configuration."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY__",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    desk: DeskSettings = DeskSettings()
    routing: dict[str, RequestType] = Field(
        default_factory=lambda: {"servicedesk@xitrust.com": RequestType.other}
    )
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    smtp: SmtpSettings = SmtpSettings()
    imap: list[ImapSettings] = Field(default_factory=list)
    outbound: OutboundSettings = OutboundSettings()
    security: SecuritySettings = SecuritySettings()
    retention: RetentionSettings = RetentionSettings()
    limits: LimitsSettings = LimitsSettings()
    workers: WorkerSettings = WorkerSettings()
    instance: InstanceSettings = InstanceSettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()
    web: WebSettings = WebSettings()
    fields: FieldsSettings = FieldsSettings()

    @field_validator("routing")
    @classmethod
    def _norm_routing(cls, v: dict[str, RequestType]) -> dict[str, RequestType]:
        return {normalize_address(k): t for k, t in v.items()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file (the file arrives as init kwargs).
        return (env_settings, init_settings)

    # -- derived values -------------------------------------------------
    def desk_addresses(self) -> frozenset[str]:
        """Every address that belongs to the desk itself (loop protection)."""
        return frozenset(self.desk.addresses) | frozenset(self.routing)

    def request_type_for(self, recipient: str | None) -> RequestType:
        return (routed_type(self.routing, recipient) if recipient else None) or RequestType.other

    def warnings(self) -> list[str]:
        """Settings that are valid but probably not what the operator
        wants (``check-config`` prints them)."""
        found = []
        if not self.desk.agent_notify:
            found.append("[desk] agent_notify is empty: nobody is told of new tickets and customers' "
                         "replies until a ticket has an assignee")
        trust = (bool(self.security.trusted_authserv_id) or self.smtp.trusted
                 or any(m.trusted for m in self.imap))
        if self.security.agent_domains and not trust:
            found.append("[security] agent_domains is set but nothing is trusted to authenticate agents' "
                         "mail (security.trusted_authserv_id, or a trusted [smtp] listener or [[imap]] "
                         "mailbox): agents' mail replies are not taken as agents'")
        if (self.database.url.startswith("postgresql") and self.storage.blobs != "database"
                and not self.storage.shared):
            found.append("[storage] blobs is a directory of this host: fine for one gateway; with several "
                         "on this database set blobs = \"database\" (or storage.shared = true on a shared "
                         "filesystem), or the second refuses to start")
        return found

    def masked(self) -> dict[str, Any]:
        """The effective config as a dict with secrets masked."""
        data = self.model_dump(mode="json", by_alias=True)
        sec = data.get("security", {})
        if sec.get("secret_key"):
            sec["secret_key"] = "********"
        db = data.get("database", {})
        db["url"] = _mask_url(db.get("url", ""))
        return data


def _mask_url(url: str) -> str:
    """Hide the password in ``scheme://user:password@host/...``."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cred, host = rest.rsplit("@", 1)
    if ":" in cred:
        cred = cred.split(":", 1)[0] + ":********"
    return f"{scheme}://{cred}@{host}"


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the TOML file (``path``, else ``$GATEWAY_CONFIG``, else none) and
    the environment. Raises ConfigError with one line naming the key."""
    path = path or os.environ.get("GATEWAY_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
    _check_environment(os.environ)
    try:
        return Settings(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid config key {key}: {message}") from None


def _check_environment(environ: Mapping[str, str]) -> None:
    """An unknown section in a ``GATEWAY__`` variable is an error, as an
    unknown key in the file is: pydantic-settings reads only the variables
    named after a section, so ``GATEWAY__SMPT__LISTEN`` would otherwise be
    ignored without a word. (Unknown keys inside a known section already
    fail validation.)"""
    sections = set(Settings.model_fields)
    for name in environ:
        if not name.upper().startswith("GATEWAY__"):
            continue
        section = name[len("GATEWAY__"):].split("__", 1)[0].lower()
        if section not in sections:
            raise ConfigError(
                f"environment variable {name}: unknown section {section!r} "
                f"(sections: {', '.join(sorted(sections))})"
            )
