"""Sending-domain checks: SPF, DKIM and DMARC parsed and judged, looked up against a real DNS
server on loopback (timeouts and SERVFAIL give `unknown`), cached per domain."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dns.asyncresolver
import pytest

from leadrelay.capture.verify import make_resolver
from leadrelay.compliance import domains
from leadrelay.compliance.domains import (
    AuthStatus,
    SendingDomain,
    check_dkim,
    check_dmarc,
    check_spf,
    dkim_verdict,
    dmarc_verdict,
    parse_spf,
    spf_records,
)
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Tenant
from tests.compliance.dns_zone import ZoneServer, serving, txt, unused_port

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
PASS, WARN, FAIL, UNKNOWN = AuthStatus.PASS, AuthStatus.WARN, AuthStatus.FAIL, AuthStatus.UNKNOWN
KEY = base64.b64encode(bytes(range(256)) + bytes(range(38))).decode()

ZONE = {
    # All three right: SPF through an include, DMARC reject, a DKIM key split in two strings.
    "good.example": {"TXT": [txt("v=spf1 include:_spf.mail.example -all"), txt("site=1")]},
    "_spf.mail.example": {"TXT": [txt("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")]},
    "_dmarc.good.example": {"TXT": [txt("v=DMARC1; p=reject; rua=mailto:d@good.example")]},
    "s1._domainkey.good.example": {"TXT": [txt("v=DKIM1; k=rsa; p=" + KEY[:200], KEY[200:])]},
    # SPF problems.
    "twospf.example": {"TXT": [txt("v=spf1 -all"), txt("v=spf1 mx -all")]},
    "nospf.example": {"TXT": [txt("google-site-verification=abc")]},
    "plusall.example": {"TXT": [txt("v=spf1 +all")]},
    "softfail.example": {"TXT": [txt("v=spf1 mx ~all")]},
    "noall.example": {"TXT": [txt("v=spf1 mx")]},
    "typo.example": {"TXT": [txt("v=spf1 inclde:_spf.mail.example -all")]},
    "dangling.example": {"TXT": [txt("v=spf1 include:nowhere.example -all")]},
    "loop.example": {"TXT": [txt("v=spf1 include:loop.example -all")]},
    "redirect.example": {"TXT": [txt("v=spf1 redirect=_spf.mail.example")]},
    # 2 includes + 5 + 4 terms that each cost a lookup: 11, one over the limit.
    "manylookups.example": {"TXT": [txt("v=spf1 include:inc1.example include:inc2.example -all")]},
    "inc1.example": {"TXT": [txt("v=spf1 a mx exists:x.example a:b.example mx:c.example -all")]},
    "inc2.example": {"TXT": [txt("v=spf1 a mx a:c.example mx:d.example -all")]},
    # Exactly 10: still fine.
    "tenlookups.example": {
        "TXT": [txt("v=spf1 include:inc1.example a mx a:e.example mx:f.example -all")]
    },
    # DMARC problems.
    "_dmarc.monitor.example": {"TXT": [txt("v=DMARC1; p=none")]},
    "_dmarc.twodmarc.example": {"TXT": [txt("v=DMARC1; p=reject"), txt("v=DMARC1; p=none")]},
    "_dmarc.nopolicy.example": {"TXT": [txt("v=DMARC1; rua=mailto:x@nopolicy.example")]},
    "_dmarc.partial.example": {"TXT": [txt("v=DMARC1; p=quarantine; pct=20")]},
    # DKIM: a revoked key, CNAME-free.
    "old._domainkey.good.example": {"TXT": [txt("v=DKIM1; p=")]},
}


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    silent = frozenset({"slow.example", "_dmarc.slow.example"})
    with serving(ZONE, silent=silent, broken=frozenset({"broken.example"})) as server:
        yield server


def resolver_on(server: ZoneServer) -> dns.asyncresolver.Resolver:
    return make_resolver(["127.0.0.1"], port=server.port, timeout=0.3)


class TestSpfParsing:
    def test_counts_the_terms_that_cost_a_lookup(self) -> None:
        record = parse_spf(
            "v=spf1 a mx ptr exists:%{i}.x.example include:a.example ip4:1.2.3.4 -all"
        )

        assert record.lookups == 5
        assert record.targets == ("a.example",)
        assert record.all_qualifier == "-"
        assert record.uses_ptr
        assert record.errors == ()

    def test_a_redirect_counts_and_is_followed_only_without_all(self) -> None:
        assert parse_spf("v=spf1 redirect=_spf.example").targets == ("_spf.example",)
        assert parse_spf("v=spf1 redirect=_spf.example").lookups == 1
        with_all = parse_spf("v=spf1 ~all redirect=_spf.example")
        assert (with_all.targets, with_all.lookups, with_all.redirect) == ((), 0, None)

    def test_unknown_terms_and_bad_addresses_are_errors(self) -> None:
        record = parse_spf("v=spf1 inclde:x.example ip4:999.1.1.1 ip6:192.0.2.1 include -all")

        assert len(record.errors) == 4

    def test_picks_only_spf_records_among_the_txt_strings(self) -> None:
        found = spf_records(["v=spf1 -all", "v=spf10 x", "site=1", "V=SPF1 mx"])

        assert found == ["v=spf1 -all", "V=SPF1 mx"]


class TestDmarcAndDkimVerdicts:
    @pytest.mark.parametrize(
        ("records", "status"),
        [
            (["v=DMARC1; p=reject"], PASS),
            (["v=DMARC1; p=quarantine; rua=mailto:a@b.example"], PASS),
            (["v=DMARC1; p=none"], WARN),
            (["v=DMARC1; p=quarantine; pct=50"], WARN),
            (["v=DMARC1; p=bogus"], FAIL),
            (["v=DMARC1"], FAIL),
            ([], FAIL),
            (["v=DMARC1; p=reject", "v=DMARC1; p=none"], FAIL),
        ],
    )
    def test_judges_the_policy(self, records: list[str], status: AuthStatus) -> None:
        assert dmarc_verdict(records).status is status

    def test_a_subdomain_follows_sp(self) -> None:
        verdict = dmarc_verdict(["v=DMARC1; p=reject; sp=none"], subdomain=True)

        assert verdict.status is WARN

    @pytest.mark.parametrize(
        ("records", "status", "says"),
        [
            ([f"v=DKIM1; k=rsa; p={KEY}"], PASS, "rsa key published"),
            ([f"k=ed25519; p={KEY[:44]}"], PASS, "ed25519"),
            (["v=DKIM1; p="], FAIL, "revoked"),
            (["v=DKIM1; k=dsa; p=AAAA"], FAIL, "unknown key type"),
            (["v=DKIM1; p=not*base64"], FAIL, "not base64"),
            (["v=spf1 -all"], FAIL, "no DKIM key"),
            ([], FAIL, "no DKIM key"),
        ],
    )
    def test_judges_the_key(self, records: list[str], status: AuthStatus, says: str) -> None:
        verdict = dkim_verdict("s1", "good.example", records)

        assert verdict.status is status
        assert says in verdict.detail


class TestLookups:
    async def test_a_well_set_domain_passes_all_three(self, zone: ZoneServer) -> None:
        resolver = resolver_on(zone)
        sending = SendingDomain("good.example", ("s1",), "good.example")

        spf = await check_spf(resolver, "good.example", lifetime=0.3)
        dkim = await check_dkim(resolver, sending, lifetime=0.3)
        dmarc = await check_dmarc(resolver, "good.example", lifetime=0.3)

        assert (spf.status, dkim.status, dmarc.status) == (PASS, PASS, PASS)
        assert "1 of 10 DNS lookups" in spf.detail  # the include; its addresses cost none
        assert spf.record == "v=spf1 include:_spf.mail.example -all"
        assert dkim.record is not None
        assert KEY in dkim.record  # the two strings joined
        assert zone.asked("_spf.mail.example") == 1

    @pytest.mark.parametrize(
        ("domain", "status", "says"),
        [
            ("twospf.example", FAIL, "2 SPF records"),
            ("nospf.example", FAIL, "no SPF record"),
            ("unlisted.example", FAIL, "no SPF record"),  # NXDOMAIN
            ("plusall.example", FAIL, "+all"),
            ("typo.example", FAIL, "unknown term"),
            ("dangling.example", FAIL, "nowhere.example, which the record names, has no SPF"),
            ("loop.example", FAIL, "loop"),
            ("manylookups.example", FAIL, "11 DNS lookups"),
            ("tenlookups.example", PASS, "10 of 10"),
            ("softfail.example", PASS, "~all"),
            ("redirect.example", PASS, "-all"),  # the all of the record it redirects to
            ("noall.example", WARN, "no all mechanism"),
            ("slow.example", UNKNOWN, "Timeout"),
            ("broken.example", UNKNOWN, "did not answer"),
        ],
    )
    async def test_spf(self, zone: ZoneServer, domain: str, status: AuthStatus, says: str) -> None:
        result = await check_spf(resolver_on(zone), domain, lifetime=0.3)

        assert result.status is status, result
        assert says in result.detail

    @pytest.mark.parametrize(
        ("domain", "status", "says"),
        [
            ("good.example", PASS, "p=reject"),
            ("monitor.example", WARN, "p=none"),
            ("partial.example", WARN, "20%"),
            ("twodmarc.example", FAIL, "2 DMARC records"),
            ("nopolicy.example", FAIL, "no valid policy"),
            ("nospf.example", FAIL, "no DMARC record"),
            ("mail.good.example", PASS, "from good.example"),  # the organizational domain's
            ("slow.example", UNKNOWN, "did not answer"),
        ],
    )
    async def test_dmarc(
        self, zone: ZoneServer, domain: str, status: AuthStatus, says: str
    ) -> None:
        result = await check_dmarc(resolver_on(zone), domain, lifetime=0.3)

        assert result.status is status, result
        assert says in result.detail

    async def test_dkim_of_a_missing_a_revoked_and_no_selector(self, zone: ZoneServer) -> None:
        resolver = resolver_on(zone)

        missing = await check_dkim(
            resolver, SendingDomain("good.example", ("s2",), "good.example"), lifetime=0.3
        )
        revoked = await check_dkim(
            resolver, SendingDomain("good.example", ("s1", "old"), "good.example"), lifetime=0.3
        )
        unset = await check_dkim(
            resolver, SendingDomain("good.example", (), "good.example"), lifetime=0.3
        )
        unaligned = await check_dkim(
            resolver, SendingDomain("other.example", ("s1",), "good.example"), lifetime=0.3
        )

        assert (missing.status, missing.detail) == (
            FAIL,
            "no DKIM key at s2._domainkey.good.example",
        )
        assert (revoked.status, "revoked" in revoked.detail) == (FAIL, True)  # the worst one
        assert (unset.status, "LEADRELAY_DKIM_SELECTOR" in unset.detail) == (WARN, True)
        assert (unaligned.status, "does not align" in unaligned.detail) == (WARN, True)


def configured(settings: Settings, port: int, **changes: object) -> Settings:
    return settings.model_copy(
        update={
            "dns_resolvers": "127.0.0.1",
            "dns_port": port,
            "dns_timeout_seconds": 0.3,
            "dkim_selector": "s1",
            "dkim_domain": "",
            **changes,
        }
    )


def tenant_sending_from(address: str | None) -> Tenant:
    return Tenant(settings={"sender": {"email": address}} if address else {})


class TestSendingDomains:
    def test_the_senders_domain_else_the_servers_from(self, settings: Settings) -> None:
        chosen = configured(settings, 53, mail_from="ops@fallback.example", dkim_domain="d.example")

        assert domains.sending_domains(tenant_sending_from("sam@Good.Example"), chosen) == [
            SendingDomain("good.example", ("s1",), "d.example")
        ]
        assert [d.domain for d in domains.sending_domains(tenant_sending_from(None), chosen)] == [
            "fallback.example"
        ]
        assert domains.sending_domains(tenant_sending_from(None), settings) == []

    async def test_checks_once_then_answers_from_the_cache(
        self, zone: ZoneServer, settings: Settings
    ) -> None:
        chosen = configured(settings, zone.port)
        tenant = tenant_sending_from("sam@good.example")

        first = await domains.check_sending_domains(tenant, chosen, now=NOW)
        asked = len(zone.questions)
        again = await domains.check_sending_domains(tenant, chosen, now=NOW)

        assert [r.status for r in first] == [PASS]
        assert again == first
        assert len(zone.questions) == asked  # no new question

    async def test_offline_everything_is_unknown_and_quick(self, settings: Settings) -> None:
        chosen = configured(settings, unused_port())
        tenant = tenant_sending_from("sam@good.example")

        started = time.monotonic()
        (report,) = await domains.check_sending_domains(tenant, chosen, now=NOW)

        assert time.monotonic() - started < 3
        assert report.status is UNKNOWN
        assert {report.spf.status, report.dkim.status, report.dmarc.status} == {UNKNOWN}

    async def test_without_dns_servers_nothing_is_asked(self, settings: Settings) -> None:
        (report,) = await domains.check_sending_domains(
            tenant_sending_from("sam@good.example"), settings, now=NOW
        )

        assert report.status is UNKNOWN
        assert "LEADRELAY_DNS_RESOLVERS" in report.spf.detail

    async def test_a_silent_server_answers_unknown_within_the_bound(
        self, zone: ZoneServer, settings: Settings
    ) -> None:
        chosen = configured(settings, zone.port)

        (report,) = await domains.check_sending_domains(
            tenant_sending_from("sam@slow.example"), chosen, now=NOW
        )

        assert report.spf.status is UNKNOWN
        assert report.dmarc.status is UNKNOWN
        assert report.dkim.status is FAIL  # s1._domainkey.slow.example: NXDOMAIN, answered
        assert report.status is FAIL
