"""The pair scorer, field by field, and the properties dedup relies on: symmetric scores, a
record always merges with itself, clusters that do not depend on order."""

from __future__ import annotations

import math
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrelay.capture.matching import (
    B2B_LEAD_CONFIG,
    FEBRL_CONFIG,
    AddressComparator,
    BlockingRule,
    CodeComparator,
    CompanyComparator,
    Contribution,
    DateComparator,
    Decision,
    DomainComparator,
    EmailComparator,
    ExactComparator,
    Level,
    MatchConfig,
    MatchField,
    NameComparator,
    PhoneComparator,
    Record,
    Weights,
    candidate_pairs,
    cluster,
    company_core,
    conflicting_clusters,
    measure_quality,
    score_pair,
    soundex,
    survivor,
)
from leadrelay.capture.synthetic import generate_b2b

AGREE, PARTIAL, DIFFER, DISAGREE, MISSING = (
    Level.AGREE,
    Level.PARTIAL,
    Level.DIFFER,
    Level.DISAGREE,
    Level.MISSING,
)


class TestExactComparator:
    def test_ignores_case_and_spacing(self) -> None:
        assert ExactComparator().compare(" New  South Wales", "new south wales") is AGREE

    def test_disagrees_on_any_other_value(self) -> None:
        assert ExactComparator().compare("nsw", "vic") is DISAGREE


class TestNameComparator:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("Robert Smith", "robert smith"),
            ("Smith, Robert", "Robert Smith"),
            ("Bob Smith", "Robert Smith"),
            ("Bill Gates", "William Gates"),
            ("José García", "Jose Garcia"),
            ("Mary-Ann O'Neil", "Maryann ONeil"),
            ("Robert J. Smith", "Robert Smith"),
        ],
    )
    def test_agrees_on_the_same_person_written_differently(self, a: str, b: str) -> None:
        assert NameComparator().compare(a, b) is AGREE

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("R. Smith", "Robert Smith"),
            ("Jonathon Smith", "Jonathan Smith"),
            ("Jhon Smith", "John Smith"),
            ("Robert Smyth", "Robert Smith"),
            ("Anderson, A.", "Arjun U Anderson"),
            ("Robt Smith", "Robert Smith"),
        ],
    )
    def test_partly_agrees_on_initials_typos_and_unknown_nicknames(self, a: str, b: str) -> None:
        assert NameComparator().compare(a, b) is PARTIAL

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("John Smith", "Joan Smith"),
            ("Robert Smith", "Jane Doe"),
            ("Robert J. Smith", "Robert K. Smith"),
            ("J. Smith", "K. Smith"),
        ],
    )
    def test_disagrees_on_different_people(self, a: str, b: str) -> None:
        assert NameComparator().compare(a, b) is DISAGREE

    def test_single_word_names_partly_agree_on_a_typo(self) -> None:
        assert NameComparator().compare("lachlan", "lachlna") is PARTIAL
        assert NameComparator().compare("lachlan", "lachlan") is AGREE
        assert NameComparator().compare("lachlan", "mitchell") is DISAGREE

    def test_nicknames_can_be_turned_off(self) -> None:
        names = NameComparator(nicknames=False)
        assert names.compare("Bob Smith", "Robert Smith") is DISAGREE
        assert names.compare("Rob Smith", "Robert Smith") is PARTIAL  # shares its first letters

    def test_reads_umlauts_and_their_spellings_alike(self) -> None:
        assert NameComparator().compare("Jürgen Müller", "Juergen Muller") is AGREE

    def test_punctuation_only_is_missing(self) -> None:
        assert NameComparator().compare("-", "Robert Smith") is MISSING


