"""Normalizers: tables of real-world input, and properties over any text (they never raise,
normalizing twice changes nothing, E.164 parses back to itself, company keys ignore case,
punctuation and the order of legal suffixes)."""

from __future__ import annotations

import ipaddress
import operator

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from leadrelay.capture import normalize
from leadrelay.capture.normalize import (
    ROLE_LOCAL_PARTS,
    company_key,
    normalize_company,
    normalize_country,
    normalize_email,
    normalize_lead,
    normalize_person_name,
    normalize_phone,
    registrable_domain,
)
from leadrelay.capture.normalize import _validated_email as validate_email_in_full

# The first call of a normalizer loads a list (public suffixes, countries); no deadline.
PROPERTY = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
REGIONS = st.sampled_from([None, "GB", "US", "IN", "DE", "FR", "gb", "ZZ"])


# Pieces of local parts where email-validator's answer turns on details: combining marks
# (also after the @), characters NFC changes (the Kelvin sign becomes ASCII), spaces, quotes.
INTL_LOCAL_PIECES = (
    *("a", "Z", "é", "e\u0301", "\u0301", "\u212a", "ß", "ﬁ", "İ", "日本", ".", "..", "+"),
    *("-", "\u00a0", " ", "\u200b", "😀", "\u0338", "<", '"', "@", "\\", "\x00", "ｉｎｆｏ"),
    *("postmaster", "\u2126", "\u3002"),
)


def long_domain(length: int) -> str:
    """A valid domain of 191 + `length` characters: the address limits are near."""
    return ".".join(["b" * 63] * 3) + "." + "c" * length + ".com"


MAIL_DOMAINS = (
    *("acme.com", "ACME.com", "exämple.de", "xn--exmple-cua.com", "localhost", "acme.com."),
    *("-acme.com", "[1.2.3.4]", "a.b@c.com", "b" * 64 + ".com", "\u0301acme.com"),
    *("x" * 240 + ".com", "mailinator.com"),
)


