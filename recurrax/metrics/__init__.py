"""Measurements of models and text: `bleu` (corpus and sentence BLEU),
`ngram` (a smoothed n-gram baseline) and `gradient_flow` (how gradients
vanish or explode through a cell: Jacobian norms and singular values)."""

from recurrax.metrics import bleu, gradient_flow, ngram

__all__ = ["bleu", "gradient_flow", "ngram"]