class TestCompanyComparator:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("Acme Inc.", "ACME, Incorporated"),
            ("Acme Inc", "Acme"),
            ("Acme LLC", "Acme L.L.C."),
            ("Tata Consultancy Services Pvt Ltd", "Tata Consultancy Services Private Limited"),
            ("Siemens AG", "Siemens"),
            ("Müller GmbH & Co. KG", "Mueller GmbH"),
            ("Acme Intl Corp", "Acme International Corporation"),
            ("Smith & Jones", "Smith and Jones Ltd"),
            ("Jones & Smith", "Smith & Jones"),
            ("Global Mfg Svcs", "Global Manufacturing Services"),
            ("The Acme Company", "Acme Co."),
        ],
    )
    def test_agrees_across_legal_forms_abbreviations_and_order(self, a: str, b: str) -> None:
        assert CompanyComparator().compare(a, b) is AGREE

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("Acme Widgetts", "Acme Widgets"),
            ("Acme", "Acme Widgets Inc"),
            ("IBM", "International Business Machines Corp."),
        ],
    )
    def test_partly_agrees_on_typos_containment_and_acronyms(self, a: str, b: str) -> None:
        assert CompanyComparator().compare(a, b) is PARTIAL

    def test_disagrees_on_other_companies(self) -> None:
        assert CompanyComparator().compare("Acme Solutions", "Apex Solutions") is DISAGREE

    def test_core_drops_article_legal_form_and_expands_abbreviations(self) -> None:
        assert company_core("The Acme Intl. Corp.") == "acme international"
        assert company_core("Infosys Pvt. Ltd.") == "infosys"


class TestPhoneComparator:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("+1 (415) 555-0101", "415.555.0101"),
            ("+14155550101", "001 415 555 0101"),
            ("0044 20 7946 0958", "+44 20 7946 0958"),
            ("020 7946 0958", "+44 (0)20 7946 0958"),
            ("+49 (0)30 12345678", "030 12345678"),
        ],
    )
    def test_agrees_across_formats_and_prefixes(self, a: str, b: str) -> None:
        assert PhoneComparator().compare(a, b) is AGREE

    @pytest.mark.parametrize(
        ("a", "b"), [("415 555 0101", "415 555 0107"), ("415 555 0101", "415 555 1001")]
    )
    def test_partly_agrees_on_one_wrong_or_swapped_digit(self, a: str, b: str) -> None:
        assert PhoneComparator().compare(a, b) is PARTIAL

    def test_disagrees_on_another_number(self) -> None:
        assert PhoneComparator().compare("415 555 0101", "212 555 0199") is DISAGREE

    def test_fewer_than_seven_digits_is_missing(self) -> None:
        assert PhoneComparator().compare("ext. 123", "415 555 0101") is MISSING


class TestEmailComparator:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("John.Smith@Acme.com", "john.smith@acme.com"),
            ("john.smith+crm@acme.com", "john.smith@acme.com"),
            ("j.o.h.n.smith@gmail.com", "johnsmith@googlemail.com"),
        ],
    )
    def test_agrees_on_one_mailbox(self, a: str, b: str) -> None:
        assert EmailComparator().compare(a, b) is AGREE

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("john.smith@acme.com", "jsmith@acme.com"),
            ("john.smith@acme.com", "smithj@acme.com"),
            ("john.smith@acme.com", "john.smith@gmail.com"),
            ("info@acme.com", "INFO@acme.com"),
        ],
    )
    def test_partly_agrees_on_name_variants_private_copies_and_role_mailboxes(
        self, a: str, b: str
    ) -> None:
        assert EmailComparator().compare(a, b) is PARTIAL

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("john.smith@acme.com", "jsmith77@yahoo.com"),
            ("john.smith@acme.com", "john.smith@other.com"),
            ("jane@gmail.com", "john@gmail.com"),
            ("info@acme.com", "john.smith@acme.com"),
        ],
    )
    def test_differs_across_domains_and_free_mail(self, a: str, b: str) -> None:
        assert EmailComparator().compare(a, b) is DIFFER

    def test_disagrees_on_colleagues_mailboxes(self) -> None:
        assert EmailComparator().compare("jane.doe@acme.com", "john.smith@acme.com") is DISAGREE

    def test_unusable_address_is_missing(self) -> None:
        assert EmailComparator().compare("not an address", "john@acme.com") is MISSING