class TestNormalizeEmail:
    @pytest.mark.parametrize(
        ("raw", "value", "domain", "ascii_domain"),
        [
            ("jane.doe@acme.com", "jane.doe@acme.com", "acme.com", "acme.com"),
            ("  Jane.Doe@ACME.com ", "Jane.Doe@acme.com", "acme.com", "acme.com"),
            ("mailto:jane@acme.co.uk", "jane@acme.co.uk", "acme.co.uk", "acme.co.uk"),
            ("José@Exámple.COM", "José@exámple.com", "exámple.com", "xn--exmple-qta.com"),
            ("josé@exámple.com", "josé@exámple.com", "exámple.com", "xn--exmple-qta.com"),
            ("user@xn--exmple-cua.com", "user@exämple.com", "exämple.com", "xn--exmple-cua.com"),
            ("info@пример.рф", "info@пример.рф", "пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ],
    )
    def test_normalizes_valid_addresses_including_idn(
        self, raw: str, value: str, domain: str, ascii_domain: str
    ) -> None:
        email = normalize_email(raw)
        assert (email.value, email.domain, email.ascii_domain, email.error) == (
            value,
            domain,
            ascii_domain,
            None,
        )
        assert email.raw == raw

    @pytest.mark.parametrize(
        "raw",
        [
            "info@acme.com",
            "Sales@acme.com",
            "no-reply@acme.com",
            "noreply@acme.com",
            "no_reply@acme.com",
            "support+eu@acme.com",
            "HR@acme.com",
            "billing@acme.com",
        ],
    )
    def test_flags_role_accounts(self, raw: str) -> None:
        assert normalize_email(raw).is_role

    @pytest.mark.parametrize(
        "raw", ["jane@acme.com", "information.jane@acme.com", "salesman@x.com"]
    )
    def test_does_not_flag_personal_mailboxes_as_role(self, raw: str) -> None:
        assert not normalize_email(raw).is_role

    def test_role_list_is_a_module_level_frozenset(self) -> None:
        assert isinstance(ROLE_LOCAL_PARTS, frozenset)
        assert {"info", "sales", "admin", "support", "noreply", "team", "jobs"} <= ROLE_LOCAL_PARTS

    @pytest.mark.parametrize(
        "raw", ["jane@gmail.com", "jane@yahoo.co.uk", "jane@hotmail.com", "jane@googlemail.com"]
    )
    def test_flags_free_providers(self, raw: str) -> None:
        email = normalize_email(raw)
        assert email.is_free
        assert not email.is_disposable

    @pytest.mark.parametrize(
        "raw",
        ["x@mailinator.com", "x@sub.mailinator.com", "x@a.b.mailinator.com", "x@guerrillamail.com"],
    )
    def test_flags_disposable_providers_and_their_subdomains(self, raw: str) -> None:
        assert normalize_email(raw).is_disposable

    def test_business_domain_is_neither_free_nor_disposable(self) -> None:
        email = normalize_email("jane@acme-industries.com")
        assert (email.is_free, email.is_disposable, email.is_role) == (False, False, False)

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            ("", "empty"),
            ("   ", "empty"),
            ("jane.acme.com", "missing_at"),
            ("@acme.com", "invalid_local_part"),
            ("jane doe@acme.com", "invalid_local_part"),
            ('"jane"@acme.com', "invalid_local_part"),
            ("jane@", "invalid_domain"),
            ("jane@localhost", "invalid_domain"),
            ("jane@-acme.com", "invalid_domain"),
            ("jane@acme.test", "reserved_domain"),
            ("jane..doe@acme.com", "invalid_syntax"),
            ("Jane <jane@acme.com>", "invalid_syntax"),
            ("j" * 250 + "@acme.com", "too_long"),
        ],
    )
    def test_rejects_with_a_machine_reason_and_keeps_raw(self, raw: str, reason: str) -> None:
        email = normalize_email(raw)
        assert (email.value, email.error, email.raw) == (None, reason, raw)
        assert (email.is_role, email.is_free, email.is_disposable) == (False, False, False)

    @PROPERTY
    @given(st.text())
    def test_never_raises_on_any_text(self, raw: str) -> None:
        email = normalize_email(raw)
        assert (email.value is None) == (email.error is not None)

    @PROPERTY
    @given(st.one_of(st.emails(), st.text()))
    def test_is_idempotent(self, raw: str) -> None:
        first = normalize_email(raw)
        if first.value is not None:
            again = normalize_email(first.value)
            assert again.value == first.value
            assert again.ascii_domain == first.ascii_domain

    @PROPERTY
    @given(
        st.one_of(
            st.emails(),
            st.builds(
                "{}@{}".format,
                st.one_of(
                    st.from_regex(r"[A-Za-z0-9._%+'-]{1,70}", fullmatch=True),
                    st.sampled_from(["Info", "SALES", "postmaster", "jane..doe", ".jane"]),
                ),
                st.one_of(
                    st.from_regex(r"[A-Za-z0-9-]{1,20}(\.[A-Za-z0-9-]{1,12}){1,3}", fullmatch=True),
                    st.sampled_from(["ACME.com", "acme.com.", "localhost", "acme.test", "x" * 250]),
                ),
            ),
        )
    )
    def test_fast_path_answers_exactly_as_email_validator(self, raw: str) -> None:
        assert normalize_email(raw) == validate_email_in_full(raw, raw.strip())

    @settings(deadline=None, max_examples=600, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.builds(
            "{}@{}".format,
            st.one_of(
                st.lists(
                    st.sampled_from(INTL_LOCAL_PIECES),
                    max_size=8,
                ).map("".join),
                st.text(min_size=1, max_size=70),
                # near the limits: 64 characters, 254 bytes
                st.builds(
                    operator.mul, st.sampled_from(["é", "日", "😀", "a"]), st.integers(1, 66)
                ),
            ),
            st.one_of(
                st.sampled_from(MAIL_DOMAINS),
                st.builds(long_domain, st.integers(0, 62)),
                st.from_regex(r"[A-Za-z0-9-]{1,20}(\.[A-Za-z0-9-]{1,12}){1,3}", fullmatch=True),
            ),
        )
    )
    def test_fast_path_for_internationalized_local_parts_answers_as_email_validator(
        self, raw: str
    ) -> None:
        assert normalize_email(raw) == validate_email_in_full(raw, raw.strip())

    @example(long_domain(56))  # `a@` and the domain: 254 characters, the most allowed
    @example(long_domain(57))
    @PROPERTY
    @given(
        st.one_of(
            st.text(alphabet='abcxyz019-.@[]<>" \t', max_size=20),
            st.from_regex(r"[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){1,4}\.?", fullmatch=True),
            st.sampled_from(["acme.test", "x.invalid", "a.local", "[1.2.3.4]", "[", "x" * 252]),
            st.builds(long_domain, st.integers(0, 62)),
        )
    )
    def test_checks_a_domain_as_validate_email_does_after_a_plain_local_part(
        self, domain: str
    ) -> None:
        try:
            checked = validate_email(
                "a@" + domain,
                check_deliverability=False,
                allow_smtputf8=True,
                allow_quoted_local=False,
                allow_domain_literal=False,
                allow_display_name=False,
            )
        except EmailNotValidError:
            expected = None
        else:
            expected = (checked.domain, checked.ascii_domain)
        assert normalize._checked_mail_domain.__wrapped__(domain) == expected


