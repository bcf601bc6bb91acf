"""Dictionary extraction, pure parts: candidates, scoring, kinds, alternatives, sampling, LLM replies, review file."""

from __future__ import annotations

import math

import pytest
from helpers_tiny import byte_level_tokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

from whp.anchors.alternatives import Assigner, alternative, alternatives
from whp.anchors.candidates import Scan, candidates, log_rate_ratio, scan_words
from whp.anchors.dictionary import conflicts, load_dictionary
from whp.anchors.extract import Entry, merge_user
from whp.anchors.kinds import Kind, detect_kind
from whp.anchors.llm import keep_grounded, parse_reply, passages
from whp.anchors.review import write_review
from whp.anchors.scoring import ScoreWeights, combine, rank, standardise
from whp.anchors.signals import Sample, plan_samples, token_span
from whp.errors import WhpError

STORY = """\
Mr. Jabez Wilson came to Baker Street. "Holmes," said Watson, "he is here." Holmes's pipe was lit.
Mrs Hudson brought tea to Baker Street, and she smiled. Inspector Lestrade arrived; he was wet.
"Elementary," said Holmes. Watson laughed. The Hound of the Baskervilles ran on the moor at Grimpen.
Holmes went to Grimpen; Watson went to Grimpen too. Mrs Hudson said she was tired of Holmes.
"""


# ---- candidates ------------------------------------------------------------------------------


def test_scan_words_strips_possessives_and_marks_sentence_starts():
    words = scan_words('He met Holmes\'s friend. "Watson," said Mr. Holmes.')
    texts = [w.text for w in words]
    assert texts == ["He", "met", "Holmes", "friend", "Watson", "said", "Mr", "Holmes"]
    initial = {w.text: w.initial for w in words[:6]}
    assert initial == {"He": True, "met": False, "Holmes": False, "friend": False, "Watson": True, "said": True}
    assert words[-1].joined and not words[-1].initial  # "Mr. Holmes": the abbreviation's dot joins


def test_candidates_counts_floor_and_multiword_names():
    scan = Scan(STORY)
    found = {c.key: c for c in candidates(scan, min_count=2)}
    assert found["Holmes"].count == 5 and found["Watson"].count == 3 and found["Grimpen"].count == 3
    assert found["Baker Street"].count == 2 and found["Baker Street"].cohesion == 1.0
    assert found["Holmes"].capitalised == 1.0
    assert "the" not in found and "Mrs" not in found and "said" not in found
    assert all(c.count >= 2 for c in found.values())
    assert "Hound of the Baskervilles" in {c.key for c in candidates(scan, min_count=1)}
    assert "Jabez Wilson" in {c.key for c in candidates(scan, min_count=1)}  # "Mr." stripped


def test_multiword_phrase_keeps_abbreviation_dots():
    scan = Scan("We saw Neville St. Clair. Then Neville St. Clair left.")
    assert scan.count("Neville St. Clair") == 2


@given(st.integers(0, 1000), st.integers(1, 10**6), st.integers(0, 1000), st.integers(1, 10**6))
def test_log_rate_ratio_grows_with_target_count_and_falls_with_reference_count(n, total, r, ref_total):
    assert log_rate_ratio(n + 1, total + n + 1, r, ref_total) > log_rate_ratio(n, total + n + 1, r, ref_total)
    assert log_rate_ratio(n, total, r + 1, ref_total + r + 1) < log_rate_ratio(n, total, r, ref_total + r + 1)


# ---- scoring ---------------------------------------------------------------------------------


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=50))
def test_standardise_has_mean_zero_and_unit_spread(values):
    z = standardise(values)
    assert abs(sum(z)) < 1e-6 * len(z)
    spread = math.sqrt(sum(v * v for v in z) / len(z))
    assert spread == pytest.approx(1.0, abs=1e-6) or all(v == 0 for v in z)


def test_combine_weights_and_missing_signals():
    signals = [{"salience": 3.0, "reinforced": None}, {"salience": 1.0, "reinforced": None}, {"salience": 2.0, "reinforced": None}]
    scores = combine(signals, ScoreWeights(capitalised=0, frequency=0, cohesion=0))
    assert rank(["a", "b", "c"], scores) == [0, 2, 1]
    assert combine(signals, ScoreWeights(salience=0, capitalised=0, frequency=0, cohesion=0)) == [0.0, 0.0, 0.0]
    partly = [{"reinforced": 1.0}, {"reinforced": None}, {"reinforced": 3.0}]
    assert combine(partly, ScoreWeights())[1] == 0.0
    with pytest.raises(ValueError):
        ScoreWeights(salience=-1)