class TestDomainComparator:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("https://www.acme.com/contact?x=1", "acme.com"),
            ("shop.acme.co.uk", "http://acme.co.uk:8080"),
            ("ACME.COM", "john@acme.com"),
        ],
    )
    def test_agrees_on_the_registrable_domain(self, a: str, b: str) -> None:
        assert DomainComparator().compare(a, b) is AGREE

    def test_partly_agrees_on_the_same_name_under_another_suffix(self) -> None:
        assert DomainComparator().compare("acme.com", "www.acme.co.uk") is PARTIAL

    def test_disagrees_on_another_domain(self) -> None:
        assert DomainComparator().compare("acme.com", "apex.com") is DISAGREE

    def test_free_mail_providers_are_missing(self) -> None:
        assert DomainComparator().compare("gmail.com", "gmail.com") is MISSING


class TestAddressComparator:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("12 Main St", "12 main street"),
            ("pridhamstreet", "pridham street"),
            ("San Francisco", "SAN FRANCISCO"),
            ("Street Main 12", "12 Main Street"),
        ],
    )
    def test_agrees_on_the_same_place(self, a: str, b: str) -> None:
        assert AddressComparator().compare(a, b) is AGREE

    def test_partly_agrees_on_a_typo(self) -> None:
        assert AddressComparator().compare("tullaroop street", "tullarop street") is PARTIAL

    def test_disagrees_when_numbers_differ(self) -> None:
        assert AddressComparator().compare("12 Main St", "14 Main St") is DISAGREE

    def test_disagrees_on_another_street(self) -> None:
        assert AddressComparator().compare("smith street", "jones street") is DISAGREE


class TestDateComparator:
    @pytest.mark.parametrize("other", ["1981-04-27", "27/04/1981", "19810427"])
    def test_agrees_across_formats(self, other: str) -> None:
        assert DateComparator().compare("19810427", other) is AGREE

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("1981-04-07", "1981-07-04"),  # day and month swapped
            ("19810427", "19810428"),  # one digit
            ("19810427", "19810472"),  # adjacent digits swapped
            ("19810427", "19180427"),
        ],
    )
    def test_partly_agrees_on_swapped_day_and_month_or_one_digit(self, a: str, b: str) -> None:
        assert DateComparator().compare(a, b) is PARTIAL

    def test_disagrees_on_another_date(self) -> None:
        assert DateComparator().compare("19810427", "19650312") is DISAGREE


class TestCodeComparator:
    def test_agrees_ignoring_case_and_spaces(self) -> None:
        assert CodeComparator().compare("SW1A 1AA", "sw1a1aa") is AGREE

    def test_partly_agrees_on_one_edit(self) -> None:
        assert CodeComparator().compare("4011", "4017") is PARTIAL
        assert CodeComparator().compare("6988048", "6988408") is PARTIAL

    def test_short_codes_have_no_partial_level(self) -> None:
        assert CodeComparator().compare("12", "13") is DISAGREE


class TestSoundex:
    @pytest.mark.parametrize(
        ("word", "code"),
        [
            ("Robert", "R163"),
            ("Rupert", "R163"),
            ("Ashcraft", "A261"),
            ("Tymczak", "T522"),
            ("Pfister", "P236"),
            ("Lee", "L000"),
            ("Müller", "M460"),
            ("", ""),
        ],
    )
    def test_codes_like_american_soundex(self, word: str, code: str) -> None:
        assert soundex(word) == code