class TestNormalizePhone:
    @pytest.mark.parametrize(
        ("raw", "region", "e164", "found_region", "number_type"),
        [
            ("020 7946 0958", "GB", "+442079460958", "GB", "fixed_line"),
            ("0161 496 0000", "GB", "+441614960000", "GB", "fixed_line"),
            ("07400 123456", "GB", "+447400123456", "GB", "mobile"),
            ("0800 123 4567", "GB", "+448001234567", "GB", "toll_free"),
            ("0044 20 7946 0958", "GB", "+442079460958", "GB", "fixed_line"),
            ("(212) 555-0123", "US", "+12125550123", "US", "fixed_line_or_mobile"),
            ("1 (212) 555-0123", "US", "+12125550123", "US", "fixed_line_or_mobile"),
            ("1-800-FLOWERS", "US", "+18003569377", "US", "toll_free"),
            ("022 2778 1234", "IN", "+912227781234", "IN", "fixed_line"),
            ("098765 43210", "IN", "+919876543210", "IN", "mobile"),
            ("030 1234567", "DE", "+49301234567", "DE", "fixed_line"),
            ("0176 12345678", "DE", "+4917612345678", "DE", "mobile"),
            ("01 42 68 53 00", "FR", "+33142685300", "FR", "fixed_line"),
            ("06 12 34 56 78", "fr", "+33612345678", "FR", "mobile"),
            ("09 70 12 34 56", "FR", "+33970123456", "FR", "voip"),
        ],
    )
    def test_reads_national_formats_with_the_default_region(
        self, raw: str, region: str, e164: str, found_region: str, number_type: str
    ) -> None:
        phone = normalize_phone(raw, default_region=region)
        assert (phone.e164, phone.region, phone.number_type, phone.error) == (
            e164,
            found_region,
            number_type,
            None,
        )

    @pytest.mark.parametrize("region", [None, "US", "DE", "IN"])
    def test_plus_numbers_ignore_the_default_region(self, region: str | None) -> None:
        phone = normalize_phone("+44 20 7946 0958", default_region=region)
        assert (phone.e164, phone.region) == ("+442079460958", "GB")

    def test_region_comes_from_the_number_not_the_default(self) -> None:
        phone = normalize_phone("+33 6 12 34 56 78", default_region="DE")
        assert (phone.region, phone.number_type) == ("FR", "mobile")

    def test_keeps_the_extension_apart(self) -> None:
        phone = normalize_phone("+44 20 7946 0958 ext. 123", default_region=None)
        assert (phone.e164, phone.extension) == ("+442079460958", "123")

    def test_accepts_tel_uris(self) -> None:
        assert normalize_phone("tel:+1-212-555-0123", default_region=None).e164 == "+12125550123"

    @pytest.mark.parametrize(
        ("raw", "region", "reason"),
        [
            ("", "GB", "empty"),
            ("call me", "GB", "not_a_number"),
            ("12", "US", "too_short"),
            ("020 7946 09581", "GB", "too_long"),
            ("020 7946 095", "GB", "invalid_for_region"),
            ("07700 900123", "GB", "invalid_for_region"),  # Ofcom's range for drama, unassigned
            ("+999 1234 5678", None, "invalid_country_code"),
            ("020 7946 0958", None, "missing_region"),
            ("020 7946 0958", "UK", "unknown_region"),
        ],
    )
    def test_invalid_numbers_keep_raw_with_a_reason(
        self, raw: str, region: str | None, reason: str
    ) -> None:
        phone = normalize_phone(raw, default_region=region)
        assert (phone.e164, phone.region, phone.number_type) == (None, None, None)
        assert (phone.raw, phone.error) == (raw, reason)

    @PROPERTY
    @given(st.text(), REGIONS)
    def test_never_raises_on_any_text(self, raw: str, region: str | None) -> None:
        phone = normalize_phone(raw, default_region=region)
        assert (phone.e164 is None) == (phone.error is not None)

    @PROPERTY
    @given(
        st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)),
        st.sampled_from(sorted(normalize.PHONE_TYPE_NAMES)),
        st.from_regex(r"[0-9]{0,4}", fullmatch=True),
    )
    def test_finds_region_and_type_as_phonenumbers_does(
        self, region: str, number_type: int, digits: str
    ) -> None:
        """Valid numbers of every type and region, and ones a few digits off them."""
        example = phonenumbers.example_number_for_type(region, number_type)
        if example is None:
            return
        national = str(example.national_number)
        national = national[: len(national) - len(digits)] + digits
        try:
            number = phonenumbers.parse(f"+{example.country_code}{national}", None)
        except phonenumbers.NumberParseException:
            return
        assert normalize._region_and_type(number) == (
            phonenumbers.region_code_for_number(number),
            phonenumbers.number_type(number),
        )

    @PROPERTY
    @given(st.from_regex(r"\+?[0-9][0-9 ()./-]{3,18}", fullmatch=True), REGIONS)
    def test_e164_parses_back_to_itself(self, raw: str, region: str | None) -> None:
        phone = normalize_phone(raw, default_region=region)
        if phone.e164 is None:
            return
        parsed = phonenumbers.parse(phone.e164, None)
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == phone.e164
        for other_region in (None, "US", "IN"):
            again = normalize_phone(phone.e164, default_region=other_region)
            assert (again.e164, again.region, again.number_type) == (
                phone.e164,
                phone.region,
                phone.number_type,
            )


