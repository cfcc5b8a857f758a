"""The message every e-mail channel sends: headers byte for byte, the one-click unsubscribe pair,
the body with its own link, DKIM that a verifier accepts, and no way to inject a header."""

from __future__ import annotations

import base64
import email
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from leadrelay.outreach.channels.base import OutboundEmail
from leadrelay.outreach.channels.dryrun import DRY_RUN_DETAIL, DryRunChannel
from leadrelay.outreach.channels.email_message import (
    DkimKey,
    _render_plain,
    _render_with_stdlib,
    render_email,
)

NOW = datetime(2025, 3, 4, 9, 30, 15, tzinfo=UTC)
MESSAGE_ID = uuid.UUID("3b2f0a52-8c1d-4e7a-9b6f-5d4c3b2a1f0e")
UNSUBSCRIBE_URL = (
    "https://leadrelay.example.com/unsubscribe/"
    "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIz"
)
UNSUBSCRIBE_MAILTO = "mailto:unsubscribe@mail.navylabs.example?subject=unsubscribe-3b2f0a52"
BODY = "Hi Grace,\n\nWould a short call next week help?\n\nUnsubscribe: {{unsubscribe_url}}\n"


def outbound(**overrides: object) -> OutboundEmail:
    fields: dict[str, object] = {
        "message_id": MESSAGE_ID,
        "from_address": "ada@mail.navylabs.example",
        "from_name": "Ada Lovelace",
        "to_address": "grace@example.org",
        "subject": "Quick question about Navy Labs",
        "text_body": BODY,
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "unsubscribe_mailto": UNSUBSCRIBE_MAILTO,
    }
    fields.update(overrides)
    return OutboundEmail(**fields)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def header_block(raw: bytes) -> str:
    return raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")


