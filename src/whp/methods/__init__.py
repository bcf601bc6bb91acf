"""Unlearning methods and stage objectives, each a loss function over the shared training loop.

A loss function takes `(model, batch)` and returns `(loss, n_tokens)`; `whp.train.train` does
the rest.
"""