class TestRegistrableDomain:
    @pytest.mark.parametrize(
        ("raw", "domain"),
        [
            ("https://www.Shop.Example.co.uk/x", "example.co.uk"),
            ("http://example.com:8080/path?q=1#frag", "example.com"),
            ("www.example.com", "example.com"),
            (" WWW.EXAMPLE.COM. ", "example.com"),
            ("example.com/about", "example.com"),
            ("https://user:secret@blog.example.org/", "example.org"),
            ("jane@mail.example.com", "example.com"),
            ("mailto:jane@example.com.au", "example.com.au"),
            ("https://exämple.com", "xn--exmple-cua.com"),
            ("xn--exmple-cua.com", "xn--exmple-cua.com"),
            ("https://shop.пример.рф", "xn--e1afmkfd.xn--p1ai"),
            ("acme.github.io", "acme.github.io"),  # a private suffix: each site its own domain
        ],
    )
    def test_reduces_urls_hosts_and_emails_to_the_registrable_domain(
        self, raw: str, domain: str
    ) -> None:
        assert registrable_domain(raw) == domain

    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "localhost",
            "http://localhost:8000",
            "http://192.168.0.1/",
            "10.0.0.1",
            "[::1]",
            "http://[::1]:80/",
            "co.uk",
            "com",
            "example.notatld",
            "http://a..b.com",
            "http://[bad",
            "not a domain",
            "-acme.com",
            "jane@",
        ],
    )
    def test_answers_none_when_there_is_no_registrable_domain(self, raw: str) -> None:
        assert registrable_domain(raw) is None

    @PROPERTY
    @given(
        st.one_of(
            st.ip_addresses().map(str),
            st.text(alphabet="0123456789abcdef.:%", max_size=24),
        )
    )
    def test_an_ip_address_is_never_a_domain(self, host: str) -> None:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        assert normalize._registrable_host.__wrapped__(host) is None
        url_host = f"[{host}]" if ":" in host else host
        assert registrable_domain(f"http://{url_host}/") is None

    @PROPERTY
    @given(
        st.one_of(st.text(), st.emails(), st.from_regex(r"https?://[a-z.-]{1,30}", fullmatch=True))
    )
    def test_never_raises_and_is_idempotent(self, raw: str) -> None:
        domain = registrable_domain(raw)
        if domain is not None:
            assert domain.isascii()
            assert registrable_domain(domain) == domain