class TestWeights:
    def test_are_log2_of_m_over_u(self) -> None:
        weights = Weights.from_probabilities(agree=(0.8, 0.01), partial=(0.1, 0.02))
        assert weights.agree == pytest.approx(math.log2(80))
        assert weights.partial == pytest.approx(math.log2(5))
        assert weights.disagree == pytest.approx(math.log2(0.1 / 0.97))
        assert weights.of(MISSING) == 0.0
        assert weights.of(DIFFER) == 0.0

    def test_refuse_probabilities_that_leave_nothing_for_disagreement(self) -> None:
        with pytest.raises(ValueError, match="out of range"):
            Weights.from_probabilities(agree=(0.9, 0.01), partial=(0.1, 0.01))


def _lead(**fields: str | None) -> dict[str, str | None]:
    return dict(fields)


class TestScorePair:
    def test_explains_every_field_and_sums_the_weights(self) -> None:
        a = _lead(full_name="Robert Smith", email="robert.smith@acme.com", company="Acme Inc")
        b = _lead(full_name="Bob Smith", email="rsmith@acme.com", company="ACME")
        result = score_pair(a, b, B2B_LEAD_CONFIG)
        assert [c.field for c in result.contributions] == [f.field for f in B2B_LEAD_CONFIG.fields]
        levels = {c.field: c.level for c in result.contributions}
        assert levels["full_name"] is AGREE
        assert levels["email"] is PARTIAL
        assert levels["company"] is AGREE
        assert levels["phone_e164"] is MISSING
        assert result.score == pytest.approx(sum(c.weight for c in result.contributions))
        assert result.decision is Decision.MERGE

    def test_missing_fields_weigh_nothing(self) -> None:
        result = score_pair(_lead(), _lead(email="a@b.com"), B2B_LEAD_CONFIG)
        assert result.score == 0.0
        assert result.decision is Decision.DISTINCT
        assert all(c.level is MISSING for c in result.contributions)

    def test_organisation_agreements_count_once(self) -> None:
        """Colleagues share the switchboard, company, domain, city and website: that is one
        organisation, not five coincidences, and their names tell them apart."""
        jane = _lead(
            full_name="Jane Doe",
            email="jane.doe@acme.com",
            phone_e164="+1 415 555 0100",
            company="Acme Inc",
            domain="acme.com",
            city="San Francisco",
            website="https://www.acme.com",
        )
        john = {**jane, "full_name": "John Smith", "email": "john.smith@acme.com"}
        result = score_pair(jane, john, B2B_LEAD_CONFIG)
        counted = [c for c in result.contributions if c.counted_in is not None]
        assert {c.field for c in counted} == {"company", "domain", "city", "website"}
        assert all(c.counted_in == "phone_e164" and c.weight == 0.0 for c in counted)
        assert result.decision is Decision.DISTINCT

    def test_a_shared_switchboard_does_not_merge_a_lead_without_a_name(self) -> None:
        a = _lead(email="jane.doe@acme.com", phone_e164="+1 415 555 0100", company="Acme")
        b = _lead(email="john.smith@acme.com", phone_e164="415-555-0100", company="Acme Inc.")
        assert score_pair(a, b, B2B_LEAD_CONFIG).decision is not Decision.MERGE

    def test_namesakes_at_different_companies_stay_apart(self) -> None:
        a = _lead(full_name="John Smith", company="Acme", email="john.smith@acme.com")
        b = _lead(full_name="John Smith", company="Apex", email="john.smith@apex.com")
        assert score_pair(a, b, B2B_LEAD_CONFIG).decision is Decision.DISTINCT

    def test_a_typed_twice_lead_goes_to_review_or_merge(self) -> None:
        a = _lead(full_name="Pat Nguyen", company="Martin Consulting Corp.", city="SF")
        b = _lead(full_name="Patricia Nguyen", company="Martin Consulting", city="San Francisco")
        assert score_pair(a, b, B2B_LEAD_CONFIG).decision is not Decision.DISTINCT

    def test_domain_falls_back_to_the_website_and_work_address(self) -> None:
        a = _lead(website="https://www.acme.com/")
        b = _lead(email="jane@acme.com")
        levels = {c.field: c.level for c in score_pair(a, b, B2B_LEAD_CONFIG).contributions}
        assert levels["domain"] is AGREE

    def test_thresholds_decide(self) -> None:
        config = MatchConfig(
            fields=(MatchField("x", ExactComparator(), Weights(agree=5.0, disagree=-5.0)),),
            high=5.0,
            low=0.0,
        )
        assert score_pair({"x": "a"}, {"x": "a"}, config).decision is Decision.MERGE
        assert score_pair({"x": "a"}, {}, config).decision is Decision.REVIEW
        assert score_pair({"x": "a"}, {"x": "b"}, config).decision is Decision.DISTINCT

    def test_config_refuses_low_above_high(self) -> None:
        with pytest.raises(ValueError, match="low threshold"):
            MatchConfig(fields=(), high=1.0, low=2.0)

    def test_contribution_reads_as_field_level_weight(self) -> None:
        field, level, weight, counted_in = Contribution("email", AGREE, 19.4)
        assert (field, level, weight, counted_in) == ("email", AGREE, 19.4, None)


