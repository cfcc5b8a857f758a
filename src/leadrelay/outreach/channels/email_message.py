"""The RFC 5322 message every e-mail channel sends: built once, byte for byte, by the stdlib.

Headers: From, To, optional Reply-To, Subject, Date, Message-ID `<uuid@sending-domain>`,
`List-Unsubscribe: <https://…>, <mailto:…>` and `List-Unsubscribe-Post:
List-Unsubscribe=One-Click` (RFC 8058), then a text/plain UTF-8 body: 7bit when it is plain ASCII
in lines of at most 998 characters, else quoted-printable — never 8bit, which a relay may convert
(and a conversion breaks the DKIM body hash).
With a `DkimKey` the message is signed with dkimpy, relaxed/relaxed, covering those headers.

Header fields are refused (ValueError) when they hold line breaks or other control characters:
no text may escape into a header line of its own.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import dkim
import idna
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from leadrelay.outreach.channels.base import OutboundEmail
from leadrelay.outreach.channels.http_api import text_body

# `refold_source="none"` keeps the values stored with `set_raw` as written: the stdlib would
# otherwise turn a long List-Unsubscribe or Message-ID into RFC 2047 encoded words, which no
# mailbox provider reads as URIs. Every other header is folded and encoded by the policy.
_POLICY = policy.SMTP.clone(cte_type="7bit", refold_source="none")
# RFC 6531/6532: a non-ASCII local part needs SMTPUTF8 and UTF-8 header fields.
_POLICY_UTF8 = policy.SMTPUTF8.clone(cte_type="7bit", refold_source="none")

ONE_CLICK = "List-Unsubscribe=One-Click"
# Each URI sits on a header line of its own, and RFC 5322 caps a line at 998 characters.
MAX_URI_LENGTH = 900
# Signed once as they appear, then once more as absent: a header added later (a second From,
# a replaced List-Unsubscribe) breaks the signature instead of riding on it.
DKIM_SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
)
# Written by this module only; `extra_headers` may not set or duplicate them.
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        *DKIM_SIGNED_HEADERS,
        "Cc",
        "Bcc",
        "Sender",
        "Return-Path",
        "Received",
        "DKIM-Signature",
        "Content-Disposition",
    )
)

# C0 and C1 controls (tab allowed), DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# RFC 5322 field name: printable ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# RFC 2369: the URI sits between angle brackets, a comma separates URIs; keep both out.
_UNSUBSCRIBE_URL = re.compile(r"https?://[!#-+\--;=?-~]+", re.IGNORECASE)
_UNSUBSCRIBE_MAILTO = re.compile(r"mailto:[!#-+\--;=?-~]+", re.IGNORECASE)
_UTF8_LOCAL_PART = re.compile(r"[^\s\"(),.:;<>@\[\\\]]+(\.[^\s\"(),.:;<>@\[\\\]]+)*")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN_LABELS = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


@dataclass(frozen=True, slots=True)
class DkimKey:
    """An RSA signing key published at `<selector>._domainkey.<domain>`.

    `private_key` is PEM, PKCS#1 or PKCS#8, unencrypted, at least 1,024 bits (2,048 advised);
    it is parsed here so that a bad key stops start-up instead of the first send.
    """

    domain: str
    selector: str
    private_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        domain = _ascii_domain("DKIM domain", self.domain)
        if not _DOMAIN_LABELS.fullmatch(self.selector.lower()):
            raise ValueError("DKIM selector must be DNS labels")
        try:
            key = serialization.load_pem_private_key(self.private_key, password=None)
        except (ValueError, TypeError) as error:
            raise ValueError(f"DKIM private key is not an unencrypted PEM key: {error}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("DKIM private key must be RSA")
        if key.key_size < 1024:
            raise ValueError("DKIM private key must have at least 1024 bits")
        # dkimpy reads the traditional PKCS#1 form with LF line ends only.
        pkcs1 = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "private_key", pkcs1)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    raw: bytes  # CRLF line ends, DKIM-Signature first when signed
    envelope_from: str
    envelope_to: str
    message_id: str  # the header value, `<uuid@domain>`
    smtputf8: bool  # an address has a non-ASCII local part: the relay must offer SMTPUTF8


def check_header_text(field: str, value: str) -> None:
    """Refuses (ValueError) a header value that holds CR, LF or another control character."""
    if _CONTROL.search(value):
        raise ValueError(f"{field} may not contain line breaks or control characters")


def render_email(
    message: OutboundEmail,
    *,
    now: datetime,
    dkim_key: DkimKey | None = None,
    message_id_domain: str | None = None,
) -> RenderedEmail:
    """The bytes to send for `message`, dated `now` (aware).

    The Message-ID domain is `message_id_domain`, else the From address's domain. Raises
    ValueError for header injection, unparseable addresses, an unsubscribe URL that is not
    http(s) or a mailto that is not `mailto:`, and extra headers that name a reserved field.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    rendered = _render_plain(message, now=now, message_id_domain=message_id_domain)
    if rendered is None:
        rendered = _render_with_stdlib(message, now=now, message_id_domain=message_id_domain)
    if dkim_key is not None:
        rendered = dataclasses.replace(rendered, raw=sign_dkim(rendered.raw, dkim_key))
    return rendered


