"""whp: make a causal language model forget a body of knowledge.

The "Who's Harry Potter?" method of Eldan & Russinovich (2023): a reinforced model, anchored
terms with generic translations, generic labels from combined logits, and fine-tuning the
baseline on those labels. See the package modules for each stage.
"""

__version__ = "0.1.0"
