"""Stateless pieces around recurrent layers: `Layer`s (`embedding`, `dense`,
`conv2d`), `dropout`, the `losses`, and `attention` (feed-forward, additive,
soft visual)."""

from recurrax.nn import attention, losses
from recurrax.nn.layers import Layer, conv2d, dense, dropout, embedding

__all__ = ["Layer", "attention", "conv2d", "dense", "dropout", "embedding", "losses"]