# --- properties -----------------------------------------------------------------------------

_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs", "S")), max_size=30
)
_VALUE = st.one_of(st.none(), st.just(""), st.just("   "), _TEXT)
_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéüñ", min_size=1, max_size=10)
_NAME = st.lists(_WORD, min_size=1, max_size=3).map(" ".join)
_COMPANY = st.tuples(
    st.lists(_WORD, min_size=1, max_size=3).map(" ".join),
    st.sampled_from(["", " Inc.", " Pvt Ltd", " GmbH", " & Co", " LLC"]),
).map("".join)
_EMAIL = st.tuples(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._", min_size=1, max_size=12),
    st.sampled_from(["acme.com", "gmail.com", "example.co.uk", "b.de"]),
).filter(lambda t: t[0].strip("._") not in {"info", "sales", "contact", "admin", "hr"})
_PHONE = st.text(alphabet="0123456789", min_size=7, max_size=15).flatmap(
    lambda digits: st.sampled_from([digits, f"+{digits}", f"({digits[:3]}) {digits[3:]}"])
)


def _records(fields: tuple[str, ...]) -> st.SearchStrategy[dict[str, str | None]]:
    return st.fixed_dictionaries({name: _VALUE for name in fields})


_B2B_FIELDS = tuple(f.field for f in B2B_LEAD_CONFIG.fields)
_FEBRL_FIELDS = tuple(f.field for f in FEBRL_CONFIG.fields)


class TestScoreProperties:
    @settings(max_examples=300, deadline=None)
    @given(_records(_B2B_FIELDS), _records(_B2B_FIELDS))
    def test_lead_scores_are_symmetric(self, a: Record, b: Record) -> None:
        assert score_pair(a, b, B2B_LEAD_CONFIG) == score_pair(b, a, B2B_LEAD_CONFIG)

    @settings(max_examples=300, deadline=None)
    @given(_records(_FEBRL_FIELDS), _records(_FEBRL_FIELDS))
    def test_person_scores_are_symmetric(self, a: Record, b: Record) -> None:
        assert score_pair(a, b, FEBRL_CONFIG) == score_pair(b, a, FEBRL_CONFIG)

    @settings(max_examples=300, deadline=None)
    @given(
        _records(_B2B_FIELDS),
        st.one_of(
            st.fixed_dictionaries({"email": _EMAIL.map("@".join)}),
            st.fixed_dictionaries({"phone_e164": _PHONE}),
            st.fixed_dictionaries({"full_name": _NAME, "company": _COMPANY}),
        ),
    )
    def test_a_lead_with_email_phone_or_name_and_company_merges_with_itself(
        self, noise: dict[str, str | None], key: dict[str, str]
    ) -> None:
        """Role mailboxes (info@…) are left out on purpose: they are shared, so they only
        partly agree."""
        record = {**noise, **key}
        result = score_pair(record, record, B2B_LEAD_CONFIG)
        assert result.decision is Decision.MERGE, result
        assert all(c.weight >= 0 for c in result.contributions)

    @settings(max_examples=200, deadline=None)
    @given(_records(_FEBRL_FIELDS))
    def test_a_record_never_counts_against_itself(self, record: Record) -> None:
        result = score_pair(record, record, FEBRL_CONFIG)
        assert all(c.weight >= 0 for c in result.contributions)