class TestNormalizeCountry:
    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            ("GB", "GB"),
            ("gb", "GB"),
            ("GBR", "GB"),
            ("826", "GB"),
            ("UK", "GB"),
            ("United Kingdom", "GB"),
            ("England", "GB"),
            ("US", "US"),
            ("USA", "US"),
            ("U.S.A.", "US"),
            ("United States", "US"),
            ("United States of America", "US"),
            ("Deutschland", "DE"),
            ("germany", "DE"),
            ("DEU", "DE"),
            ("India", "IN"),
            ("France", "FR"),
            ("the Netherlands", "NL"),
            ("Holland", "NL"),
            ("Côte d'Ivoire", "CI"),
            ("Cote dIvoire", "CI"),
            ("Ivory Coast", "CI"),
            ("South Korea", "KR"),
            ("Republic of Korea", "KR"),
            ("Korea, Republic of", "KR"),
            ("North Korea", "KP"),
            ("Viet Nam", "VN"),
            ("Vietnam", "VN"),
            ("Czech Republic", "CZ"),
            ("Czechia", "CZ"),
            ("Türkiye", "TR"),
            ("Turkey", "TR"),
            ("Iran", "IR"),
            ("Congo", "CG"),
            ("Democratic Republic of the Congo", "CD"),
            ("British Virgin Islands", "VG"),
            ("  españa ", "ES"),
        ],
    )
    def test_maps_codes_names_and_common_variants_to_alpha_2(self, raw: str, code: str) -> None:
        assert normalize_country(raw) == code

    @pytest.mark.parametrize(
        "raw", ["", "Korea", "Virgin Islands", "Europe", "Narnia", "XX", "Germny", "Kosovo"]
    )
    def test_answers_none_rather_than_guess(self, raw: str) -> None:
        assert normalize_country(raw) is None

    @PROPERTY
    @given(st.text())
    def test_never_raises_and_codes_map_to_themselves(self, raw: str) -> None:
        code = normalize_country(raw)
        if code is not None:
            assert normalize_country(code) == code


class TestNormalizePersonName:
    @pytest.mark.parametrize(
        ("raw", "name"),
        [
            ("JOHN O'BRIEN", "John O'Brien"),
            ("john o’brien", "John O’Brien"),
            ("  mary   ann  smith ", "Mary Ann Smith"),
            ("jean-luc picard", "Jean-Luc Picard"),
            ("mcdonald", "McDonald"),
            ("RONALD MCDONALD", "Ronald McDonald"),
            ("macdonald", "MacDonald"),
            ("MACK", "Mack"),
            ("d'angelo", "D'Angelo"),
            ("LUDWIG VAN BEETHOVEN", "Ludwig van Beethoven"),
            ("anna de jong", "Anna de Jong"),
            ("DE LA CRUZ", "De la Cruz"),
            ("NGUYEN LE", "Nguyen Le"),
            ("ÉMILE ZOLA", "Émile Zola"),
            ("J.R.R. TOLKIEN", "J.R.R. Tolkien"),
        ],
    )
    def test_recases_names_typed_in_one_case(self, raw: str, name: str) -> None:
        assert normalize_person_name(raw) == name

    @pytest.mark.parametrize(
        ("raw", "name"),
        [
            ("Nguyen LE", "Nguyen LE"),
            ("McDonald", "McDonald"),
            ("danah Boyd ", "danah Boyd"),
            ("  Jean-Luc   Picard", "Jean-Luc Picard"),
            ("李小龙", "李小龙"),
        ],
    )
    def test_keeps_mixed_case_as_typed_only_tidied(self, raw: str, name: str) -> None:
        assert normalize_person_name(raw) == name

    @PROPERTY
    @given(st.text())
    def test_never_raises_and_is_idempotent(self, raw: str) -> None:
        name = normalize_person_name(raw)
        assert normalize_person_name(name) == name
        assert name == name.strip()


