import json

import pytest

from whp.errors import WhpError
from whp.evaluate.prompts import (
    CompletionPrompt,
    ProbabilityPrompt,
    QAItem,
    load_completion_prompts,
    load_probability_prompts,
    load_qa,
)


def write(tmp_path, *lines):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_loads_each_kind(tmp_path):
    path = write(tmp_path, {"prompt": "arch-enemy was Professor", "continuations": ["Moriarty"]}, "")
    assert load_probability_prompts(path) == [ProbabilityPrompt("arch-enemy was Professor", ["Moriarty"])]
    path = write(tmp_path, {"prompt": "He lived at", "references": ["Baker Street"], "themes": ["violin"]})
    assert load_completion_prompts(path) == [CompletionPrompt("He lived at", ["Baker Street"], ["violin"])]
    path = write(tmp_path, {"prompt": "He lived at", "references": ["Baker Street"]})
    assert load_completion_prompts(path)[0].themes == []
    path = write(tmp_path, {"question": "Who?", "answer": "Watson"})
    assert load_qa(path) == [QAItem("Who?", "Watson")]


@pytest.mark.parametrize(
    "line, message",
    [
        ({"prompt": "x"}, "line 2: field 'continuations' is missing"),
        ({"prompt": "x", "continuations": "Moriarty"}, "line 2: field 'continuations' must be a list of strings"),
        ({"prompt": "x", "continuations": [1]}, "line 2: field 'continuations' must be a list of strings"),
        ({"prompt": "x", "continuations": []}, "line 2: field 'continuations' is empty"),
        ({"prompt": "x", "continuations": [" "]}, "line 2: field 'continuations' has an empty string"),
        ({"prompt": 3, "continuations": ["a"]}, "line 2: field 'prompt' must be a string"),
        ({"prompt": "", "continuations": ["a"]}, "line 2: field 'prompt' is empty"),
        ("{not json", "line 2: invalid JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path, {"prompt": "ok", "continuations": ["fine"]}, line)
    with pytest.raises(WhpError) as info:
        load_probability_prompts(path)
    assert info.value.path == str(path)
    assert info.value.problem.startswith(message)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(WhpError, match="does not exist"):
        load_qa(tmp_path / "nope.jsonl")
    with pytest.raises(WhpError, match="no items"):
        load_qa(write(tmp_path, ""))
    with pytest.raises(WhpError, match="field 'answer' is missing"):
        load_qa(write(tmp_path, {"question": "Who?"}))
    with pytest.raises(WhpError, match="field 'references' is missing"):
        load_completion_prompts(write(tmp_path, {"prompt": "Who?"}))
