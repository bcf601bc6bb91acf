import pytest

from whp.errors import WhpError
from whp.evaluate.judges import mentions
from whp.evaluate.promptgen import generate_prompts

FILLER = "the fog lay thick over the river and a cab rattled past the window while rain fell ".split()


def make_text():
    parts = []
    for i in range(12):
        parts += FILLER + [f"Holmes looked at Watson and spoke of Baker Street {i}."] + FILLER
    return " ".join(parts)


KEYS = ["Holmes", "Watson", "Baker Street", "Moriarty"]


def test_prompts_end_before_a_term_and_name_what_follows():
    text = make_text()
    prompts = generate_prompts(text, KEYS, n=5, context_words=10, seed=1, lookahead_words=8)
    assert len(prompts) == 5
    for p in prompts:
        assert len(p.prompt.split()) == 10
        assert any(p.prompt + " " + k in " ".join(text.split()) for k in KEYS)  # cut just before a term
        assert p.references and all(r in KEYS for r in p.references)
        assert not any(mentions(p.prompt, r) for r in p.references)
        assert "Moriarty" not in p.references


def test_deterministic_with_seed_and_distinct_across_seeds():
    text = make_text()
    a = generate_prompts(text, KEYS, n=4, context_words=10, seed=3)
    assert a == generate_prompts(text, KEYS, n=4, context_words=10, seed=3)
    others = [generate_prompts(text, KEYS, n=4, context_words=10, seed=s) for s in range(5)]
    assert any(o != a for o in others)


def test_first_prompt_is_cut_exactly():
    text = "one two three four five Holmes six seven Watson eight"
    (prompt,) = generate_prompts(text, ["Holmes", "Watson"], n=3, context_words=5, lookahead_words=4)
    assert prompt.prompt == "one two three four five"
    assert prompt.references == ["Holmes", "Watson"]


def test_reference_already_in_prompt_is_dropped_and_passages_do_not_overlap():
    text = "a b c Holmes d e Holmes f g Watson"
    prompts = generate_prompts(text, ["Holmes", "Watson"], n=10, context_words=3, lookahead_words=3)
    for p in prompts:
        assert not any(mentions(p.prompt, r) for r in p.references)
    assert len(prompts) <= 2


def test_too_short_text_gives_no_prompts_and_no_keys_is_an_error():
    assert generate_prompts("Holmes", ["Holmes"], n=3, context_words=5) == []
    with pytest.raises(WhpError):
        generate_prompts("text", [" "], n=3)
