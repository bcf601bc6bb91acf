"""Evaluation: how much was forgotten, how much was kept, how easily it comes back.

Metric modules (each function returns a JSON-ready dict with at least "value"):
  prompts      prompt / question files (JSON Lines)
  familiarity  probability- and completion-based familiarity (the paper's two measures)
  judges       offline reference judge and an OpenAI-compatible LLM judge (grades 0-3)
  promptgen    completion prompts cut from the target text
  perplexity   perplexity over non-overlapping blocks
  memorisation ROUGE-L, verbatim memorisation, question answering (MUSE-style)
  mia          Min-K% / Min-K%++ membership inference and AUC
  relearn      relearning attack: fine-tune a few steps on target text, probe again
"""
