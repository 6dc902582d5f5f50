"""The exception tree of `audit`.

Library code raises these; the CLI turns each into one line on stderr and exit code 2.

    AuditError                 anything the tool cannot run past (exit 2)
    ├── PolicyError            a policy file that is malformed or invalid (names file:line and key)
    ├── ManifestError          an audit-model.yaml that is malformed or invalid
    ├── DataError              a data file that is missing, unreadable, or breaks the column contract
    ├── ModelError             a model folder that is missing, unsafe (pickle, remote code) or broken
    ├── UsageError             flags or arguments that do not fit together
    └── OutputError            an output folder that cannot be written

A check that raises while measuring is *not* an AuditError: the runner turns it into an ERROR finding.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base class: the message is one readable line, shown to the user as is."""

    def __init__(self, message: str) -> None:
        message = " ".join(part.strip() for part in str(message).splitlines() if part.strip())  # one line, always
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PolicyError(AuditError):
    pass


class ManifestError(AuditError):
    pass


class DataError(AuditError):
    pass


class ModelError(AuditError):
    pass


class UsageError(AuditError):
    pass


class OutputError(AuditError):
    pass