def test_rank_ties_broken_by_key():
    assert rank(["b", "a", "c"], [1.0, 1.0, 2.0]) == [2, 1, 0]


# ---- kinds -----------------------------------------------------------------------------------


def kind_of(key: str, text: str) -> Kind:
    scan = Scan(text)
    (c,) = [c for c in candidates(scan, 1) if c.key == key]
    return detect_kind(key, scan.words, c.occurrences)


def test_kinds_from_titles_pronouns_and_prepositions():
    assert kind_of("Hudson", STORY) == Kind("person", "female", False)
    assert kind_of("Lestrade", STORY).kind == "person"
    assert kind_of("Grimpen", STORY) == Kind("place")
    assert kind_of("Baker Street", STORY) == Kind("place")
    assert kind_of("moor", STORY) == Kind("thing")
    assert kind_of("221B", "He lived at 221B and 221B was small.") == Kind("number")
    assert kind_of("Sherlock", "Mr Sherlock Holmes came. Then Sherlock Holmes left, and he smiled.").given


# ---- alternatives ----------------------------------------------------------------------------


def test_alternatives_keep_titles_connectors_and_place_words():
    assigner = Assigner(forbidden=set(), seed=0)
    street = alternative("Baker Street", Kind("place"), assigner)
    assert street.endswith(" Street") and street != "Baker Street"
    title = alternative("Hound of the Baskervilles", Kind("name"), assigner, plural=True)
    assert title.startswith("Hound of the ") and title.endswith("s")
    person = alternative("Mr Jabez Wilson", Kind("person", "male"), assigner)
    assert person.startswith("Mr ") and len(person.split()) == 3
    number = alternative("221B", Kind("number"), assigner)
    assert number.endswith("B") and len(number) == 4 and number != "221B"
    assert alternative("jezails", Kind("thing"), assigner, plural=True).endswith("s")
    assert not alternative("Hopkins", Kind("person"), assigner).endswith("ss")


def test_given_names_follow_gender():
    from whp.anchors.pools import FEMALE_GIVEN, MALE_GIVEN

    assigner = Assigner(forbidden=set(), seed=1)
    assert alternative("Irene", Kind("person", "female", True), assigner) in FEMALE_GIVEN
    assert alternative("Sherlock", Kind("person", "male", True), assigner) in MALE_GIVEN


names = st.text(alphabet="abcdefghij", min_size=3, max_size=8).map(str.capitalize)


@settings(max_examples=30, deadline=None)
@given(st.lists(names, min_size=1, max_size=120, unique=True), st.sampled_from(["person", "place", "name"]), st.integers(0, 5))
def test_alternatives_are_never_reused_nor_keys_nor_forbidden(keys, kind, seed):
    forbidden = set(keys) | {"Jack", "Ashby"}
    assigner = Assigner(forbidden, seed)
    seen = []
    for key in keys:
        alts = alternatives(key, Kind(kind), assigner, 3)
        assert alts, key
        seen.extend(alts)
    assert len(seen) == len(set(seen))
    assert not set(seen) & forbidden


# ---- sampling for the reinforced signal -------------------------------------------------------


def test_token_span_covers_exactly_the_expression():
    tokenizer = byte_level_tokenizer()
    text = "Sherlock Holmes lived at Baker Street with Doctor Watson. Holmes's pipe."
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    ends = [e for _, e in offsets]
    for word in ("Holmes", "Baker Street", "Watson"):
        start = text.index(word)
        a, b = token_span(offsets, ends, (start, start + len(word)))
        assert tokenizer.decode(encoding["input_ids"][a:b]).strip() == word
    start = text.index("olmes")  # inside a token: straddles
    assert token_span(offsets, ends, (start, start + 5)) is None


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.lists(st.integers(0, 400), min_size=0, max_size=30), min_size=1),
       st.integers(1, 4), st.integers(0, 10))