# --- blocking ------------------------------------------------------------------------------


class TestCandidatePairs:
    def test_pairs_records_sharing_a_key_once_smaller_id_first(self) -> None:
        records = {
            "c": _lead(email="jane@acme.com", phone_e164="+1 415 555 0100"),
            "a": _lead(email="Jane@Acme.com", phone_e164="415.555.0100"),
            "b": _lead(email="other@apex.com"),
        }
        assert candidate_pairs(records, B2B_LEAD_CONFIG) == [("a", "c")]

    def test_large_blocks_fall_back_to_a_sorted_neighbourhood(self) -> None:
        config = MatchConfig(
            fields=(MatchField("x", ExactComparator(), Weights(agree=1.0, disagree=-1.0)),),
            high=1.0,
            low=0.0,
            blocking=(BlockingRule("everyone", lambda record: ["same"]),),
            max_block_size=10,
            window=3,
        )
        records = {i: {"x": f"{i:03d}"} for i in range(50)}
        pairs = candidate_pairs(records, config)
        assert pairs == sorted({(i, i + 1) for i in range(49)} | {(i, i + 2) for i in range(48)})

    def test_keeps_true_lead_pairs(self) -> None:
        records, true_pairs = generate_b2b(300, dup_rate=0.3, seed=3)
        found = {frozenset(p) for p in candidate_pairs(records, B2B_LEAD_CONFIG)}
        assert len(true_pairs & found) / len(true_pairs) >= 0.97


# --- clusters and survivors --------------------------------------------------------------


class TestCluster:
    def test_joins_merges_transitively_and_ignores_the_rest(self) -> None:
        decisions = [
            ("a", "b", Decision.MERGE),
            ("b", "c", Decision.MERGE),
            ("d", "e", Decision.REVIEW),
            ("e", "f", Decision.DISTINCT),
            ("x", "y", Decision.MERGE),
        ]
        assert cluster(decisions) == [{"a", "b", "c"}, {"x", "y"}]

    def test_accepts_uuids(self) -> None:
        ids = sorted(uuid.UUID(int=i) for i in range(3))
        assert cluster([(ids[2], ids[0], Decision.MERGE)]) == [{ids[0], ids[2]}]

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(0, 30),
                st.integers(0, 30),
                st.sampled_from(list(Decision)),
            ),
            max_size=60,
        ),
        st.randoms(use_true_random=False),
    )
    def test_does_not_depend_on_the_order_of_decisions_or_ids(
        self, decisions: list[tuple[int, int, Decision]], rnd: random.Random
    ) -> None:
        shuffled = [(b, a, d) if rnd.random() < 0.5 else (a, b, d) for a, b, d in decisions]
        rnd.shuffle(shuffled)
        assert cluster(shuffled) == cluster(decisions)
        # and equals the connected components of the merge graph
        merged = [(a, b) for a, b, d in decisions if d is Decision.MERGE and a != b]
        components: list[set[int]] = []
        for a, b in merged:
            touching = [c for c in components if a in c or b in c]
            joined = {a, b}.union(*touching)
            components = [c for c in components if c not in touching] + [joined]
        assert cluster(decisions) == sorted(components, key=min)

    @settings(max_examples=25, deadline=None)
    @given(st.integers(0, 2**16), st.randoms(use_true_random=False))
    def test_dedup_of_a_batch_does_not_depend_on_record_order(
        self, seed: int, rnd: random.Random
    ) -> None:
        records, _ = generate_b2b(40, dup_rate=0.5, seed=seed)
        ids = list(records)
        rnd.shuffle(ids)
        shuffled = {record_id: records[record_id] for record_id in ids}

        def clusters(batch: dict[str, dict[str, str | None]]) -> list[set[str]]:
            pairs = candidate_pairs(batch, B2B_LEAD_CONFIG)
            return cluster(
                (a, b, score_pair(batch[a], batch[b], B2B_LEAD_CONFIG).decision) for a, b in pairs
            )

        assert clusters(shuffled) == clusters(records)


