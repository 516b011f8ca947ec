"""`RunResult`: what running one test case produced (plain data, JSON round-trippable)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from covfuzz.outcomes import is_failure

TIMING_KEYS = ("eager", "compile", "run", "backward", "coverage", "overhead", "total")


def empty_timings() -> dict:
    return {k: 0.0 for k in TIMING_KEYS}


@dataclass
class RunResult:
    """The verdict on one test case.

    - outcome: one of covfuzz.outcomes.OUTCOMES.
    - message: failure text (exception type and the first lines of its message), or a note.
    - exc_type: qualified exception type name ('' when none).
    - frames: innermost traceback frames inside torch, "path/rel/to/torch:line:function",
      outermost first (triage buckets on these).
    - timings: seconds, keys TIMING_KEYS; `overhead` = total - the other five.
    - features: sorted coverage feature ids, stable across processes: 62-bit arc ids, and
      line ids with bit 62 set (covfuzz.features.LINE_BIT).
    - n_lines: covered lines (all measured files).
    - details: mismatch figures, notes ('nondeterministic', 'float->int cast UB', ...),
      exit code / signal of a crashed worker, and so on.
    """

    outcome: str
    message: str = ""
    exc_type: str = ""
    frames: list = field(default_factory=list)
    timings: dict = field(default_factory=empty_timings)
    features: list = field(default_factory=list)
    n_lines: int = 0
    details: dict = field(default_factory=dict)
    case_id: str = ""

    @property
    def failed(self) -> bool:
        return is_failure(self.outcome)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, obj: dict) -> "RunResult":
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        return cls(**known)

    @classmethod
    def from_json(cls, text: str | bytes) -> "RunResult":
        return cls.from_dict(json.loads(text))
