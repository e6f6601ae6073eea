"""``cupy.cuda.driver`` of the stand-in: its error type."""


class CUDADriverError(RuntimeError):
    """As ``cupy_backends.cuda.api.driver.CUDADriverError``."""
