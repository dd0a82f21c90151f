"""errors.py - the exceptions of libelastic: one ElasticError subclass per
elastic_status of include/elastic.h, named after it (ELASTIC_ERR_FORMAT ->
FormatError), carrying the library's thread-local message.

Each also derives from the closest built-in exception, so `except ValueError`
catches a bad history and `except OSError` a file that cannot be read.
"""
from __future__ import annotations

from typing import Dict, Type


class ElasticError(Exception):
    """A libelastic call failed.

    Attributes: status (the elastic_status number), status_name
    ("ELASTIC_ERR_FORMAT"), message (elastic_last_error() of the call)."""

    status: int = -1
    status_name: str = ""

    def __init__(self, message: str, status: int = -1, status_name: str = "",
                 what: str = ""):
        self.message = message
        if status >= 0:
            self.status = status
        if status_name:
            self.status_name = status_name
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}{message} ({self.status_name})" if self.status_name
                         else f"{prefix}{message}")


class InvalidArgError(ElasticError, ValueError):
    """ELASTIC_ERR_INVALID_ARG: a NULL pointer, a bad size, a bad option."""
    status, status_name = 1, "ELASTIC_ERR_INVALID_ARG"


class OutOfRangeError(ElasticError, ValueError):
    """ELASTIC_ERR_OUT_OF_RANGE: an item id outside 1..I, K too large."""
    status, status_name = 2, "ELASTIC_ERR_OUT_OF_RANGE"


class EmptyHistoryError(ElasticError, ValueError):
    """ELASTIC_ERR_EMPTY_HISTORY: a user with no items."""
    status, status_name = 3, "ELASTIC_ERR_EMPTY_HISTORY"


class ShapeError(ElasticError, ValueError):
    """ELASTIC_ERR_SHAPE: tensor shapes that do not fit."""
    status, status_name = 4, "ELASTIC_ERR_SHAPE"


class FormatError(ElasticError, ValueError):
    """ELASTIC_ERR_FORMAT: a malformed model file, config or log."""
    status, status_name = 5, "ELASTIC_ERR_FORMAT"


class IoError(ElasticError, OSError):
    """ELASTIC_ERR_IO: a file could not be read or written."""
    status, status_name = 6, "ELASTIC_ERR_IO"

    def __str__(self) -> str:  # OSError's own __str__ would drop the message
        return ElasticError.__str__(self)


class NoMemoryError(ElasticError, MemoryError):
    """ELASTIC_ERR_NO_MEMORY: a host or device allocation failed."""
    status, status_name = 7, "ELASTIC_ERR_NO_MEMORY"


class UnsupportedError(ElasticError):
    """ELASTIC_ERR_UNSUPPORTED: an op the backend lacks, fallback not allowed."""
    status, status_name = 8, "ELASTIC_ERR_UNSUPPORTED"


class BackendError(ElasticError):
    """ELASTIC_ERR_BACKEND: an unknown or unavailable backend, a device error."""
    status, status_name = 9, "ELASTIC_ERR_BACKEND"


class InternalError(ElasticError):
    """ELASTIC_ERR_INTERNAL: a bug in libelastic (please report it)."""
    status, status_name = 10, "ELASTIC_ERR_INTERNAL"


#: status number -> exception class
BY_STATUS: Dict[int, Type[ElasticError]] = {
    cls.status: cls for cls in (InvalidArgError, OutOfRangeError, EmptyHistoryError, ShapeError,
                                FormatError, IoError, NoMemoryError, UnsupportedError,
                                BackendError, InternalError)
}


def error_for_status(status: int, name: str, message: str, what: str = "") -> ElasticError:
    """The exception for a failed call (ElasticError itself for an unknown status)."""
    cls = BY_STATUS.get(status, ElasticError)
    return cls(message, status, name, what)
