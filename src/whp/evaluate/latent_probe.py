"""Latent probe: does the target still sit in the hidden states, even when the output no longer
shows it? For each probability prompt, the hidden state at its last position (one layer, the
middle one by default) and its class, the first token of its first continuation. A multinomial
logistic-regression probe is trained on a reference model's states (the model before unlearning)
over all folds but one and tested on the evaluated model's states of the fold left out: a high
accuracy means the evaluated model still encodes the answers where the reference did.

Records the probe's accuracy on the evaluated model (the value), the reference model's own
cross-validated accuracy, and chance: the accuracy of always guessing the training folds' most
frequent class. Without a reference model the probe is trained and tested on the evaluated
model's own states (value = its own cross-validated accuracy)."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from whp import batches, distributed
from whp.errors import WhpError
from whp.evaluate.familiarity import first_visible_token
from whp.evaluate.prompts import ProbabilityPrompt
from whp.evaluate.robust import PROBABILITY, skipped
from whp.models import check_same_vocabulary, load_model, load_tokenizer

L2 = 1e-2  # weight of the squared norm of the probe's weights (features standardised)
MAX_ITERATIONS = 200  # LBFGS iterations per fit
NO_REFERENCE = "none: the probe is trained and tested on the evaluated model's own states (cross-validated)"


# ---- the probe (pure) ----------------------------------------------------------------------------


def folds_of(n: int, folds: int) -> torch.Tensor:
    """(N,) fold of each of n items: item i in fold i mod k, k = `folds` (0 = leave-one-out)."""
    k = n if folds == 0 else min(folds, n)
    return torch.arange(n) % k


def fit_probe(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on standardised features, L2 on the weights, LBFGS from
    zeros (deterministic): (mean (H,), scale (H,), weights (H, C), bias (C,))."""
    features = features.double()  # (N, H)
    mean, scale = features.mean(0), features.std(0, unbiased=False) + 1e-6  # (H,)
    x = (features - mean) / scale  # (N, H)
    weights = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)  # (H, C)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)  # (C,)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=MAX_ITERATIONS, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(x @ weights + bias, labels) + L2 * weights.square().sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    return mean, scale, weights.detach(), bias.detach()


def predict(probe: tuple[torch.Tensor, ...], features: torch.Tensor) -> torch.Tensor:
    """(N,) predicted class of each row of `features` (N, H)."""
    mean, scale, weights, bias = probe
    return (((features.double() - mean) / scale) @ weights + bias).argmax(-1)


def cross_validated_accuracy(fit_on: torch.Tensor, test_on: dict[str, torch.Tensor], labels: torch.Tensor,
                             folds: int) -> dict[str, float]:
    """For each fold, a probe fitted on the other folds' rows of `fit_on` (N, H) predicts that
    fold's rows of every feature set of `test_on` ({name: (N, H)}); {name: accuracy over all N}."""
    classes, targets = torch.unique(labels, return_inverse=True)  # targets (N,) in 0..C-1
    fold = folds_of(len(labels), folds)
    correct = {name: 0 for name in test_on}
    for k in fold.unique():
        held = fold == k  # (N,)
        probe = fit_probe(fit_on[~held], targets[~held], len(classes))
        for name, features in test_on.items():
            correct[name] += int((predict(probe, features[held]) == targets[held]).sum())
    return {name: hits / len(labels) for name, hits in correct.items()}


def chance_accuracy(labels: torch.Tensor, folds: int) -> float:
    """Cross-validated accuracy of always guessing the training folds' most frequent class (the
    smallest such class on a tie)."""
    fold = folds_of(len(labels), folds)
    correct = 0
    for k in fold.unique():
        held = fold == k
        values, counts = labels[~held].unique(return_counts=True)
        guess = values[counts.argmax()]  # unique() sorts values and argmax takes the first maximum
        correct += int((labels[held] == guess).sum())
    return correct / len(labels)


# ---- hidden states -------------------------------------------------------------------------------


