"""HellaSwag preprocessing, as lm-eval's `tasks/hellaswag/utils.py` (MIT licence, EleutherAI).

Loaded by `whp_hellaswag.yaml` through lm-eval's `!function` tag; kept identical in effect so
that local scores match the standard task's.
"""

import re

import datasets


def preprocess(text: str) -> str:
    """Strip WikiHow artefacts: " [title]" becomes a full stop, other [brackets] go."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def process_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    """Add `query` ("label: ctx_a Ctx_b"), `choices` (cleaned endings) and `gold` to each doc."""

    def _process_doc(doc):
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {
            "query": preprocess(doc["activity_label"] + ": " + ctx),
            "choices": [preprocess(ending) for ending in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(_process_doc)
