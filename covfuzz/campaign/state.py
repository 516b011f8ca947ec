"""The campaign's state: everything a resume needs besides the corpus, as one typed, versioned
record that round-trips through the store's info (`info["state"]`), plus the trait table.

Version 2 holds the counters, the campaign RNG's state, the scheduler's per-seed times chosen
and mutator statistics and the strategy and settings bandits; it is small, and saved after
every execution. The trait table (up to 200k rows) is a record of its own (`traits`), saved at
status ticks: re-encoding it after every execution would cost up to seconds. Version 1
(campaigns made before it) kept the counters in `info["state"]` and the rest beside it, and no
RNG state or times chosen: it still loads, and a resume of one re-seeds the RNG from the options.
The record is read back from disk, so it is validated like any other input: a malformed record
raises `CampaignStateError` naming what is wrong.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from covfuzz.errors import CampaignDataError

STATE_VERSION = 2
V1_KEYS = ("scheduler", "bandits", "traits")  # version 1's keys beside `state` in the info
MUTATOR_COUNTERS = ("proposals", "valid", "ran", "executed", "wins")
_INT_COUNTERS = ("execs", "next_gen_seed", "restarts", "restarts_before", "proposals", "valid", "ran",
                 "timed_execs")
_TIME_COUNTERS = ("last_new_feature", "last_new_failure")
_MAX_COUNT = 1 << 62
_MAX_TIME = 1e11  # unix time in the year 5138: anything larger is not a timestamp


class CampaignStateError(CampaignDataError):
    """The stored campaign state is malformed."""


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise CampaignStateError(f"campaign state: {what} must be a non-negative int, got {value!r:.40}")
    return value


def _seconds(value, what: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not 0 <= value <= _MAX_TIME):
        raise CampaignStateError(f"campaign state: {what} must be a time in seconds, got {value!r:.40}")
    return float(value)


def _table(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise CampaignStateError(f"campaign state: {what} must be an object")
    return value


def _count_table(value, what: str) -> dict[str, int]:
    return {str(k): _count(v, f"{what}[{k!r:.40}]") for k, v in _table(value, what).items()}


@dataclass
class Counters:
    """What the campaign has done so far (summed over every run of it)."""

    execs: int = 0
    elapsed: float = 0.0
    next_gen_seed: int = 0
    restarts: int = 0
    restarts_before: int = 0  # restarts of earlier runs (a SIGKILLed run never reached `finally`)
    last_new_feature: float | None = None
    last_new_failure: float | None = None
    proposals: int = 0  # mutation attempts (stacks), and those that gave a valid candidate
    valid: int = 0
    ran: int = 0  # executions that were not `invalid`
    by_mutator: dict[str, dict[str, int]] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    # Where worker time went (seconds): the executions' stages (harness.result.STAGES) summed,
    # "idle" and "worker" (slot-seconds: every worker slot's time, `monitor.SlotClock`), the
    # triage steps ("triage_confirm", ...; `monitor.account_triage`); and how many
    # executions are summed in it (a campaign made before it has none of its earlier ones).
    time_split: dict[str, float] = field(default_factory=dict)
    timed_execs: int = 0

    def count_mutator(self, name: str, key: str) -> None:
        row = self.by_mutator.setdefault(name, dict.fromkeys(MUTATOR_COUNTERS, 0))
        row[key] = row.get(key, 0) + 1

    def add_time(self, stage: str, seconds: float) -> None:
        if seconds > 0:
            self.time_split[stage] = self.time_split.get(stage, 0.0) + seconds

    def add_execution_time(self, stages: dict[str, float]) -> None:
        """One execution's `stage_split`."""
        self.timed_execs += 1
        for stage, seconds in stages.items():
            self.add_time(stage, seconds)

    def to_dict(self) -> dict:
        return {"execs": self.execs, "elapsed": self.elapsed, "next_gen_seed": self.next_gen_seed,
                "restarts": self.restarts, "restarts_before": self.restarts_before,
                "last_new_feature": self.last_new_feature, "last_new_failure": self.last_new_failure,
                "proposals": self.proposals, "valid": self.valid, "ran": self.ran,
                "by_mutator": self.by_mutator, "outcomes": self.outcomes,
                "time_split": {k: round(v, 3) for k, v in self.time_split.items()},
                "timed_execs": self.timed_execs}

    @classmethod
    def from_dict(cls, obj) -> "Counters":
        obj = _table(obj, "counters")
        out = cls()
        for name in _INT_COUNTERS:
            if name in obj:
                setattr(out, name, _count(obj[name], name))
        if "elapsed" in obj:
            out.elapsed = _seconds(obj["elapsed"], "elapsed")
        for name in _TIME_COUNTERS:
            if name in obj:
                setattr(out, name, _seconds(obj[name], name, allow_none=True))
        out.by_mutator = {str(name): _count_table(row, f"by_mutator[{name!r:.40}]")
                          for name, row in _table(obj.get("by_mutator", {}), "by_mutator").items()}
        out.outcomes = _count_table(obj.get("outcomes", {}), "outcomes")
        out.time_split = {str(k)[:100]: _seconds(v, f"time_split[{k!r:.40}]")
                          for k, v in _table(obj.get("time_split", {}), "time_split").items()}
        return out


