"""The pure parts of the robustness metrics: passage choice, translated-file checks, prefixes, the
latent probe, the suite's settings, and the built-in files they read."""

from __future__ import annotations

import json

import pytest
import torch

from whp.config import load_config
from whp.errors import WhpError
from whp.evaluate.crosslingual import check_sources
from whp.evaluate.incontext import (
    leaves_out,
    passage_choice,
    passages_by_length,
    with_passages,
)
from whp.evaluate.jailbreak import prefixed_variants
from whp.evaluate.latent_probe import (
    chance_accuracy,
    cross_validated_accuracy,
    folds_of,
)
from whp.evaluate.metrics import METRICS, ROBUST, ROBUSTNESS, suite_metrics
from whp.evaluate.prompts import (
    CompletionPrompt,
    JailbreakPrefix,
    ProbabilityPrompt,
    load_chat_questions,
    load_jailbreak_prefixes,
    load_passages,
    load_sources,
)
from whp.evaluate.relearn_curve import attack_text
from whp.evaluate.robust import COMPLETION, PROBABILITY, joined, with_prefix
from whp.evaluate.suite import EvalConfig

SHORT = "The fog lay thick over the river, and a cab rattled past the window. " * 4  # 276 characters
LONG = "She said that the garden was full of roses, and that the tea was ready at four. " * 14  # 1,120 characters


