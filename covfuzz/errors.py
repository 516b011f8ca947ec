"""The error types covfuzz raises on purpose.

`TestCaseFormatError` is the one documented error for anything wrong with a test case that
comes from outside (bytes, JSON, a file, a CLI argument): malformed encoding, wrong version,
unknown op, wrong types, out-of-bounds sizes, attribute values outside their domain.
`CampaignDataError` is the one documented error for anything read from a campaign directory
that is malformed: a store record (`corpus.errors.CorpusError`), the campaign state, the status
file, reduced-case metadata, a known-issues file. The message names the file (and the database
and key for a store record) and what is wrong.
`InvalidGraph` says that a well-formed test case is rejected by torch itself during shape and
dtype propagation (the validity check); it is an ordinary, expected event for generated and
mutated candidates.
"""


class CovfuzzError(Exception):
    """Base class of every error covfuzz raises deliberately."""


class TestCaseFormatError(CovfuzzError, ValueError):
    """A test case (stored bytes, JSON form or file) is malformed or unsafe to load."""

    __test__ = False  # not a pytest test class


class CampaignDataError(CovfuzzError):
    """Something read from a campaign directory is malformed, damaged or out of range."""


class InvalidGraph(CovfuzzError):
    """Shape/dtype propagation through torch rejected the graph (the candidate is invalid)."""

    def __init__(self, message: str, node: int | None = None):
        super().__init__(message)
        self.node = node


def one_line(error: object) -> str:
    """An error message safe to print on one terminal line: control characters (newlines,
    escape sequences from hostile file names) are shown escaped, never interpreted."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(error))