def rng_state(rng: random.Random) -> list:
    """`random.Random.getstate()` as JSON data: [version, [625 ints], gauss_next]."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def restore_rng(rng: random.Random, state) -> None:
    """Set `rng` to a state from `rng_state` (CampaignStateError when it is not one)."""
    try:
        version, internal, gauss = state
        if not (isinstance(internal, list) and len(internal) == 625
                and all(isinstance(x, int) and not isinstance(x, bool) for x in internal)):
            raise ValueError("not 625 ints")
        if gauss is not None and not isinstance(gauss, float):
            raise ValueError("bad gauss_next")
        rng.setstate((version, tuple(internal), gauss))
    except (TypeError, ValueError, OverflowError) as exc:
        raise CampaignStateError(f"campaign state: rng is not a random.Random state ({exc})") from None


@dataclass
class CampaignState:
    """The resumable state. `rng` is None when a version-1 record had none."""

    counters: Counters = field(default_factory=Counters)
    rng: list | None = None
    times_chosen: dict[str, int] = field(default_factory=dict)  # seed id -> times picked
    mutator_stats: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> wins, tries
    strategies: dict = field(default_factory=dict)  # RateBandit tables
    settings_moves: dict = field(default_factory=dict)
    traits: dict | None = None  # TraitYield.state(), stored apart (see the module docstring)

    def to_record(self) -> dict:
        """The version-2 record (without the trait table)."""
        return {"version": STATE_VERSION, "counters": self.counters.to_dict(), "rng": self.rng,
                "scheduler": {"times_chosen": self.times_chosen, "mutators": self.mutator_stats},
                "bandits": {"strategies": self.strategies, "settings": self.settings_moves}}

    @classmethod
    def from_info(cls, info: dict, traits: dict | None = None) -> "CampaignState":
        """The state kept in a store's campaign info (either version) with the trait table
        record `traits` (version 2); empty when there is none."""
        record = info.get("state")
        if record is None:
            return cls()
        record = _table(record, "state")
        if "version" not in record:  # version 1: counters here, the rest beside them
            return cls._from_parts(record, None, info.get("scheduler", {}), info.get("bandits", {}),
                                   info.get("traits"))
        if type(record["version"]) is not int or record["version"] != STATE_VERSION:
            raise CampaignStateError(f"campaign state: version {record['version']!r:.20} is not "
                                     f"{STATE_VERSION} (made by a newer covfuzz?)")
        return cls._from_parts(record.get("counters", {}), record.get("rng"),
                               record.get("scheduler", {}), record.get("bandits", {}), traits)

    @classmethod
    def _from_parts(cls, counters, rng, scheduler, bandits, traits) -> "CampaignState":
        scheduler, bandits = _table(scheduler, "scheduler"), _table(bandits, "bandits")
        if rng is not None:
            restore_rng(random.Random(), rng)  # validates
        if traits is not None:
            _table(traits, "traits")
        return cls(counters=Counters.from_dict(counters), rng=rng,
                   times_chosen=_count_table(scheduler.get("times_chosen", {}), "times_chosen"),
                   mutator_stats={str(k): _count_table(v, f"mutators[{k!r:.40}]")
                                  for k, v in _table(scheduler.get("mutators", {}), "mutators").items()},
                   strategies=_table(bandits.get("strategies", {}), "strategies"),
                   settings_moves=_table(bandits.get("settings", {}), "settings"),
                   traits=traits)