class TestHeaders:
    def test_exact_header_block(self) -> None:
        raw = render_email(outbound(), now=NOW).raw
        assert header_block(raw).split("\r\n") == [
            "From: Ada Lovelace <ada@mail.navylabs.example>",
            "To: grace@example.org",
            "Subject: Quick question about Navy Labs",
            "Date: Tue, 04 Mar 2025 09:30:15 +0000",
            "Message-ID: <3b2f0a52-8c1d-4e7a-9b6f-5d4c3b2a1f0e@mail.navylabs.example>",
            f"List-Unsubscribe: <{UNSUBSCRIBE_URL}>,",
            f" <{UNSUBSCRIBE_MAILTO}>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            'Content-Type: text/plain; charset="utf-8"',
            "Content-Transfer-Encoding: 7bit",
            "MIME-Version: 1.0",
        ]

    def test_every_line_ends_with_crlf(self) -> None:
        raw = render_email(outbound(), now=NOW).raw
        assert b"\n" not in raw.replace(b"\r\n", b"")
        assert raw.endswith(b"\r\n")

    def test_list_unsubscribe_parses_as_two_uris_even_when_long(self) -> None:
        # The stdlib would fold a long value into RFC 2047 encoded words; no provider reads those.
        long_url = UNSUBSCRIBE_URL + "x" * 200
        raw = render_email(outbound(unsubscribe_url=long_url), now=NOW).raw
        assert b"=?" not in raw.split(b"\r\n\r\n", 1)[0].split(b"List-Unsubscribe:")[1]
        value = parse(raw)["List-Unsubscribe"]
        assert re.findall(r"<([^>]+)>", str(value)) == [long_url, UNSUBSCRIBE_MAILTO]

    def test_without_mailto_only_the_https_uri(self) -> None:
        raw = render_email(outbound(unsubscribe_mailto=None), now=NOW).raw
        assert f"List-Unsubscribe: <{UNSUBSCRIBE_URL}>\r\n" in header_block(raw) + "\r\n"
        assert parse(raw)["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    def test_message_id_domain_can_be_set(self) -> None:
        rendered = render_email(outbound(), now=NOW, message_id_domain="relay.example.net")
        assert rendered.message_id == f"<{MESSAGE_ID}@relay.example.net>"
        assert parse(rendered.raw)["Message-ID"] == rendered.message_id

    def test_date_is_written_in_utc(self) -> None:
        paris = NOW.astimezone(timezone(timedelta(hours=1)))
        raw = render_email(outbound(), now=paris).raw
        assert "Date: Tue, 04 Mar 2025 09:30:15 +0000" in header_block(raw)

    def test_naive_now_is_refused(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            render_email(outbound(), now=NOW.replace(tzinfo=None))

    def test_utf8_subject_and_name_are_encoded_words(self) -> None:
        subject = "Un café à Zürich — 10 minutes ?"
        raw = render_email(outbound(subject=subject, from_name="Zoë Ærø, Inc"), now=NOW).raw
        block = header_block(raw)
        assert block.isascii()
        assert re.search(r"^Subject: Un =\?utf-8\?", block, re.MULTILINE)
        parsed = parse(raw)
        assert parsed["Subject"] == subject
        assert parsed["From"].addresses[0].display_name == "Zoë Ærø, Inc"
        assert parsed["From"].addresses[0].addr_spec == "ada@mail.navylabs.example"

    def test_reply_to_and_extra_headers(self) -> None:
        message = outbound(
            reply_to="replies@navylabs.example",
            extra_headers={"X-LeadRelay-Campaign": "spring", "Feedback-ID": "c1:t1:leadrelay"},
        )
        parsed = parse(render_email(message, now=NOW).raw)
        assert parsed["Reply-To"] == "replies@navylabs.example"
        assert parsed["X-LeadRelay-Campaign"] == "spring"
        assert parsed["Feedback-ID"] == "c1:t1:leadrelay"

    @pytest.mark.parametrize("name", ["From", "bcc", "Subject", "List-Unsubscribe", "Message-Id"])
    def test_extra_headers_cannot_replace_ours(self, name: str) -> None:
        with pytest.raises(ValueError, match="written by the channel"):
            render_email(outbound(extra_headers={name: "x"}), now=NOW)

    @pytest.mark.parametrize("name", ["X Bad", "X:Bad", "", "X-É"])
    def test_extra_header_names_must_be_field_names(self, name: str) -> None:
        with pytest.raises(ValueError, match="field name"):
            render_email(outbound(extra_headers={name: "x"}), now=NOW)

    def test_idn_domain_is_sent_as_a_labels(self) -> None:
        rendered = render_email(outbound(to_address="grace@bücher.example"), now=NOW)
        assert rendered.envelope_to == "grace@xn--bcher-kva.example"
        assert "To: grace@xn--bcher-kva.example" in header_block(rendered.raw)
        assert rendered.smtputf8 is False

    def test_utf8_local_part_needs_smtputf8(self) -> None:
        rendered = render_email(outbound(to_address="grâce@example.org"), now=NOW)
        assert rendered.smtputf8 is True
        assert rendered.envelope_to == "grâce@example.org"
        assert "To: grâce@example.org" in header_block(rendered.raw)

    @pytest.mark.parametrize(
        "address",
        ["grace", "@example.org", "grace@", "gr ace@example.org", "grace@exa mple.org", "a@b@"],
    )
    def test_bad_addresses_are_refused(self, address: str) -> None:
        with pytest.raises(ValueError, match="to_address"):
            render_email(outbound(to_address=address), now=NOW)

    @pytest.mark.parametrize(
        "url",
        [
            "javascript:alert(1)",
            "ftp://example.org/u",
            "https://example.org/u?a=1,2",
            "https://example.org/u>, <https://evil.example/",
            "https://example.org/ u",
            "https://example.org/é",
        ],
    )
    def test_unsubscribe_url_must_be_a_plain_http_uri(self, url: str) -> None:
        with pytest.raises(ValueError, match="unsubscribe_url"):
            render_email(outbound(unsubscribe_url=url), now=NOW)

    def test_unsubscribe_uris_must_fit_a_header_line(self) -> None:
        longest = UNSUBSCRIBE_URL + "x" * (900 - len(UNSUBSCRIBE_URL))
        raw = render_email(outbound(unsubscribe_url=longest), now=NOW).raw
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        with pytest.raises(ValueError, match="longer than 900"):
            render_email(outbound(unsubscribe_url=longest + "x"), now=NOW)
        with pytest.raises(ValueError, match="longer than 900"):
            render_email(outbound(unsubscribe_mailto="mailto:" + "u" * 900), now=NOW)

    def test_unsubscribe_mailto_must_be_mailto(self) -> None:
        with pytest.raises(ValueError, match="unsubscribe_mailto"):
            render_email(outbound(unsubscribe_mailto="https://example.org/u"), now=NOW)


class TestBody:
    def test_placeholder_replaced_by_the_messages_own_link(self) -> None:
        raw = render_email(outbound(), now=NOW).raw
        body = raw.split(b"\r\n\r\n", 1)[1]
        assert body == (
            b"Hi Grace,\r\n\r\nWould a short call next week help?\r\n\r\n"
            b"Unsubscribe: " + UNSUBSCRIBE_URL.encode() + b"\r\n"
        )
        assert b"{{" not in raw

    def test_utf8_body_is_quoted_printable(self) -> None:
        text = "Bonjour Zoë,\n\nUn café la semaine prochaine ?\n\n{{unsubscribe_url}}\n"
        raw = render_email(outbound(text_body=text), now=NOW).raw
        assert raw.isascii()
        parsed = parse(raw)
        assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
        assert parsed.get_content_charset() == "utf-8"
        expected = text.replace("{{unsubscribe_url}}", UNSUBSCRIBE_URL)
        assert parsed.get_content().replace("\r\n", "\n") == expected
        assert b"Zo=C3=AB" in raw

    def test_long_ascii_lines_stay_7bit_up_to_998(self) -> None:
        line = "x" * 998
        raw = render_email(outbound(text_body=line + "\n"), now=NOW).raw
        assert parse(raw)["Content-Transfer-Encoding"] == "7bit"
        assert raw.endswith(b"\r\n\r\n" + line.encode() + b"\r\n")
        raw = render_email(outbound(text_body=line + "x\n"), now=NOW).raw
        assert parse(raw)["Content-Transfer-Encoding"] == "quoted-printable"
        assert max(len(row) for row in raw.split(b"\r\n")) <= 998


class TestHeaderInjection:
    @pytest.mark.parametrize(
        "subject",
        [
            "Hello\r\nBcc: victim@example.org",
            "Hello\nBcc: victim@example.org",
            "Hello\rBcc: victim@example.org",
            "Hello\r\n\r\nInjected body",
            "Hello\u2028Bcc: victim@example.org",
            "Hello\x85Bcc: victim@example.org",
            "Hello\x00",
        ],
    )
    def test_line_breaks_in_subject_are_refused(self, subject: str) -> None:
        with pytest.raises(ValueError, match="subject may not contain line breaks"):
            render_email(outbound(subject=subject), now=NOW)

    @pytest.mark.parametrize("name", ["Ada\r\nBcc: victim@example.org", "Ada\nX-Evil: 1"])
    def test_line_breaks_in_from_name_are_refused(self, name: str) -> None:
        with pytest.raises(ValueError, match="from_name may not contain line breaks"):
            render_email(outbound(from_name=name), now=NOW)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("to_address", "grace@example.org\r\nBcc: victim@example.org"),
            ("from_address", "ada@navylabs.example\nBcc: victim@example.org"),
            ("reply_to", "r@navylabs.example\r\nBcc: victim@example.org"),
        ],
    )
    def test_line_breaks_in_addresses_are_refused(self, field: str, value: str) -> None:
        with pytest.raises(ValueError, match=f"{field} may not contain line breaks"):
            render_email(outbound(**{field: value}), now=NOW)

    def test_line_breaks_in_extra_header_values_are_refused(self) -> None:
        with pytest.raises(ValueError, match="may not contain line breaks"):
            render_email(outbound(extra_headers={"X-Tag": "a\r\nBcc: v@example.org"}), now=NOW)

    def test_line_breaks_in_unsubscribe_url_are_refused(self) -> None:
        with pytest.raises(ValueError, match="unsubscribe_url"):
            render_email(outbound(unsubscribe_url=UNSUBSCRIBE_URL + "\r\nBcc: v@e.org"), now=NOW)

    def test_tab_in_subject_is_fine(self) -> None:
        assert parse(render_email(outbound(subject="a\tb"), now=NOW).raw)["Subject"] == "a\tb"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def dkim_key_for(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> DkimKey:
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    return DkimKey(domain="navylabs.example", selector="lr2025", private_key=pem)


def dns_serving(key: rsa.RSAPrivateKey) -> dict[bytes, bytes]:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return {b"lr2025._domainkey.navylabs.example.": record}


def verify(raw: bytes, records: dict[bytes, bytes]) -> bool:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return bool(dkim.verify(raw, dnsfunc=dnsfunc))


def signature_tags(raw: bytes) -> dict[str, str]:
    value = str(parse(raw)["DKIM-Signature"])
    tags = (part.split("=", 1) for part in value.split(";") if "=" in part)
    return {name.strip(): "".join(content.split()) for name, content in tags}


class TestDkim:
    @pytest.mark.parametrize(
        "fmt", [serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8]
    )
    def test_signature_verifies_with_the_published_key(
        self, rsa_key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat
    ) -> None:
        raw = render_email(outbound(), now=NOW, dkim_key=dkim_key_for(rsa_key, fmt)).raw
        assert raw.startswith(b"DKIM-Signature: ")
        assert verify(raw, dns_serving(rsa_key))

    def test_signature_covers_the_unsubscribe_headers_relaxed(
        self, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        key = dkim_key_for(rsa_key, serialization.PrivateFormat.PKCS8)
        raw = render_email(outbound(), now=NOW, dkim_key=key).raw
        tags = signature_tags(raw)
        assert tags["a"] == "rsa-sha256"
        assert tags["c"] == "relaxed/relaxed"
        assert tags["d"] == "navylabs.example"
        assert tags["s"] == "lr2025"
        assert "l" not in tags  # the whole body is signed
        signed = tags["h"].split(":")
        for name in (
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        ):
            assert signed.count(name) == 2, name  # once as present, once more as absent

    def test_utf8_message_verifies(self, rsa_key: rsa.RSAPrivateKey) -> None:
        message = outbound(subject="Un café ?", text_body="Zoë — {{unsubscribe_url}}\n")
        key = dkim_key_for(rsa_key, serialization.PrivateFormat.PKCS8)
        assert verify(render_email(message, now=NOW, dkim_key=key).raw, dns_serving(rsa_key))

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            (b"Subject: Quick question", b"Subject: Quick offer"),
            (b"<mailto:unsubscribe@", b"<mailto:elsewhere@"),
            (b"next week help?", b"next week buy?"),
            (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""),
        ],
    )
    def test_tampering_breaks_the_signature(
        self, rsa_key: rsa.RSAPrivateKey, old: bytes, new: bytes
    ) -> None:
        key = dkim_key_for(rsa_key, serialization.PrivateFormat.PKCS8)
        raw = render_email(outbound(), now=NOW, dkim_key=key).raw
        assert old in raw
        assert not verify(raw.replace(old, new), dns_serving(rsa_key))

    def test_an_added_from_header_breaks_the_signature(self, rsa_key: rsa.RSAPrivateKey) -> None:
        key = dkim_key_for(rsa_key, serialization.PrivateFormat.PKCS8)
        raw = render_email(outbound(), now=NOW, dkim_key=key).raw
        head, body = raw.split(b"\r\n\r\n", 1)
        forged = head + b"\r\nFrom: Bank <security@bank.example>\r\n\r\n" + body
        assert not verify(forged, dns_serving(rsa_key))

    def test_another_key_in_dns_fails(self, rsa_key: rsa.RSAPrivateKey) -> None:
        key = dkim_key_for(rsa_key, serialization.PrivateFormat.PKCS8)
        raw = render_email(outbound(), now=NOW, dkim_key=key).raw
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert not verify(raw, dns_serving(other))

    def test_bad_keys_stop_configuration(self) -> None:
        with pytest.raises(ValueError, match="PEM"):
            DkimKey(domain="navylabs.example", selector="s1", private_key=b"not a key")
        ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with pytest.raises(ValueError, match="RSA"):
            DkimKey(domain="navylabs.example", selector="s1", private_key=ec_pem)

    def test_bad_selector_or_domain_stop_configuration(self, rsa_key: rsa.RSAPrivateKey) -> None:
        pem = dkim_key_for(rsa_key, serialization.PrivateFormat.PKCS8).private_key
        with pytest.raises(ValueError, match="selector"):
            DkimKey(domain="navylabs.example", selector="bad selector", private_key=pem)
        with pytest.raises(ValueError, match="domain"):
            DkimKey(domain="navylabs", selector="s1", private_key=pem)

    def test_private_key_stays_out_of_repr(self, rsa_key: rsa.RSAPrivateKey) -> None:
        key = dkim_key_for(rsa_key, serialization.PrivateFormat.PKCS8)
        assert "PRIVATE" not in repr(key)


