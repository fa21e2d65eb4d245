"""Exceptions shared by every dfx package."""

__all__ = ["DfxError", "MissingDependencyError"]


class DfxError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits 1."""


class MissingDependencyError(DfxError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    def __init__(self, module: str, extra: str):
        super().__init__(f"{module} is not installed; install it with: pip install 'dfx[{extra}]'")
        self.module = module
        self.extra = extra