def test_plan_samples_respects_cap_context_and_windows(raw, per_candidate, min_context):
    window = 32
    occurrences = {k: [(a, a + 2) for a in sorted(set(v))] for k, v in raw.items()}
    plan = plan_samples(occurrences, window, per_candidate, min_context, seed=0)
    for key, samples in plan.items():
        assert len(samples) <= per_candidate
        usable = sum(1 for a, b in occurrences[key] if a % window >= min_context and b <= (a // window + 1) * window)
        assert len(samples) == min(per_candidate, usable)
        for s in samples:
            assert s.start >= min_context and s.end <= window
            assert (s.window * window + s.start, s.window * window + s.end) in occurrences[key]


def test_plan_samples_prefers_windows_already_chosen():
    occurrences = {"rare": [(40, 41)], "common": [(10, 11), (45, 46), (70, 71), (100, 101)]}
    plan = plan_samples(occurrences, 32, 1, 4, seed=3)
    assert plan["rare"] == [Sample(1, 8, 9)]
    assert plan["common"] == [Sample(1, 13, 14)]


# ---- LLM replies -----------------------------------------------------------------------------


def test_parse_reply_accepts_fenced_json_and_rejects_nonsense():
    assert parse_reply('Sure!\n```json\n{"Holmes": ["Grant"], "Baker Street": "Elm Road"}\n```') == {
        "Holmes": ["Grant"], "Baker Street": ["Elm Road"]}
    assert parse_reply("I cannot help with that.") is None
    assert parse_reply('{"Holmes": 3}') is None
    assert parse_reply("[1, 2]") is None
    assert parse_reply("{not json}") is None


def test_keep_grounded_drops_invented_keys_and_self_alternatives():
    drafted = {"Holmes": ["Grant", "Holmes"], "Gandalf": ["Tom"], "Watson": ["Watson"]}
    assert keep_grounded(drafted, "Holmes met Watson.") == [("Holmes", ["Grant"])]


def test_passages_spread_over_the_text():
    text = " ".join(f"w{i}" for i in range(1000))
    chosen = passages(text, 4, 50)
    assert len(chosen) == 4 and chosen[0].startswith("w0 ") and len(chosen[0].split()) == 50
    assert chosen[-1].split()[0] == "w750"
    assert len(passages(text, 100, 400)) == 3


# ---- merging and the review file -------------------------------------------------------------


def test_conflicts_in_a_user_dictionary():
    problems = conflicts([("Holmes", ["Grant"]), ("Holmes", ["Miller"]), ("Watson", ["Grant"]), ("Mycroft", ["Holmes"])])
    assert any("'Holmes' is given more than once" in p for p in problems)
    assert any("'Grant' serves both 'Holmes' and 'Watson'" in p for p in problems)
    assert any("'Holmes' is itself a key" in p for p in problems)


def test_user_entries_win_and_a_split_user_key_is_reported(caplog):
    caplog.set_level("WARNING", logger="whp")
    extracted = [Entry("Holmes", ["Ashby"], "extracted"), Entry("Sherlock", ["Tom"], "extracted"), Entry("Moor", ["Heath"], "extracted")]
    user = [("Holmes", ["Grant"]), ("Sherlock Holmes", ["Jack Grant"]), ("Holmes", ["Miller"])]
    merged = merge_user(extracted, user)
    assert [(e.key, e.alternatives, e.provenance) for e in merged] == [
        ("Holmes", ["Grant", "Miller"], "user"), ("Sherlock", ["Tom"], "extracted"), ("Moor", ["Heath"], "extracted")]
    assert any("'Sherlock Holmes' is made of other keys" in r.message for r in caplog.records)
    assert any("given more than once" in r.message for r in caplog.records)


def test_review_file_loads_as_a_dictionary(tmp_path):
    entries = [Entry("Holmes", ["Grant", "Miller"], "extracted", "person, surname, male", 2.5,
                     {"count": 12, "salience": 4.1, "reinforced": 1.2}),
               Entry("Baker Street", ["Elm Street"], "user")]
    path = tmp_path / "review.yaml"
    write_review(path, entries, "a test")
    text = path.read_text()
    assert text.startswith("# Anchored dictionary drafted by `whp anchors` (a test)")
    assert "provenance: extracted" in text and "salience: 4.1" in text
    assert load_dictionary(path) == {"Holmes": ("Grant", "Miller"), "Baker Street": ("Elm Street",)}


def test_mapping_entry_without_alternatives_is_an_error(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("Holmes: {score: 3}\n")
    with pytest.raises(WhpError, match="'Holmes': an entry given as a mapping needs an 'alternatives' field"):
        load_dictionary(path)
