"""Typed errors. The library raises these; only the CLI/server turn them into messages and exit codes."""

from __future__ import annotations


class ItrError(Exception):
    """Base class for every error ITR raises on purpose. Its message is one line a user can act on."""


class InputError(ItrError):
    """A path, argument or input record is unusable (missing file, malformed line, empty query...)."""


class BadImageError(InputError):
    """One image could not be read; batch jobs record it and go on with the other items."""


class UnknownNameError(ItrError, KeyError):
    """A registry name (model, dataset...) is unknown. Subclasses KeyError, as a failed look-up."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class MissingExtraError(ItrError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the '{extra}' extra: pip install 'itr[{extra}]'")
        self.extra = extra


class IncompatibleIndexError(ItrError):
    """The index on disk was made by another model or an unsupported format version."""


class IndexLockedError(ItrError):
    """Another process is writing to the same index."""


class IncompatibleModelError(ItrError):
    """A model checkpoint cannot be used: wrong format or version, or weights that do not fit its config."""


class NotFoundError(ItrError):
    """An item id (or something an item should have, such as its image) does not exist."""


class ReadOnlyError(ItrError):
    """A change was asked of an index opened read-only."""
