"""Webhook signature verifiers checked against the providers' own published test vectors."""

from __future__ import annotations

import base64
import hashlib
import json
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadrelay.core.signatures import (
    DEFAULT_TOLERANCE,
    InMemoryReplayStore,
    ReplayStore,
    check_replay,
    generate_standard_webhook_secret,
    sign_standard_webhook,
    verify_mailgun,
    verify_meta,
    verify_sendgrid,
    verify_standard_webhook,
    verify_twilio,
)

ONE_SECOND = timedelta(seconds=1)


def at(unix_seconds: int) -> datetime:
    return datetime.fromtimestamp(unix_seconds, tz=UTC)


def flip_first_char(value: str) -> str:
    replacement = "B" if value[0] != "B" else "C"
    return replacement + value[1:]


# --- Twilio ---------------------------------------------------------------------------
# Source: twilio/twilio-python, tests/unit/test_request_validator.py (ValidationTest).
TWILIO_AUTH_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
TWILIO_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
TWILIO_DUPLICATE_PARAMS_SIGNATURE = "IK+Dwps556ElfBT0I3Rgjkr1wJU="
TWILIO_JSON_BODY = b'{"property": "value", "boolean": true}'
TWILIO_JSON_BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
TWILIO_URL_WITH_BODY = TWILIO_URL + "&bodySHA256=" + TWILIO_JSON_BODY_HASH
TWILIO_JSON_SIGNATURE = "a9nBmqA0ju/hNViExpshrM61xv4="


class TestVerifyTwilio:
    def test_accepts_form_request_vector(self) -> None:
        assert verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=TWILIO_URL,
            params=TWILIO_PARAMS,
            signature=TWILIO_SIGNATURE,
        )

    @pytest.mark.parametrize("digits", [["5678", "1234"], ["1234", "5678"], ("5678", "1234")])
    def test_accepts_repeated_params_in_any_order(
        self, digits: list[str] | tuple[str, ...]
    ) -> None:
        params = {"Sid": "CA123", "SidAccount": "AC123", "Digits": digits}
        assert verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=TWILIO_URL,
            params=params,
            signature=TWILIO_DUPLICATE_PARAMS_SIGNATURE,
        )

    def test_accepts_https_url_signed_without_its_port(self) -> None:
        url = TWILIO_URL.replace(".com", ".com:1234")
        assert verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN, url=url, params=TWILIO_PARAMS, signature=TWILIO_SIGNATURE
        )

    def test_accepts_http_url_signed_with_its_port(self) -> None:
        url = TWILIO_URL.replace(".com", ".com:1234").replace("https", "http")
        # Hash of the http URL with port 1234, from the same test file.
        assert verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=url,
            params=TWILIO_PARAMS,
            signature="Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        )

    def test_accepts_https_url_signed_with_default_port_added(self) -> None:
        # Hash of the URL with :443, from the same test file.
        assert verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=TWILIO_URL,
            params=TWILIO_PARAMS,
            signature="kvajT1Ptam85bY51eRf/AJRuM3w=",
        )

    def test_accepts_http_url_signed_with_default_port_added(self) -> None:
        # Hash of the URL with :80, from the same test file.
        assert verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=TWILIO_URL.replace("https", "http"),
            params=TWILIO_PARAMS,
            signature="0ZXoZLH/DfblKGATFgpif+LLRf4=",
        )

    def test_accepts_json_body_vector(self) -> None:
        assert verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=TWILIO_URL_WITH_BODY,
            body=TWILIO_JSON_BODY,
            signature=TWILIO_JSON_SIGNATURE,
        )

    def test_rejects_tampered_body(self) -> None:
        assert not verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=TWILIO_URL_WITH_BODY,
            body=TWILIO_JSON_BODY.replace(b"true", b"false"),
            signature=TWILIO_JSON_SIGNATURE,
        )

    def test_rejects_body_hash_rewritten_to_match_tampered_body(self) -> None:
        tampered = b'{"property": "value", "boolean": false}'
        url = TWILIO_URL + "&bodySHA256=" + hashlib.sha256(tampered).hexdigest()
        assert not verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN, url=url, body=tampered, signature=TWILIO_JSON_SIGNATURE
        )

    def test_rejects_url_with_body_hash_but_no_body(self) -> None:
        assert not verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=TWILIO_URL_WITH_BODY,
            signature=TWILIO_JSON_SIGNATURE,
        )

    def test_rejects_body_without_body_hash_in_url(self) -> None:
        assert not verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=TWILIO_URL,
            body=TWILIO_JSON_BODY,
            signature=TWILIO_SIGNATURE,
        )

    def test_rejects_tampered_params(self) -> None:
        params = {**TWILIO_PARAMS, "Digits": "9999"}
        assert not verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN, url=TWILIO_URL, params=params, signature=TWILIO_SIGNATURE
        )

    def test_rejects_tampered_url(self) -> None:
        assert not verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=TWILIO_URL.replace("foo=1", "foo=2"),
            params=TWILIO_PARAMS,
            signature=TWILIO_SIGNATURE,
        )

    def test_rejects_tampered_signature(self) -> None:
        assert not verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN,
            url=TWILIO_URL,
            params=TWILIO_PARAMS,
            signature=flip_first_char(TWILIO_SIGNATURE),
        )

    def test_rejects_wrong_auth_token(self) -> None:
        assert not verify_twilio(
            auth_token="54321", url=TWILIO_URL, params=TWILIO_PARAMS, signature=TWILIO_SIGNATURE
        )

    @pytest.mark.parametrize("signature", ["", "ünïcode", "RSOYDt4T1cUTdK1PDd93/VVr8B8"])
    def test_rejects_malformed_signature_without_raising(self, signature: str) -> None:
        assert not verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN, url=TWILIO_URL, params=TWILIO_PARAMS, signature=signature
        )

    @pytest.mark.parametrize(
        "url", ["not a url", "https://mycompany.com:99999/x", "", "https://my\tcompany.com/x"]
    )
    def test_rejects_unparseable_url(self, url: str) -> None:
        assert not verify_twilio(
            auth_token=TWILIO_AUTH_TOKEN, url=url, params=TWILIO_PARAMS, signature=TWILIO_SIGNATURE
        )

    def test_refuses_params_and_body_together(self) -> None:
        with pytest.raises(ValueError, match="not both"):
            verify_twilio(
                auth_token=TWILIO_AUTH_TOKEN,
                url=TWILIO_URL_WITH_BODY,
                params=TWILIO_PARAMS,
                body=TWILIO_JSON_BODY,
                signature=TWILIO_JSON_SIGNATURE,
            )


