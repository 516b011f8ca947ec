"""Errors of the corpus store, and how scans report the damaged records they skip."""

import logging

from covfuzz.errors import CampaignDataError

log = logging.getLogger("corpus")


class CorpusError(CampaignDataError):
    """The corpus store cannot be opened or one of its records is unusable.

    Raised for: a schema-version mismatch (the message names both versions), a path that is not
    a covfuzz corpus, a store opened twice in one process or used across fork, a map that cannot
    grow any further, and corrupt records (the message names the database and the key).
    `db` and `key` are set for corrupt records, None otherwise.
    """

    def __init__(self, message: str, db: str | None = None, key: str | None = None):
        super().__init__(message)
        self.db = db
        self.key = key


class InvalidId(CorpusError, ValueError):
    """A test-case, example or signature id given from outside is malformed (not found is None)."""


def report_corrupt(errors: list | None, exc: CorpusError) -> None:
    """A scan skips a damaged record: append its error to `errors`, or log it when None."""
    if errors is None:
        log.warning("%s (skipped)", exc)
    else:
        errors.append(exc)