class TestConflictingClusters:
    def test_holds_back_a_cluster_chained_through_a_record_that_contradicts_no_one(self) -> None:
        """A lead with only the switchboard merges with two colleagues who are not the same
        person: the chain must not merge them."""
        decisions = [
            ("hub", "jane", Decision.MERGE),
            ("hub", "john", Decision.MERGE),
            ("jane", "john", Decision.DISTINCT),
            ("x", "y", Decision.MERGE),
            ("y", "z", Decision.MERGE),
            ("x", "z", Decision.REVIEW),
        ]
        clusters = cluster(decisions)
        assert conflicting_clusters(clusters, decisions) == [{"hub", "jane", "john"}]

    def test_a_clean_chain_is_not_a_conflict(self) -> None:
        decisions = [("a", "b", Decision.MERGE), ("b", "c", Decision.MERGE)]
        assert conflicting_clusters(cluster(decisions), decisions) == []


class TestSurvivor:
    def test_is_the_oldest_record(self) -> None:
        records = {
            "b": {"created_at": "2024-03-01T00:00:00+00:00"},
            "a": {"created_at": "2024-05-01T00:00:00+00:00"},
        }
        assert survivor(records) == "b"

    def test_compares_instants_across_offsets(self) -> None:
        records = {
            "a": {"created_at": "2024-01-01T09:00:00+00:00"},
            "b": {"created_at": "2024-01-01T10:00:00+02:00"},  # 08:00 UTC
        }
        assert survivor(records) == "b"

    def test_ties_and_unknown_ages_go_to_the_smallest_id(self) -> None:
        same = "2024-01-01T00:00:00+00:00"
        assert survivor({"b": {"created_at": same}, "a": {"created_at": same}}) == "a"
        assert survivor({"b": {}, "a": {"created_at": None}}) == "a"

    def test_records_without_a_date_come_after_dated_ones(self) -> None:
        assert survivor({"a": {}, "z": {"created_at": "2030-01-01T00:00:00Z"}}) == "z"

    def test_refuses_naive_dates_and_empty_clusters(self) -> None:
        with pytest.raises(ValueError, match="time zone"):
            survivor({"a": {"created_at": "2024-01-01T00:00:00"}})
        with pytest.raises(ValueError, match="empty"):
            survivor({})


class TestMeasureQuality:
    def test_counts_merges_reviews_and_pairs_blocking_missed(self) -> None:
        truth = {frozenset(("a", "b")), frozenset(("c", "d")), frozenset(("e", "f"))}
        quality = measure_quality(
            [
                ("a", "b", Decision.MERGE),
                ("c", "d", Decision.REVIEW),
                ("a", "c", Decision.MERGE),
                ("b", "d", Decision.DISTINCT),
            ],
            truth,
        )
        assert quality.blocking_recall == pytest.approx(2 / 3)
        assert quality.precision == pytest.approx(1 / 2)
        assert quality.recall == pytest.approx(1 / 3)
        assert quality.f1 == pytest.approx(0.4)
        assert quality.precision_with_review == pytest.approx(2 / 3)
        assert quality.recall_with_review == pytest.approx(2 / 3)
