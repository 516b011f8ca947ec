"""The layout of a campaign directory: every path covfuzz reads or writes inside one.

    DIR/corpus.lmdb/       the LMDB store (corpus/)
    DIR/fuzzer_stats.json  the latest status, rewritten atomically
    DIR/scheduler.jsonl    one line per executed candidate
    DIR/campaign.log       what `run_campaign.sh` captures of the campaign's output
    DIR/inductor_cache/    TORCHINDUCTOR_CACHE_DIR of the campaign's workers
    DIR/reduced/           reduced failing cases (`<signature id>.cfz` + `.json`)
    DIR/known_issues.json  optional, user-edited (or known_issues.toml)
    DIR/.lock              held (flock) by the running campaign
"""

from __future__ import annotations

import os

CORPUS = "corpus.lmdb"
STATS = "fuzzer_stats.json"
SCHEDULER_LOG = "scheduler.jsonl"
CAMPAIGN_LOG = "campaign.log"
INDUCTOR_CACHE = "inductor_cache"
REDUCED = "reduced"
KNOWN_ISSUES = "known_issues.json"
KNOWN_ISSUES_TOML = "known_issues.toml"
LOCK = ".lock"


def corpus_path(directory: str) -> str:
    return os.path.join(directory, CORPUS)


def stats_path(directory: str) -> str:
    return os.path.join(directory, STATS)


def scheduler_log_path(directory: str) -> str:
    return os.path.join(directory, SCHEDULER_LOG)


def inductor_cache(directory: str) -> str:
    return os.path.join(directory, INDUCTOR_CACHE)


def reduced_dir(directory: str) -> str:
    return os.path.join(directory, REDUCED)


def known_issues_paths(directory: str) -> tuple[str, str]:
    """The known-issues file a campaign directory may hold: JSON first, else TOML."""
    return os.path.join(directory, KNOWN_ISSUES), os.path.join(directory, KNOWN_ISSUES_TOML)


def lock_path(directory: str) -> str:
    return os.path.join(directory, LOCK)


def is_campaign_dir(directory: str) -> bool:
    return os.path.isdir(corpus_path(directory))