class TestNormalizeCompany:
    @pytest.mark.parametrize(
        ("raw", "name"),
        [("  Acme   Widgets, Inc. ", "Acme Widgets, Inc."), ("ACME LTD", "ACME LTD"), ("", "")],
    )
    def test_trims_and_keeps_case(self, raw: str, name: str) -> None:
        assert normalize_company(raw) == name

    @PROPERTY
    @given(st.text())
    def test_never_raises_and_is_idempotent(self, raw: str) -> None:
        name = normalize_company(raw)
        assert normalize_company(name) == name


LEGAL_SUFFIXES = ["Inc.", "Ltd", "LLC", "GmbH", "Co.", "Corp.", "Pvt. Ltd.", "S.A.", "plc", "& Co"]
COMPANY_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéü", min_size=3, max_size=9).filter(
    lambda word: company_key(word) == word and word not in {"the", "and", "sas", "kgaa"}
)


class TestCompanyKey:
    @pytest.mark.parametrize(
        ("raw", "key"),
        [
            ("Acme Inc.", "acme"),
            ("ACME, INC", "acme"),
            ("Acme Incorporated", "acme"),
            ("The Acme Company", "acme"),
            ("Acme Co. Ltd", "acme"),
            ("Acme Ltd Co", "acme"),
            ("Acme Pvt. Ltd.", "acme"),
            ("ACME PRIVATE LIMITED", "acme"),
            ("Acme Widgets GmbH & Co. KG", "acme widgets"),
            ("Smith & Co", "smith"),
            ("Johnson & Johnson", "johnson and johnson"),
            ("Société Générale S.A.", "societe generale"),
            ("Hewlett-Packard Enterprise", "hewlett packard enterprise"),
            ("I.B.M. Corp", "ibm"),
            ("McDonald's Corporation", "mcdonalds"),
            ("Polska Sp. z o.o.", "polska"),
            ("Limited", "limited"),
            ("", ""),
            ("!!!", ""),
        ],
    )
    def test_keys_company_names_for_matching(self, raw: str, key: str) -> None:
        assert company_key(raw) == key

    @PROPERTY
    @given(
        st.lists(COMPANY_WORD, min_size=1, max_size=4),
        st.lists(st.sampled_from(LEGAL_SUFFIXES), max_size=3),
    )
    def test_ignores_case_punctuation_and_suffix_order(
        self, words: list[str], suffixes: list[str]
    ) -> None:
        name = " ".join(words)
        key = company_key(name)
        assert company_key(name.upper()) == key
        assert company_key(name.title()) == key
        assert company_key(", ".join(words) + ".") == key
        assert company_key(f"  {name}  ") == key
        assert company_key(" ".join([name, *suffixes])) == key
        assert company_key(", ".join([name, *reversed(suffixes)])) == key

    @PROPERTY
    @given(st.text())
    def test_never_raises_and_is_idempotent(self, raw: str) -> None:
        key = company_key(raw)
        assert company_key(key) == key
        assert key == key.strip()