# --- SendGrid -------------------------------------------------------------------------
# Source: sendgrid/sendgrid-python, test/unit/test_eventwebhook.py (UnitTests).
SENDGRID_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1fl"
    "pVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SENDGRID_OTHER_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdh"
    "XSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="
)
SENDGRID_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M"
    "15TluLtEZtM="
)
SENDGRID_BAD_SIGNATURE = (
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nl"
    "xFDWYNH3j/0="
)
SENDGRID_TIMESTAMP = "1600112502"
SENDGRID_EVENT_ID = "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
SENDGRID_PAYLOAD = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": SENDGRID_EVENT_ID,
                "sg_message_id": (
                    "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
                ),
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"  # The signed body ends with CRLF, as in the SDK test.
).encode()
SENDGRID_NOW = at(int(SENDGRID_TIMESTAMP))


def sendgrid_pem(der_base64: str) -> str:
    body = "\n".join(textwrap.wrap(der_base64, 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"


class TestVerifySendgrid:
    def test_accepts_sdk_vector(self) -> None:
        assert verify_sendgrid(
            public_key=SENDGRID_PUBLIC_KEY,
            payload=SENDGRID_PAYLOAD,
            signature=SENDGRID_SIGNATURE,
            timestamp=SENDGRID_TIMESTAMP,
            now=SENDGRID_NOW,
        )

    def test_accepts_pem_public_key(self) -> None:
        assert verify_sendgrid(
            public_key=sendgrid_pem(SENDGRID_PUBLIC_KEY),
            payload=SENDGRID_PAYLOAD,
            signature=SENDGRID_SIGNATURE,
            timestamp=SENDGRID_TIMESTAMP,
            now=SENDGRID_NOW,
        )

    @pytest.mark.parametrize("skew", [DEFAULT_TOLERANCE, -DEFAULT_TOLERANCE])
    def test_accepts_timestamp_at_edge_of_tolerance(self, skew: timedelta) -> None:
        assert verify_sendgrid(
            public_key=SENDGRID_PUBLIC_KEY,
            payload=SENDGRID_PAYLOAD,
            signature=SENDGRID_SIGNATURE,
            timestamp=SENDGRID_TIMESTAMP,
            now=SENDGRID_NOW + skew,
        )

    def test_rejects_tampered_body(self) -> None:
        assert not verify_sendgrid(
            public_key=SENDGRID_PUBLIC_KEY,
            payload=SENDGRID_PAYLOAD.replace(b"dropped", b"delivered"),
            signature=SENDGRID_SIGNATURE,
            timestamp=SENDGRID_TIMESTAMP,
            now=SENDGRID_NOW,
        )

    def test_rejects_body_without_trailing_crlf(self) -> None:
        assert not verify_sendgrid(
            public_key=SENDGRID_PUBLIC_KEY,
            payload=SENDGRID_PAYLOAD.rstrip(b"\r\n"),
            signature=SENDGRID_SIGNATURE,
            timestamp=SENDGRID_TIMESTAMP,
            now=SENDGRID_NOW,
        )

    @pytest.mark.parametrize(
        "signature",
        [SENDGRID_BAD_SIGNATURE, flip_first_char(SENDGRID_SIGNATURE), "not base64!", ""],
    )
    def test_rejects_tampered_signature(self, signature: str) -> None:
        assert not verify_sendgrid(
            public_key=SENDGRID_PUBLIC_KEY,
            payload=SENDGRID_PAYLOAD,
            signature=signature,
            timestamp=SENDGRID_TIMESTAMP,
            now=SENDGRID_NOW,
        )

    def test_rejects_wrong_public_key(self) -> None:
        assert not verify_sendgrid(
            public_key=SENDGRID_OTHER_PUBLIC_KEY,
            payload=SENDGRID_PAYLOAD,
            signature=SENDGRID_SIGNATURE,
            timestamp=SENDGRID_TIMESTAMP,
            now=SENDGRID_NOW,
        )

    def test_rejects_tampered_timestamp(self) -> None:
        assert not verify_sendgrid(
            public_key=SENDGRID_PUBLIC_KEY,
            payload=SENDGRID_PAYLOAD,
            signature=SENDGRID_SIGNATURE,
            timestamp="1600112503",
            now=SENDGRID_NOW,
        )

    def test_rejects_stale_timestamp(self) -> None:
        assert not verify_sendgrid(
            public_key=SENDGRID_PUBLIC_KEY,
            payload=SENDGRID_PAYLOAD,
            signature=SENDGRID_SIGNATURE,
            timestamp=SENDGRID_TIMESTAMP,
            now=SENDGRID_NOW + DEFAULT_TOLERANCE + ONE_SECOND,
        )

    def test_rejects_future_timestamp(self) -> None:
        assert not verify_sendgrid(
            public_key=SENDGRID_PUBLIC_KEY,
            payload=SENDGRID_PAYLOAD,
            signature=SENDGRID_SIGNATURE,
            timestamp=SENDGRID_TIMESTAMP,
            now=SENDGRID_NOW - DEFAULT_TOLERANCE - ONE_SECOND,
        )

    @pytest.mark.parametrize("timestamp", ["timestamp", "", " 1600112502", "1600112502.0"])
    def test_rejects_malformed_timestamp(self, timestamp: str) -> None:
        assert not verify_sendgrid(
            public_key=SENDGRID_PUBLIC_KEY,
            payload=SENDGRID_PAYLOAD,
            signature=SENDGRID_SIGNATURE,
            timestamp=timestamp,
            now=SENDGRID_NOW,
        )

    @pytest.mark.parametrize("public_key", ["", "not a key", base64.b64encode(b"junk").decode()])
    def test_raises_on_misconfigured_public_key(self, public_key: str) -> None:
        with pytest.raises(ValueError, match="public key"):
            verify_sendgrid(
                public_key=public_key,
                payload=SENDGRID_PAYLOAD,
                signature=SENDGRID_SIGNATURE,
                timestamp=SENDGRID_TIMESTAMP,
                now=SENDGRID_NOW,
            )

    def test_raises_on_naive_now(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            verify_sendgrid(
                public_key=SENDGRID_PUBLIC_KEY,
                payload=SENDGRID_PAYLOAD,
                signature=SENDGRID_SIGNATURE,
                timestamp=SENDGRID_TIMESTAMP,
                now=SENDGRID_NOW.replace(tzinfo=None),
            )


# --- Mailgun --------------------------------------------------------------------------
# Source: mailgun/mailgun-php, tests/Api/WebhookTest.php (testVerifyWebhookGood/Bad).
MAILGUN_SIGNING_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
MAILGUN_TIMESTAMP = "1403645220"
MAILGUN_TOKEN = "5egbgr1vjgqxtrnp65xfznchgdccwh5d6i09vijqi3whgowmn6"
MAILGUN_OTHER_TOKEN = "owyldpe6nxhmrn78epljl6bj0orrki1u3d2v5e6cnlmmuox8jr"
MAILGUN_SIGNATURE = "9cfc5c41582e51246e73c88d34db3af0a3a2692a76fbab81492842f000256d33"
MAILGUN_NOW = at(int(MAILGUN_TIMESTAMP))


class TestVerifyMailgun:
    def test_accepts_sdk_vector(self) -> None:
        assert verify_mailgun(
            signing_key=MAILGUN_SIGNING_KEY,
            timestamp=MAILGUN_TIMESTAMP,
            token=MAILGUN_TOKEN,
            signature=MAILGUN_SIGNATURE,
            now=MAILGUN_NOW,
        )

    def test_rejects_tampered_token(self) -> None:
        assert not verify_mailgun(
            signing_key=MAILGUN_SIGNING_KEY,
            timestamp=MAILGUN_TIMESTAMP,
            token=MAILGUN_OTHER_TOKEN,
            signature=MAILGUN_SIGNATURE,
            now=MAILGUN_NOW,
        )

    def test_rejects_tampered_timestamp(self) -> None:
        assert not verify_mailgun(
            signing_key=MAILGUN_SIGNING_KEY,
            timestamp="1403645221",
            token=MAILGUN_TOKEN,
            signature=MAILGUN_SIGNATURE,
            now=MAILGUN_NOW,
        )

    @pytest.mark.parametrize("signature", [flip_first_char(MAILGUN_SIGNATURE), "", "zz"])
    def test_rejects_tampered_signature(self, signature: str) -> None:
        assert not verify_mailgun(
            signing_key=MAILGUN_SIGNING_KEY,
            timestamp=MAILGUN_TIMESTAMP,
            token=MAILGUN_TOKEN,
            signature=signature,
            now=MAILGUN_NOW,
        )

    def test_rejects_wrong_signing_key(self) -> None:
        assert not verify_mailgun(
            signing_key="key-00000000000000000000000000000000",
            timestamp=MAILGUN_TIMESTAMP,
            token=MAILGUN_TOKEN,
            signature=MAILGUN_SIGNATURE,
            now=MAILGUN_NOW,
        )

    def test_rejects_stale_timestamp(self) -> None:
        assert not verify_mailgun(
            signing_key=MAILGUN_SIGNING_KEY,
            timestamp=MAILGUN_TIMESTAMP,
            token=MAILGUN_TOKEN,
            signature=MAILGUN_SIGNATURE,
            now=MAILGUN_NOW + DEFAULT_TOLERANCE + ONE_SECOND,
        )

    def test_rejects_future_timestamp(self) -> None:
        assert not verify_mailgun(
            signing_key=MAILGUN_SIGNING_KEY,
            timestamp=MAILGUN_TIMESTAMP,
            token=MAILGUN_TOKEN,
            signature=MAILGUN_SIGNATURE,
            now=MAILGUN_NOW - DEFAULT_TOLERANCE - ONE_SECOND,
        )

    def test_honours_custom_tolerance(self) -> None:
        assert verify_mailgun(
            signing_key=MAILGUN_SIGNING_KEY,
            timestamp=MAILGUN_TIMESTAMP,
            token=MAILGUN_TOKEN,
            signature=MAILGUN_SIGNATURE,
            now=MAILGUN_NOW + timedelta(minutes=10),
            tolerance=timedelta(minutes=15),
        )

    def test_rejects_empty_request(self) -> None:
        # Mirrors testVerifyWebhookEmptyRequest in the same SDK test file.
        assert not verify_mailgun(
            signing_key=MAILGUN_SIGNING_KEY, timestamp="0", token="", signature="", now=at(0)
        )


# --- Meta -----------------------------------------------------------------------------
# Meta's docs publish no X-Hub-Signature-256 test vector and no official SDK test holds
# one. GitHub uses the identical construction ("sha256=" + hex HMAC-SHA256 of the raw
# body under the shared secret) and publishes a vector; source: github/docs,
# content/webhooks/using-webhooks/validating-webhook-deliveries.md.
META_APP_SECRET = "It's a Secret to Everybody"
META_PAYLOAD = b"Hello, World!"
META_SIGNATURE_HEADER = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


class TestVerifyMeta:
    def test_accepts_published_vector(self) -> None:
        assert verify_meta(
            app_secret=META_APP_SECRET,
            payload=META_PAYLOAD,
            signature_header=META_SIGNATURE_HEADER,
        )

    def test_rejects_tampered_body(self) -> None:
        assert not verify_meta(
            app_secret=META_APP_SECRET,
            payload=b"Hello, World?",
            signature_header=META_SIGNATURE_HEADER,
        )

    def test_rejects_tampered_signature(self) -> None:
        assert not verify_meta(
            app_secret=META_APP_SECRET,
            payload=META_PAYLOAD,
            signature_header=META_SIGNATURE_HEADER[:-1] + "8",
        )

    def test_rejects_wrong_app_secret(self) -> None:
        assert not verify_meta(
            app_secret="It's a Secret to Nobody",
            payload=META_PAYLOAD,
            signature_header=META_SIGNATURE_HEADER,
        )

    @pytest.mark.parametrize(
        "signature_header",
        [
            META_SIGNATURE_HEADER.removeprefix("sha256="),
            META_SIGNATURE_HEADER.replace("sha256=", "sha1="),
            "sha256=",
            "",
            "sha256=ünïcode",
        ],
    )
    def test_rejects_malformed_header(self, signature_header: str) -> None:
        assert not verify_meta(
            app_secret=META_APP_SECRET, payload=META_PAYLOAD, signature_header=signature_header
        )


# --- Standard Webhooks ----------------------------------------------------------------
# Source: standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
# (test_sign_function, test_invalid_signature_raises_error, test_multi_sig_payload_is_valid).
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STANDARD_TIMESTAMP = 1614265330
STANDARD_PAYLOAD = b'{"test": 2432232314}'
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
STANDARD_INVALID_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
STANDARD_DECOY_SIGNATURE = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
STANDARD_NOW = at(STANDARD_TIMESTAMP)


def verify_standard(
    *,
    secrets: list[str] | None = None,
    payload: bytes = STANDARD_PAYLOAD,
    signature_header: str = STANDARD_SIGNATURE,
    timestamp: str = str(STANDARD_TIMESTAMP),
    now: datetime = STANDARD_NOW,
) -> bool:
    return verify_standard_webhook(
        secrets=[STANDARD_SECRET] if secrets is None else secrets,
        msg_id=STANDARD_MSG_ID,
        timestamp=timestamp,
        payload=payload,
        signature_header=signature_header,
        now=now,
    )


class TestSignStandardWebhook:
    def test_matches_reference_signature(self) -> None:
        assert (
            sign_standard_webhook(
                secret=STANDARD_SECRET,
                msg_id=STANDARD_MSG_ID,
                timestamp=STANDARD_TIMESTAMP,
                payload=STANDARD_PAYLOAD,
            )
            == STANDARD_SIGNATURE
        )

    def test_raises_on_invalid_secret(self) -> None:
        with pytest.raises(ValueError, match="secret"):
            sign_standard_webhook(secret="whsec_", msg_id="m", timestamp=0, payload=b"")

    @given(payload=st.binary(max_size=512), msg_id=st.text(min_size=1, max_size=40))
    def test_round_trips_through_verify(self, payload: bytes, msg_id: str) -> None:
        header = sign_standard_webhook(
            secret=STANDARD_SECRET, msg_id=msg_id, timestamp=STANDARD_TIMESTAMP, payload=payload
        )
        assert verify_standard_webhook(
            secrets=[STANDARD_SECRET],
            msg_id=msg_id,
            timestamp=str(STANDARD_TIMESTAMP),
            payload=payload,
            signature_header=header,
            now=STANDARD_NOW,
        )

    @given(data=st.data(), payload=st.binary(min_size=1, max_size=512))
    def test_any_single_byte_flip_fails(self, data: st.DataObject, payload: bytes) -> None:
        header = sign_standard_webhook(
            secret=STANDARD_SECRET,
            msg_id=STANDARD_MSG_ID,
            timestamp=STANDARD_TIMESTAMP,
            payload=payload,
        )
        index = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
        mask = data.draw(st.integers(min_value=1, max_value=255))
        tampered = bytearray(payload)
        tampered[index] ^= mask
        assert not verify_standard(payload=bytes(tampered), signature_header=header)


class TestGenerateStandardWebhookSecret:
    def test_is_whsec_prefixed_base64_of_32_bytes(self) -> None:
        secret = generate_standard_webhook_secret()
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32

    def test_is_unique(self) -> None:
        assert len({generate_standard_webhook_secret() for _ in range(50)}) == 50

    def test_signs_and_verifies(self) -> None:
        secret = generate_standard_webhook_secret()
        header = sign_standard_webhook(
            secret=secret,
            msg_id=STANDARD_MSG_ID,
            timestamp=STANDARD_TIMESTAMP,
            payload=STANDARD_PAYLOAD,
        )
        assert verify_standard(secrets=[secret], signature_header=header)


class TestVerifyStandardWebhook:
    def test_accepts_reference_vector(self) -> None:
        assert verify_standard()

    def test_accepts_secret_without_prefix(self) -> None:
        assert verify_standard(secrets=[STANDARD_SECRET.removeprefix("whsec_")])

    def test_accepts_valid_entry_among_decoys_and_other_versions(self) -> None:
        header = " ".join(
            [
                STANDARD_DECOY_SIGNATURE,
                STANDARD_DECOY_SIGNATURE.replace("v1,", "v2,"),
                STANDARD_SIGNATURE,
                STANDARD_DECOY_SIGNATURE,
            ]
        )
        assert verify_standard(signature_header=header)

    @pytest.mark.parametrize("order", ["old_first", "new_first"])
    def test_accepts_either_secret_during_rotation(self, order: str) -> None:
        other = generate_standard_webhook_secret()
        secrets = [STANDARD_SECRET, other] if order == "old_first" else [other, STANDARD_SECRET]
        assert verify_standard(secrets=secrets)

    def test_rejects_after_rotated_secret_is_dropped(self) -> None:
        assert not verify_standard(secrets=[generate_standard_webhook_secret()])

    def test_rejects_tampered_body(self) -> None:
        assert not verify_standard(payload=b'{"test": 2432232315}')

    def test_rejects_tampered_signature(self) -> None:
        assert not verify_standard(signature_header=STANDARD_INVALID_SIGNATURE)

    def test_rejects_valid_signature_under_other_version(self) -> None:
        assert not verify_standard(signature_header=STANDARD_SIGNATURE.replace("v1,", "v1a,"))

    def test_rejects_tampered_timestamp(self) -> None:
        assert not verify_standard(timestamp=str(STANDARD_TIMESTAMP + 1))

    def test_rejects_stale_timestamp(self) -> None:
        assert not verify_standard(now=STANDARD_NOW + DEFAULT_TOLERANCE + ONE_SECOND)

    def test_rejects_future_timestamp(self) -> None:
        assert not verify_standard(now=STANDARD_NOW - DEFAULT_TOLERANCE - ONE_SECOND)

    @pytest.mark.parametrize("timestamp", ["hello", "", "-1614265330", "1614265330.5"])
    def test_rejects_malformed_timestamp(self, timestamp: str) -> None:
        assert not verify_standard(timestamp=timestamp)

    @pytest.mark.parametrize(
        "signature_header",
        ["", "v1", "v1,", "v1,!!!not-base64!!!", "garbage", STANDARD_SIGNATURE.replace(",", "=")],
    )
    def test_rejects_malformed_header_without_raising(self, signature_header: str) -> None:
        assert not verify_standard(signature_header=signature_header)

    def test_raises_without_secrets(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            verify_standard(secrets=[])

    def test_raises_on_single_string_secret(self) -> None:
        with pytest.raises(TypeError, match="sequence"):
            verify_standard_webhook(
                secrets=STANDARD_SECRET,
                msg_id=STANDARD_MSG_ID,
                timestamp=str(STANDARD_TIMESTAMP),
                payload=STANDARD_PAYLOAD,
                signature_header=STANDARD_SIGNATURE,
                now=STANDARD_NOW,
            )


# --- Replay protection ----------------------------------------------------------------
REPLAY_NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class TestInMemoryReplayStore:
    def test_satisfies_protocol(self) -> None:
        store: ReplayStore = InMemoryReplayStore()
        assert store.remember("k", now=REPLAY_NOW)

    def test_refuses_key_seen_before(self) -> None:
        store = InMemoryReplayStore()
        assert store.remember("k", now=REPLAY_NOW)
        assert not store.remember("k", now=REPLAY_NOW + timedelta(minutes=1))

    def test_forgets_key_after_window(self) -> None:
        store = InMemoryReplayStore(window=timedelta(minutes=10))
        assert store.remember("k", now=REPLAY_NOW)
        assert not store.remember("k", now=REPLAY_NOW + timedelta(minutes=10) - ONE_SECOND)
        assert store.remember("k", now=REPLAY_NOW + timedelta(minutes=10))

    def test_drops_expired_entries(self) -> None:
        store = InMemoryReplayStore(window=timedelta(minutes=10))
        for index in range(5):
            store.remember(f"k{index}", now=REPLAY_NOW)
        store.remember("late", now=REPLAY_NOW + timedelta(minutes=11))
        assert len(store) == 1

    def test_evicts_oldest_when_full(self) -> None:
        store = InMemoryReplayStore(capacity=2)
        store.remember("a", now=REPLAY_NOW)
        store.remember("b", now=REPLAY_NOW + ONE_SECOND)
        store.remember("c", now=REPLAY_NOW + 2 * ONE_SECOND)
        assert len(store) == 2
        assert not store.remember("c", now=REPLAY_NOW + 3 * ONE_SECOND)
        assert store.remember("a", now=REPLAY_NOW + 3 * ONE_SECOND)

    def test_admits_a_key_exactly_once_under_concurrency(self) -> None:
        store = InMemoryReplayStore()
        results: list[bool] = []
        barrier = threading.Barrier(16)

        def attempt() -> None:
            barrier.wait()
            results.append(store.remember("same-delivery", now=REPLAY_NOW))

        threads = [threading.Thread(target=attempt) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results.count(True) == 1

    def test_raises_on_naive_now(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            InMemoryReplayStore().remember("k", now=REPLAY_NOW.replace(tzinfo=None))

    @pytest.mark.parametrize(
        ("window", "capacity"), [(timedelta(0), 10), (timedelta(minutes=1), 0)]
    )
    def test_raises_on_invalid_bounds(self, window: timedelta, capacity: int) -> None:
        with pytest.raises(ValueError, match="must be"):
            InMemoryReplayStore(window=window, capacity=capacity)


class TestCheckReplay:
    # Delivery ids as each provider sends them; the SendGrid, Mailgun and Standard Webhooks
    # ids come from the vectors above, the Twilio idempotency token and Meta message id are
    # illustrative.
    @pytest.mark.parametrize(
        ("provider", "delivery_id"),
        [
            ("twilio", "CA1234567890ABCDE-1600112502"),
            ("sendgrid", SENDGRID_EVENT_ID),
            ("mailgun", MAILGUN_TOKEN),
            ("meta", "m_1457764197618:41d102a3e1ae206a38"),
            ("standard-webhooks", STANDARD_MSG_ID),
        ],
    )
    def test_refuses_second_delivery(self, provider: str, delivery_id: str) -> None:
        store = InMemoryReplayStore()
        assert check_replay(store, provider=provider, delivery_id=delivery_id, now=REPLAY_NOW)
        assert not check_replay(
            store, provider=provider, delivery_id=delivery_id, now=REPLAY_NOW + ONE_SECOND
        )

    def test_namespaces_ids_per_provider(self) -> None:
        store = InMemoryReplayStore()
        assert check_replay(store, provider="mailgun", delivery_id="abc", now=REPLAY_NOW)
        assert check_replay(store, provider="sendgrid", delivery_id="abc", now=REPLAY_NOW)

    def test_refuses_empty_delivery_id(self) -> None:
        assert not check_replay(
            InMemoryReplayStore(), provider="twilio", delivery_id="", now=REPLAY_NOW
        )

    @pytest.mark.parametrize("provider", ["", "Twilio", "twi:lio", "a b"])
    def test_raises_on_invalid_provider(self, provider: str) -> None:
        with pytest.raises(ValueError, match="provider"):
            check_replay(InMemoryReplayStore(), provider=provider, delivery_id="x", now=REPLAY_NOW)