def class_tokens(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[ProbabilityPrompt]) -> list[int]:
    """Each prompt's class: the first visible token of its first continuation as it follows the prompt."""
    tokens = []
    for p in prompts:
        token = first_visible_token(tokenizer, " " + p.continuations[0].lstrip())
        if token is None:
            raise WhpError(f"prompt {p.prompt!r}: its first continuation tokenizes to nothing")
        tokens.append(token)
    return tokens


def middle_layer(model: PreTrainedModel) -> int:
    return model.config.num_hidden_layers // 2


def last_states(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], layer: int,
                batch_size: int) -> torch.Tensor:
    """(N, H) hidden state after `layer` layers (0 = the embeddings) at each text's last token."""
    layers = model.config.num_hidden_layers
    if not 0 <= layer <= layers:
        raise WhpError(f"probe_layer {layer} is not a layer of the model (0 to {layers})")
    rows = batches.encode(tokenizer, texts)
    device, pad = batches.model_device(model), batches.pad_id(tokenizer)
    mine: dict[int, torch.Tensor] = {}
    with torch.inference_mode():
        for batch in batches.my_batches(len(rows), batch_size):
            input_ids, mask = batches.left_pad([rows[i] for i in batch], pad, device)  # (B, T)
            out = model(input_ids=input_ids, attention_mask=mask, position_ids=batches.position_ids(mask),
                        output_hidden_states=True)
            states = out.hidden_states[layer][:, -1].float().cpu()  # (B, H): left padding puts every last token at -1
            mine.update({i: states[row] for row, i in enumerate(batch)})
    every = distributed.merged(mine)
    return torch.stack([every[i] for i in range(len(rows))])  # (N, H)


def reference_states(cfg, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], layer: int, hidden_size: int) -> torch.Tensor:
    """(N, H) states of `cfg.reference_model`, which must share the evaluated model's vocabulary and width."""
    check_same_vocabulary(tokenizer, load_tokenizer(cfg.reference_model), "the evaluated model", cfg.reference_model)
    reference = load_model(cfg.reference_model, cfg.resolved_dtype()).to(distributed.device())
    if reference.config.hidden_size != hidden_size:
        raise WhpError(f"hidden size {reference.config.hidden_size} differs from the evaluated model's {hidden_size}",
                       cfg.reference_model)
    states = last_states(reference, tokenizer, texts, layer, cfg.batch_size)
    del reference
    return states


def measure(model, tokenizer, cfg, path: str) -> dict:
    """The probe trained on `cfg.reference_model`'s states (or the model's own), tested on the
    model's, cross-validated over `cfg.probe_folds` folds of the probability prompts."""
    from whp.inference import InferenceWHP

    if isinstance(model, InferenceWHP):
        return skipped(path, "latent_probe", "not defined for the inference-time WHP wrapper (no hidden states of its own)")
    prompts = PROBABILITY.prompts(cfg)
    if len(prompts) < 2:
        raise WhpError("the latent probe needs at least 2 probability prompts")
    labels = torch.tensor(class_tokens(tokenizer, prompts))  # (N,)
    layer = middle_layer(model) if cfg.probe_layer is None else cfg.probe_layer
    texts = [p.prompt for p in prompts]
    own = last_states(model, tokenizer, texts, layer, cfg.batch_size)  # (N, H)
    fit_on = own if cfg.reference_model is None else reference_states(cfg, tokenizer, texts, layer, own.shape[1])
    accuracy = cross_validated_accuracy(fit_on, {"model": own, "reference": fit_on}, labels, cfg.probe_folds)
    return {
        "value": accuracy["model"],
        "reference_accuracy": accuracy["reference"],
        "chance": chance_accuracy(labels, cfg.probe_folds),
        "reference_model": cfg.reference_model or NO_REFERENCE,
        "layer": layer,
        "n": len(prompts),
        "classes": len(labels.unique()),
        "folds": int(folds_of(len(prompts), cfg.probe_folds).max()) + 1,
    }