class TestNormalizeLead:
    def test_normalizes_a_typical_row(self) -> None:
        lead = normalize_lead(
            {
                "full_name": "  JANE   DOE ",
                "email": "Jane.Doe@Acme-Widgets.co.uk",
                "phone": "020 7946 0958",
                "company": "Acme Widgets Ltd",
                "website": "https://www.acme-widgets.co.uk/contact",
                "country": "United Kingdom",
                "city": "LONDON",
            },
            default_region="US",
        )
        assert lead.full_name == "Jane Doe"
        assert lead.email == "Jane.Doe@acme-widgets.co.uk"
        assert (lead.phone_e164, lead.phone_region, lead.phone_type) == (
            "+442079460958",
            "GB",
            "fixed_line",
        )
        assert (lead.company, lead.company_key) == ("Acme Widgets Ltd", "acme widgets")
        assert (lead.domain, lead.domain_source) == ("acme-widgets.co.uk", "website")
        assert (lead.country, lead.city) == ("GB", "London")
        assert lead.flags == frozenset()
        assert lead.errors == ()

    def test_reads_national_phones_with_the_leads_own_country_first(self) -> None:
        lead = normalize_lead(
            {"phone": "030 1234567", "country": "Deutschland"}, default_region="US"
        )
        assert lead.phone_e164 == "+49301234567"
        assert normalize_lead({"phone": "030 1234567"}, default_region="DE").phone_e164 == (
            "+49301234567"
        )

    def test_reports_every_bad_field_with_flags(self) -> None:
        lead = normalize_lead(
            {"email": "jane@", "phone": "12", "website": "localhost", "country": "Narnia"},
            default_region="GB",
        )
        assert lead.error_dicts == [
            {"field": "country", "reason": "unknown_country"},
            {"field": "email", "reason": "invalid_domain"},
            {"field": "phone", "reason": "too_short"},
            {"field": "website", "reason": "invalid_domain"},
        ]
        assert lead.flags == {
            "invalid_email",
            "invalid_phone",
            "invalid_website",
            "unknown_country",
        }
        assert (lead.email, lead.phone_e164, lead.domain, lead.country) == (None, None, None, None)
        assert lead.email_detail is not None
        assert lead.email_detail.raw == "jane@"

    def test_flags_role_free_and_disposable_emails(self) -> None:
        assert normalize_lead({"email": "info@acme.com"}, default_region=None).flags == {
            "role_email"
        }
        assert normalize_lead({"email": "jane@gmail.com"}, default_region=None).flags == {
            "free_email"
        }
        assert (
            "disposable_email"
            in normalize_lead({"email": "x@sub.mailinator.com"}, default_region=None).flags
        )

    def test_takes_the_domain_from_a_business_email_but_never_a_free_one(self) -> None:
        business = normalize_lead({"email": "jane@mail.acme.com"}, default_region=None)
        assert (business.domain, business.domain_source) == ("acme.com", "email")
        free = normalize_lead({"email": "jane@gmail.com"}, default_region=None)
        assert (free.domain, free.domain_source) == (None, None)

    def test_composes_the_full_name_from_its_parts(self) -> None:
        lead = normalize_lead({"first_name": "JANE", "last_name": "o'neil"}, default_region=None)
        assert (lead.first_name, lead.last_name, lead.full_name) == (
            "Jane",
            "O'Neil",
            "Jane O'Neil",
        )

    def test_blank_fields_are_absent_not_errors(self) -> None:
        lead = normalize_lead(
            {"email": "  ", "phone": None, "company": "", "website": " "}, default_region="GB"
        )
        assert lead.errors == ()
        assert lead.flags == frozenset()
        assert lead.as_record() == {
            "full_name": None,
            "first_name": None,
            "last_name": None,
            "email": None,
            "phone_e164": None,
            "phone_region": None,
            "phone_type": None,
            "company": None,
            "company_key": None,
            "domain": None,
            "country": None,
            "city": None,
            "flags": [],
        }

    @PROPERTY
    @given(
        st.dictionaries(
            st.sampled_from(["full_name", "email", "phone", "company", "website", "country"]),
            st.one_of(st.none(), st.text()),
        ),
        REGIONS,
    )
    def test_never_raises_on_any_row(
        self, fields: dict[str, str | None], region: str | None
    ) -> None:
        lead = normalize_lead(fields, default_region=region)
        assert len(lead.errors) <= len(fields)
