"""Measurements of models and text: `bleu` (corpus and sentence BLEU),
`ngram` (a smoothed n-gram baseline), `gradient_flow` (how gradients
vanish or explode through a cell: Jacobian norms and singular values) and
`lyapunov` (the largest Lyapunov exponent of a recurrence along a trajectory)."""

from recurrax.metrics import bleu, gradient_flow, lyapunov, ngram

__all__ = ["bleu", "gradient_flow", "lyapunov", "ngram"]
