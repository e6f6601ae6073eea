"""``cupyx.scipy`` of the stand-in (only ``special``)."""

from . import special  # noqa: F401
