"""Unsubscribe tokens: a link names one tenant and one message; nothing else reads as a token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadrelay.outreach.unsubscribe import TOKEN_LENGTH, InvalidToken, make_token, read_token

SECRET = b"unsubscribe-test-secret-0123456789"
OTHER_SECRET = b"another-secret-entirely-9876543210"
TENANT = uuid.UUID("6f1c2a9e-0b7d-4c1e-9a3f-1d2e3f4a5b6c")
MESSAGE = uuid.UUID("0d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class TestRoundTrip:
    def test_reads_back_tenant_and_message(self) -> None:
        token = make_token(SECRET, TENANT, MESSAGE)
        assert read_token(SECRET, token) == (TENANT, MESSAGE)

    def test_token_is_url_safe_and_fixed_length(self) -> None:
        token = make_token(SECRET, TENANT, MESSAGE)
        assert len(token) == TOKEN_LENGTH == 66
        assert set(token) <= set(ALPHABET)

    def test_same_inputs_same_token_and_no_expiry(self) -> None:
        # No timestamp inside: the link in a year-old e-mail still works.
        assert make_token(SECRET, TENANT, MESSAGE) == make_token(SECRET, TENANT, MESSAGE)

    def test_each_message_has_its_own_token(self) -> None:
        assert make_token(SECRET, TENANT, MESSAGE) != make_token(SECRET, TENANT, uuid.uuid4())
        assert make_token(SECRET, TENANT, MESSAGE) != make_token(SECRET, uuid.uuid4(), MESSAGE)

    @given(st.uuids(), st.uuids())
    def test_any_ids_round_trip(self, tenant: uuid.UUID, message: uuid.UUID) -> None:
        assert read_token(SECRET, make_token(SECRET, tenant, message)) == (tenant, message)


class TestRefusals:
    def test_every_single_character_change_is_refused(self) -> None:
        token = make_token(SECRET, TENANT, MESSAGE)
        for position, char in enumerate(token):
            replacement = ALPHABET[(ALPHABET.index(char) + 17) % 64]
            tampered = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(InvalidToken):
                read_token(SECRET, tampered)

    def test_swapping_the_message_id_is_refused(self) -> None:
        raw = base64.urlsafe_b64decode(make_token(SECRET, TENANT, MESSAGE) + "==")
        forged = raw[:17] + uuid.uuid4().bytes + raw[33:]
        token = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
        with pytest.raises(InvalidToken):
            read_token(SECRET, token)

    @pytest.mark.parametrize("cut", [1, 2, 4, 22, 65])
    def test_truncated_is_refused(self, cut: int) -> None:
        token = make_token(SECRET, TENANT, MESSAGE)
        with pytest.raises(InvalidToken):
            read_token(SECRET, token[:-cut])

    def test_extended_or_padded_is_refused(self) -> None:
        token = make_token(SECRET, TENANT, MESSAGE)
        for longer in (token + "A", token + "=", token + "==", " " + token, token + "\n"):
            with pytest.raises(InvalidToken):
                read_token(SECRET, longer)

    def test_non_canonical_spelling_is_refused(self) -> None:
        # The last character carries 4 spare bits: another spelling of the same bytes exists.
        token = make_token(SECRET, TENANT, MESSAGE)
        twin = token[:-1] + ALPHABET[ALPHABET.index(token[-1]) ^ 1]
        assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(token + "==")
        with pytest.raises(InvalidToken):
            read_token(SECRET, twin)

    def test_standard_base64_alphabet_is_refused(self) -> None:
        token = make_token(SECRET, TENANT, MESSAGE)
        standard = token.replace("-", "+").replace("_", "/")
        if standard != token:
            with pytest.raises(InvalidToken):
                read_token(SECRET, standard)
        with pytest.raises(InvalidToken):
            read_token(SECRET, "+" + token[1:])

    def test_another_secret_is_refused(self) -> None:
        token = make_token(OTHER_SECRET, TENANT, MESSAGE)
        with pytest.raises(InvalidToken):
            read_token(SECRET, token)

    @pytest.mark.parametrize(
        "garbage",
        [
            "",
            "x",
            "not a token",
            "A" * TOKEN_LENGTH,
            "%" * TOKEN_LENGTH,
            "é" * TOKEN_LENGTH,
            str(uuid.uuid4()),
            "../../etc/passwd",
        ],
    )
    def test_garbage_is_refused(self, garbage: str) -> None:
        with pytest.raises(InvalidToken):
            read_token(SECRET, garbage)

    @given(st.text(max_size=100))
    def test_arbitrary_text_is_refused(self, text: str) -> None:
        with pytest.raises(InvalidToken):
            read_token(SECRET, text)

    def test_unknown_version_is_refused_even_when_signed(self) -> None:
        payload = b"\x02" + TENANT.bytes + MESSAGE.bytes
        tag = hmac.new(SECRET, b"leadrelay/unsubscribe/v1\x00" + payload, hashlib.sha256)
        raw = payload + tag.digest()[:16]
        token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        with pytest.raises(InvalidToken):
            read_token(SECRET, token)

    def test_invalid_token_is_a_client_error(self) -> None:
        error = InvalidToken()
        assert error.status == 400
        assert error.code == "invalid-unsubscribe-token"
        assert error.detail == "This unsubscribe link is not valid."

    def test_short_secret_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="at least 16 bytes"):
            make_token(b"short", TENANT, MESSAGE)
        with pytest.raises(ValueError, match="at least 16 bytes"):
            read_token(b"", make_token(SECRET, TENANT, MESSAGE))
