"""``cupy.cuda.compiler`` of the stand-in: its error type."""


class CompileException(Exception):
    """As ``cupy.cuda.compiler.CompileException``."""
