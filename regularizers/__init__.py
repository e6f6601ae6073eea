"""Regularizers: dropout modules, L1/L2 weight penalties and GAN gradient penalties."""

import layers  # noqa: F401  (first: layers re-exports Dropout from here; this order avoids a cycle)

from .dropout import Dropout, Dropout2d
from .gradient_penalty import gradient_penalty, r1_penalty
from .penalties import L1, L2, select_weights

__all__ = ["Dropout", "Dropout2d", "L1", "L2", "select_weights", "gradient_penalty", "r1_penalty"]