def _render_with_stdlib(
    message: OutboundEmail, *, now: datetime, message_id_domain: str | None
) -> RenderedEmail:
    """Every message, through the stdlib's header objects (the reference `_render_plain` is held
    to); unsigned."""
    check_header_text("from_name", message.from_name)
    check_header_text("subject", message.subject)
    sender, sender_utf8 = _address("from_address", message.from_address, message.from_name)
    recipient, recipient_utf8 = _address("to_address", message.to_address)
    reply_to = None
    reply_to_utf8 = False
    if message.reply_to is not None:
        reply_to, reply_to_utf8 = _address("reply_to", message.reply_to)
    smtputf8 = sender_utf8 or recipient_utf8 or reply_to_utf8

    if not _UNSUBSCRIBE_URL.fullmatch(message.unsubscribe_url):
        raise ValueError("unsubscribe_url must be an http(s) URL without spaces, <, > or commas")
    if len(message.unsubscribe_url) > MAX_URI_LENGTH:
        raise ValueError(f"unsubscribe_url is longer than {MAX_URI_LENGTH} characters")
    unsubscribe = [f"<{message.unsubscribe_url}>"]
    if message.unsubscribe_mailto is not None:
        if not _UNSUBSCRIBE_MAILTO.fullmatch(message.unsubscribe_mailto):
            raise ValueError("unsubscribe_mailto must be a mailto: URI without spaces, <, >, ,")
        if len(message.unsubscribe_mailto) > MAX_URI_LENGTH:
            raise ValueError(f"unsubscribe_mailto is longer than {MAX_URI_LENGTH} characters")
        unsubscribe.append(f"<{message.unsubscribe_mailto}>")

    id_domain = _ascii_domain("message_id_domain", message_id_domain or sender.domain)
    message_id = f"<{message.message_id}@{id_domain}>"

    mime = EmailMessage(policy=_POLICY_UTF8 if smtputf8 else _POLICY)
    mime["From"] = sender
    mime["To"] = recipient
    if reply_to is not None:
        mime["Reply-To"] = reply_to
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(now.astimezone(UTC))
    mime.set_raw("Message-ID", message_id)
    # One URI per line: the header stays readable and each line short, without encoded words.
    mime.set_raw("List-Unsubscribe", ",\r\n ".join(unsubscribe))
    mime.set_raw("List-Unsubscribe-Post", ONE_CLICK)
    for name, value in message.extra_headers.items():
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"extra header name {name!r} is not a valid field name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"extra header {name!r} is written by the channel itself")
        check_header_text(f"extra header {name}", value)
        mime[name] = value
    body = text_body(message)
    mime.set_content(body, charset="utf-8", cte=_transfer_encoding(body))
    return RenderedEmail(
        raw=mime.as_bytes(),
        envelope_from=sender.addr_spec,
        envelope_to=recipient.addr_spec,
        message_id=message_id,
        smtputf8=smtputf8,
    )


# The common message, written directly: ASCII throughout, addresses and a display name that
# need no quoting, header lines short enough not to fold, no Reply-To, mailto or extra header.
# The stdlib parses and refolds every field it is given (about a millisecond a message, most of
# what sending costs); for these inputs it writes exactly these bytes, which the tests check on
# many messages. Anything else goes through the stdlib.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9'-]+( [A-Za-z0-9'-]+)*")
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_%+-]+(\.[A-Za-z0-9_%+-]+)*")
# LDH labels without "--" (which IDNA reserves): their A-label is their lower-case spelling.
_PLAIN_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN_DOMAIN = re.compile(rf"(?!.*--)(?=.{{1,253}}$){_PLAIN_LABEL}(\.{_PLAIN_LABEL})+")
_PLAIN_SUBJECT = re.compile(r"[!-~]+( [!-~]+)*")  # printable, single spaces
_FOLD_AFTER = 78  # policy.SMTP.max_line_length: longer header lines are folded
_PLAIN_TAIL = (
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"MIME-Version: 1.0\r\n"
    b"\r\n"
)


def _plain_address(value: str) -> tuple[str, str] | None:
    local, _, domain = value.rpartition("@")
    domain = domain.lower()
    if _PLAIN_LOCAL.fullmatch(local) and _PLAIN_DOMAIN.fullmatch(domain):
        return local, domain
    return None


