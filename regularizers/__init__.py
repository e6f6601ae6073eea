"""Regularizers: L1/L2 weight penalties, GAN gradient penalties, and the dropout modules.

Dropout is a layer (layers.dropout, `nn.Dropout` in a PyTorch port) re-exported here, so the
imports point one way: regularizers -> layers -> engine.
"""

from layers.dropout import Dropout, Dropout2d

from .gradient_penalty import gradient_penalty, r1_penalty
from .penalties import L1, L2, select_weights

__all__ = ["Dropout", "Dropout2d", "L1", "L2", "select_weights", "gradient_penalty", "r1_penalty"]