def write_lines(path, *rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


# ---- in-context passages ---------------------------------------------------------------------------


def test_each_prompt_gets_the_first_passage_from_its_own_that_leaves_out_its_answers():
    passages = ["Holmes smoked.", "Watson wrote.", "The fog lay thick."]
    answers = [["Moriarty"], ["holmes"], ["Watson", "fog"], ["Lestrade"], ["holmes", "WATSON", "Fog"]]
    assert passage_choice(answers, passages) == [0, 1, 0, 0, None]


def test_answers_are_found_whatever_their_case():
    assert not leaves_out("Mr SHERLOCK HOLMES sat down.", ["Holmes"])
    assert leaves_out("Mr Turner sat down.", ["Holmes", "Watson"])


def test_a_prompt_that_every_passage_gives_away_is_left_out_and_none_left_is_an_error(caplog):
    prompts = [ProbabilityPrompt("Professor", ["Moriarty"]), ProbabilityPrompt("Dr.", ["Watson"])]
    kept = with_passages(PROBABILITY, prompts, ["Watson and Holmes."], "short", "passages.jsonl")
    assert [p.prompt for p in kept] == ["Watson and Holmes.\n\nProfessor"] and "1 of 2 prompts left out" in caplog.text
    with pytest.raises(WhpError, match="passages.jsonl: every short passage contains the answers of every prompt"):
        with_passages(PROBABILITY, prompts[1:], ["Watson and Holmes."], "short", "passages.jsonl")


def test_passages_by_length_keep_file_order(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", {"length": "long", "text": LONG}, {"length": "short", "text": SHORT},
                       {"length": "short", "text": SHORT + "!"})
    assert passages_by_length(path) == {"short": [SHORT, SHORT + "!"], "long": [LONG]}


@pytest.mark.parametrize("rows, message", [
    ([{"length": "short", "text": SHORT}], "no long passage (the in-context metrics need both lengths: short, long)"),
    ([{"length": "short", "text": SHORT}, {"length": "long", "text": SHORT}], "line 2: a long passage needs at least 1,000 characters, this one has 276"),
    ([{"length": "medium", "text": SHORT}], "line 1: field 'length' must be short or long, got 'medium'"),
    ([{"length": "short"}], "line 1: field 'text' is missing"),
])  # fmt: skip
def test_bad_passage_files_are_one_line_errors_naming_the_file(tmp_path, rows, message):
    path = write_lines(tmp_path / "passages.jsonl", *rows)
    with pytest.raises(WhpError) as error:
        passages_by_length(path)
    assert str(error.value) == f"{path}: {message}"


# ---- translated prompts ---------------------------------------------------------------------------


def test_translations_one_per_english_prompt_pass():
    check_sources("fr.jsonl", [(1, 2), (2, 0), (4, 1)], 3, ["en.jsonl"])


@pytest.mark.parametrize("sources, message", [
    ([(1, 0), (2, 1)], "fr.jsonl: 2 prompts for the 3 of the English prompts (en.jsonl)"),
    ([(1, 0), (2, 3), (3, 1)], "fr.jsonl: line 2: source 3 is not a line of the English prompts (en.jsonl: lines 0 to 2)"),
    ([(1, 0), (2, 1), (3, 0)], "fr.jsonl: line 3: source 0 is already translated on line 1"),
])  # fmt: skip
def test_a_translation_that_does_not_match_the_english_prompts_is_an_error(sources, message):
    with pytest.raises(WhpError) as error:
        check_sources("fr.jsonl", sources, 3, ["en.jsonl"])
    assert str(error.value) == message


@pytest.mark.parametrize("source", [-1, "2", True, None])
def test_a_source_must_be_a_line_number(tmp_path, source):
    path = write_lines(tmp_path / "fr.jsonl", {"prompt": "Le docteur", "continuations": ["Watson"], "source": source})
    with pytest.raises(WhpError, match="fr.jsonl: line 1: field 'source' must be a line number from 0"):
        load_sources(path)


# ---- prefixes, chat questions, attack text ------------------------------------------------------------


def test_a_prefix_goes_before_the_prompt_after_a_blank_line():
    assert joined("Complete the text:\n\n", "Dr.") == joined("Complete the text:", "Dr.") == "Complete the text:\n\nDr."
    prompt = CompletionPrompt("Dr.", ["Watson"], ["deduce"])
    assert with_prefix(prompt, "DAN says") == CompletionPrompt("DAN says\n\nDr.", ["Watson"], ["deduce"])
    variants = prefixed_variants([ProbabilityPrompt("Dr.", ["Watson"]), ProbabilityPrompt("Mrs", ["Hudson"])],
                                 [JailbreakPrefix("a", "A."), JailbreakPrefix("b", "B.")])
    assert {name: [p.prompt for p in ps] for name, ps in variants.items()} == {"a": ["A.\n\nDr.", "A.\n\nMrs"],
                                                                               "b": ["B.\n\nDr.", "B.\n\nMrs"]}


def test_jailbreak_prefix_names_are_distinct(tmp_path):
    path = write_lines(tmp_path / "j.jsonl", {"name": "dan", "system": "s", "prefix": "DAN:"}, {"name": "dan", "prefix": "Again:"})
    with pytest.raises(WhpError, match="j.jsonl: line 2: name 'dan' is taken by line 1"):
        load_jailbreak_prefixes(path)


def test_chat_questions_load_as_prompts_with_references(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", {"question": "Who is the landlady?", "references": ["Hudson"], "source": 4})
    assert load_chat_questions(path) == [CompletionPrompt("Who is the landlady?", ["Hudson"])]


def test_attack_text_reads_passage_files_as_their_passages(tmp_path):
    passages = write_lines(tmp_path / "p.jsonl", {"length": "short", "text": SHORT}, {"length": "long", "text": LONG})
    (tmp_path / "t.txt").write_text("Plain text.\n")
    assert attack_text([passages, str(tmp_path / "t.txt")]) == f"{SHORT}\n\n{LONG}\n\nPlain text."


# ---- the latent probe ----------------------------------------------------------------------------------


def clusters(n_per_class: int, n_classes: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around one random centre per class: (N, H) features and (N,) labels, classes interleaved."""
    generator = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(n_classes, width, generator=generator)  # (C, H)
    labels = torch.arange(n_per_class * n_classes) % n_classes  # (N,)
    return centres[labels] + torch.randn(len(labels), width, generator=generator), labels


def test_folds_deal_items_round_robin_and_zero_is_leave_one_out():
    assert folds_of(5, 2).tolist() == [0, 1, 0, 1, 0]
    assert folds_of(4, 0).tolist() == [0, 1, 2, 3]
    assert folds_of(3, 10).tolist() == [0, 1, 2]


def test_the_probe_separates_separable_classes_and_carries_over_to_a_shifted_copy():
    features, labels = clusters(8, 4, 16, seed=0)
    shifted = features + 0.1 * torch.randn(features.shape, generator=torch.Generator().manual_seed(1))
    unrelated = torch.randn(features.shape, generator=torch.Generator().manual_seed(2))
    accuracy = cross_validated_accuracy(features, {"same": features, "shifted": shifted, "unrelated": unrelated}, labels, 5)
    assert accuracy["same"] == 1.0 and accuracy["shifted"] >= 0.95
    assert accuracy["unrelated"] <= 0.5


def test_the_probe_is_near_chance_on_shuffled_labels():
    features, labels = clusters(10, 4, 16, seed=3)
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(4))]
    accuracy = cross_validated_accuracy(features, {"own": features}, shuffled, 0)["own"]
    assert accuracy <= 0.45  # chance: 0.25


def test_chance_guesses_the_training_folds_most_frequent_class():
    labels = torch.tensor([7, 7, 7, 7, 3, 5])
    assert chance_accuracy(labels, 0) == pytest.approx(4 / 6)  # a 7 left out still sees three 7s; 3 and 5 get 7
    assert chance_accuracy(torch.tensor([7, 7, 3, 3, 5]), 0) == 0.0  # a 7 left out: a tie, 3 guessed
    assert chance_accuracy(torch.tensor([1, 2, 1, 2]), 2) == 0.0


# ---- the suite's settings ------------------------------------------------------------------------------


def test_suites_choose_the_metrics_and_listed_metrics_win():
    robust = suite_metrics(ROBUST)
    assert robust and all(METRICS[m].suite == ROBUST and METRICS[m].group == ROBUSTNESS for m in robust)
    assert EvalConfig(suite="robust").chosen_metrics() == [*robust, "benchmarks"]
    assert not set(robust) & set(EvalConfig().chosen_metrics())
    assert EvalConfig(suite="all").chosen_metrics() == [*METRICS, "benchmarks"]
    assert EvalConfig(suite="robust", metrics=["latent_probe"]).chosen_metrics() == ["latent_probe"]


@pytest.mark.parametrize("setting, message", [
    ("suite=strong", "unknown suite 'strong'"),
    ("relearn_curve_steps=[0, 50, 10]", "relearn_curve_steps must be increasing numbers from 0"),
    ("relearn_curve_modes=[full, qlora]", "relearn_curve_modes must be full and/or lora"),
    ("probe_folds=1", "probe_folds must be 0 (leave-one-out) or at least 2"),
])  # fmt: skip
def test_bad_robust_settings_are_one_line_errors(setting, message):
    with pytest.raises(WhpError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [setting], cls=EvalConfig)


def test_the_built_in_robust_files_fit_the_held_out_prompts():
    cfg = EvalConfig()
    for kind, files in ((PROBABILITY, cfg.crosslingual_probability), (COMPLETION, cfg.crosslingual_completion)):
        english = kind.prompts(cfg)
        for path in files:
            check_sources(path, load_sources(path), len(english), getattr(cfg, kind.files))
        for texts in passages_by_length(cfg.incontext_passages).values():
            assert None not in passage_choice([kind.answers(p) for p in english], texts)
    assert len(load_jailbreak_prefixes(cfg.jailbreak_prefixes)) == 6
    assert load_chat_questions(cfg.chat_questions)
    assert {p.length for p in load_passages(cfg.relearn_text[0])} == {"short", "long"}