def _render_plain(
    message: OutboundEmail, *, now: datetime, message_id_domain: str | None
) -> RenderedEmail | None:
    """The common message's bytes, or None when it is not one (see above); unsigned."""
    if message.reply_to is not None or message.unsubscribe_mailto is not None:
        return None
    if message.extra_headers or "=?" in message.subject:  # "=?": read as an encoded word
        return None
    sender, recipient = _plain_address(message.from_address), _plain_address(message.to_address)
    if sender is None or recipient is None:
        return None
    id_domain = (message_id_domain or sender[1]).lower()
    if not _PLAIN_DOMAIN.fullmatch(id_domain):
        return None
    if message.from_name and not _PLAIN_NAME.fullmatch(message.from_name):
        return None
    if not _PLAIN_SUBJECT.fullmatch(message.subject):
        return None
    url = message.unsubscribe_url
    if not _UNSUBSCRIBE_URL.fullmatch(url) or len(url) > MAX_URI_LENGTH:
        return None  # refused by the stdlib path, with the reason
    body = text_body(message)
    if _transfer_encoding(body) != "7bit":
        return None
    envelope_from, envelope_to = "@".join(sender), "@".join(recipient)
    from_line = f"From: {envelope_from}"
    if message.from_name:
        from_line = f"From: {message.from_name} <{envelope_from}>"
    to_line, subject_line = f"To: {envelope_to}", f"Subject: {message.subject}"
    if max(len(from_line), len(to_line), len(subject_line)) > _FOLD_AFTER:
        return None
    message_id = f"<{message.message_id}@{id_domain}>"
    head = (
        f"{from_line}\r\n{to_line}\r\n{subject_line}\r\n"
        f"Date: {format_datetime(now.astimezone(UTC))}\r\n"
        f"Message-ID: {message_id}\r\n"
        f"List-Unsubscribe: <{url}>\r\n"
    )
    lines = body.encode("ascii").splitlines()  # bytes: only CR, LF and CRLF end lines
    raw = head.encode("ascii") + _PLAIN_TAIL + b"\r\n".join(lines) + b"\r\n"
    return RenderedEmail(raw, envelope_from, envelope_to, message_id, smtputf8=False)


def sign_dkim(raw: bytes, key: DkimKey) -> bytes:
    """`raw` with a DKIM-Signature header (rsa-sha256, relaxed/relaxed) in front."""
    lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    present = {line.split(b":", 1)[0].strip().lower() for line in lines if line[:1] not in b" \t"}
    names = [name.lower().encode() for name in DKIM_SIGNED_HEADERS]
    include = [name for name in names if name in present] + names
    signature: bytes = dkim.sign(
        raw,
        key.selector.encode("ascii"),
        key.domain.encode("ascii"),
        key.private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
        linesep=b"\r\n",
    )
    return signature + raw


def _transfer_encoding(body: str) -> str:
    """7bit for plain ASCII lines within RFC 5322's 998 characters (a long unsubscribe URL stays
    readable and whole), else quoted-printable: never 8bit, which relays may rewrite."""
    lines = re.split(r"\r\n|\r|\n", body)
    if body.isascii() and "\x00" not in body and all(len(line) <= 998 for line in lines):
        return "7bit"
    return "quoted-printable"


def _ascii_domain(field: str, domain: str) -> str:
    """The A-label form of a domain (IDNA 2008 with UTS #46 mapping), lower case."""
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        raise ValueError(f"{field}: {domain!r} is not a valid domain") from None
    if not _DOMAIN_LABELS.fullmatch(ascii_domain) or "." not in ascii_domain:
        raise ValueError(f"{field}: {domain!r} is not a valid domain")
    return ascii_domain


def _address(field: str, value: str, display_name: str = "") -> tuple[Address, bool]:
    """The header address for `value` (domain in A-labels) and whether it needs SMTPUTF8."""
    check_header_text(field, value)
    local, _, domain = value.strip().rpartition("@")
    if not local or not domain:
        raise ValueError(f"{field}: {value!r} is not an e-mail address")
    domain = _ascii_domain(field, domain)
    if not local.isascii():
        # The stdlib parser refuses UTF-8 local parts (RFC 6532); accept dot-atoms of
        # non-special characters only.
        if not _UTF8_LOCAL_PART.fullmatch(local):
            raise ValueError(f"{field}: {value!r} is not an e-mail address")
        return Address(display_name=display_name, username=local, domain=domain), True
    try:
        address = Address(display_name=display_name, addr_spec=f"{local}@{domain}")
    except (ValueError, HeaderParseError):
        raise ValueError(f"{field}: {value!r} is not an e-mail address") from None
    return address, False