class TestDryRun:
    async def test_renders_and_sends_nothing(self) -> None:
        channel = DryRunChannel(clock=lambda: NOW)
        result = await channel.send(outbound())
        assert result.status == "sent"
        assert result.is_sent
        assert result.provider_message_id == f"dryrun-{MESSAGE_ID}"
        assert result.detail == DRY_RUN_DETAIL == "dry run: not sent"
        assert result.retry_after is None
        assert result.raw == render_email(outbound(), now=NOW).raw

    async def test_signs_like_the_real_channel(self, rsa_key: rsa.RSAPrivateKey) -> None:
        key = dkim_key_for(rsa_key, serialization.PrivateFormat.PKCS8)
        channel = DryRunChannel(dkim_key=key, message_id_domain="relay.example.net")
        result = await channel.send(outbound())
        assert result.raw is not None
        assert verify(result.raw, dns_serving(rsa_key))
        assert parse(result.raw)["Message-ID"] == f"<{MESSAGE_ID}@relay.example.net>"

    async def test_refuses_header_injection_like_the_real_channel(self) -> None:
        with pytest.raises(ValueError, match="subject"):
            await DryRunChannel().send(outbound(subject="Hi\r\nBcc: v@example.org"))


class TestPlainMessages:
    """The common message is written directly, past the stdlib's header objects: for every
    input it takes, the bytes must be the stdlib's own; everything else goes to the stdlib."""

    NAMES = ("Ada Lovelace", "", "Ada", "Jean-Luc O'Neil", "A" * 40, "Dr Ada 2")
    SUBJECTS = (
        "Quick question about Navy Labs",
        "Re: your order #42 (urgent!) [ref: a/b] 100% <ok> \"quoted\" 'x' {y} ~z",
        "x",
        "S" * (78 - len("Subject: ")),  # the longest that does not fold
        "a,b;c:d@e.f\\g|h^i`j",
    )
    ADDRESSES = (
        "grace@example.org",
        "Grace.Hopper+news@Mail.Example.ORG",
        "g_h%x-y@a-b.c0.example",
        "1@2.3",
    )
    BODIES = (
        BODY,
        "one line, no newline",
        "crlf\r\nlines\r\n\r\nend\r\n",
        "cr\ronly\rlines",
        "tabs\tand   spaces  \nform\x0cfeed and vertical\x0btab stay in their line\n",
        "",
        "\n\n",
        "x" * 998 + "\n" + "y",
    )

    @staticmethod
    def both(message: OutboundEmail, **kwargs: object) -> tuple[object, object]:
        plain = _render_plain(message, now=NOW, **kwargs)  # type: ignore[arg-type]
        reference = _render_with_stdlib(message, now=NOW, **kwargs)  # type: ignore[arg-type]
        return plain, reference

    def test_the_bytes_are_the_stdlibs(self) -> None:
        cases = [
            *(outbound(unsubscribe_mailto=None, from_name=n) for n in self.NAMES),
            *(outbound(unsubscribe_mailto=None, subject=s) for s in self.SUBJECTS),
            *(outbound(unsubscribe_mailto=None, to_address=a) for a in self.ADDRESSES),
            *(outbound(unsubscribe_mailto=None, from_address=a) for a in self.ADDRESSES),
            *(outbound(unsubscribe_mailto=None, text_body=b) for b in self.BODIES),
        ]
        for message in cases:
            for domain in (None, "Relay.Example.NET"):
                plain, reference = self.both(message, message_id_domain=domain)
                assert plain is not None, message
                assert plain == reference, message

    @pytest.mark.parametrize(
        "overrides",
        [
            {},  # with a mailto URI
            {"unsubscribe_mailto": None, "reply_to": "ops@example.org"},
            {"unsubscribe_mailto": None, "extra_headers": {"X-Campaign": "spring"}},
            {"unsubscribe_mailto": None, "from_name": "Zoë"},
            {"unsubscribe_mailto": None, "from_name": "Ada, Countess"},
            {"unsubscribe_mailto": None, "from_name": "Ada  Lovelace"},
            {"unsubscribe_mailto": None, "subject": "Ünïcode"},
            {"unsubscribe_mailto": None, "subject": "two  spaces"},
            {"unsubscribe_mailto": None, "subject": "=?utf-8?q?looks_encoded?="},
            {"unsubscribe_mailto": None, "subject": "S" * 70},  # folds
            {"unsubscribe_mailto": None, "subject": "a\tb"},
            {"unsubscribe_mailto": None, "to_address": "grace@bücher.example"},
            {"unsubscribe_mailto": None, "to_address": "grâce@example.org"},
            {"unsubscribe_mailto": None, "to_address": '"g h"@example.org'},
            {"unsubscribe_mailto": None, "to_address": "g@ab--cd.example"},
            {"unsubscribe_mailto": None, "to_address": " grace@example.org"},
            {"unsubscribe_mailto": None, "text_body": "café\n"},
            {"unsubscribe_mailto": None, "text_body": "x" * 999},
            {"unsubscribe_mailto": None, "unsubscribe_url": "ftp://example.org/u"},
        ],
    )
    def test_anything_else_goes_to_the_stdlib(self, overrides: dict[str, object]) -> None:
        message = outbound(**overrides)
        assert _render_plain(message, now=NOW, message_id_domain=None) is None
