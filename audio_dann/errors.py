"""Every error a user can cause, in one place.

The command line turns any :class:`UserError` into one line on stderr and exit code 2
(``cli._guard``); anything else is a bug and keeps its traceback. Each class says which
kind of input was wrong; the message always names the path, key or option and the reason.
The ``ValueError`` base of most of them is kept for library callers who caught that before.

This module imports nothing heavy: the CLI reads it before any command runs.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "UserError",
    "ConfigError",
    "AudioError",
    "ScanError",
    "ManifestError",
    "PrepareError",
    "StoreError",
    "BundleError",
    "RunError",
    "DivergedError",
    "OptionError",
    "ExportError",
    "OutputLockedError",
]


class UserError(Exception):
    """Base of every error caused by the user's input rather than by a bug."""


class ConfigError(UserError, ValueError):
    """A configuration value or key is not valid; the message names the key."""


class OptionError(UserError, ValueError):
    """A command option or function argument is out of range; the message names it."""


class AudioError(UserError):
    """A file could not be used as audio. ``str(err)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # picklable across worker processes with its two arguments
        return (type(self), (self.path, self.reason))


class ScanError(UserError, ValueError):
    """An input path cannot be used; the message names it and says why."""


class ManifestError(UserError, ValueError):
    """A file-name pattern or condition is malformed; the message shows it."""


class PrepareError(UserError, ValueError):
    """The inputs or the output folder of ``prepare`` cannot be used; the message names the path."""


class StoreError(UserError, ValueError):
    """A prepared folder is missing, incomplete or inconsistent."""


class BundleError(UserError, ValueError):
    """A model bundle is missing, foreign, damaged or from a newer format."""


class RunError(UserError, ValueError):
    """A run folder or training request cannot be used; the message names the path."""


class DivergedError(RunError, FloatingPointError):
    """Training diverged (the loss is not finite), e.g. from a learning rate far too high."""


class ExportError(UserError, ValueError):
    """An export cannot be made or did not pass its check; the message says which and why."""


class OutputLockedError(UserError):
    """Another live process is writing the same output; the message names its pid and host."""
