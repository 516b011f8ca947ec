"""Reading a campaign from outside: the status file and the stats time series (plots).

Nothing here attaches to the running campaign: `fuzzer_stats.json` is rewritten atomically by the
campaign and the LMDB store is opened read-only, so both are safe while a campaign writes.
"""

from __future__ import annotations

import json
import os
import time

from corpus import open_campaign_store
from covfuzz import workdir
from covfuzz.errors import CovfuzzError


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError, TypeError):
        return False


def read_status(directory: str) -> dict:
    path = workdir.stats_path(directory)
    if not os.path.isdir(directory):
        raise CovfuzzError(f"{directory}: no such campaign directory")
    if not os.path.exists(path):
        raise CovfuzzError(f"{directory}: no fuzzer_stats.json yet (has a campaign run here?)")
    try:
        with open(path) as handle:
            status = json.load(handle)
    except (OSError, ValueError) as exc:
        raise CovfuzzError(f"{path}: unreadable status file: {exc}") from None
    if not isinstance(status, dict):
        raise CovfuzzError(f"{path}: status file is not a JSON object")
    if status.get("running") and not _pid_alive(status.get("pid")):
        status["running"] = False
        status["note"] = "the campaign process is gone (killed?): re-run covfuzz fuzz to resume"
    return status


def stats_series(directory: str) -> list[dict]:
    store = open_campaign_store(directory)
    try:
        return [record for _, record in store.stats_series()]
    finally:
        store.close()


def plot(directory: str, out: str, compare: list[str] = ()) -> str:
    """PNG with features, covered lines and unique failures against elapsed minutes (one line
    per campaign)."""
    import matplotlib  # lazily: importing it costs a second that other commands need not pay
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_features, ax_lines, ax_failures) = plt.subplots(1, 3, figsize=(15, 4))
    for campaign in [directory, *compare]:
        series = stats_series(campaign)
        if not series:
            raise CovfuzzError(f"{campaign}: no stats recorded yet")
        minutes = [r["elapsed"] / 60 for r in series]
        info_mode = _mode(campaign)
        label = f"{os.path.basename(os.path.abspath(campaign))} ({info_mode})"
        ax_features.plot(minutes, [r["features"] for r in series], label=label)
        ax_lines.plot(minutes, [r.get("lines", 0) for r in series], label=label)
        ax_failures.step(minutes, [r["unique_failures"] for r in series], where="post", label=label)
    ax_features.set(title="coverage features (Dynamo + Inductor arcs)", xlabel="minutes",
                    ylabel="features")
    ax_lines.set(title="covered lines of torch/_inductor + torch/_dynamo", xlabel="minutes",
                 ylabel="lines")
    ax_failures.set(title="unique failures", xlabel="minutes", ylabel="signatures")
    for ax in (ax_features, ax_lines, ax_failures):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _mode(directory: str) -> str:
    try:
        return read_status(directory).get("mode", "?")
    except CovfuzzError:
        return "?"


def _ago(ts) -> str:
    if not ts:
        return "never"
    seconds = max(time.time() - ts, 0)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def status_line(s: dict) -> str:
    """One line of a status record (`fuzzer_stats.json`): the campaign's log and `covfuzz status`."""
    kinds = ",".join(f"{k}={v}" for k, v in sorted(s.get("failures_by_kind", {}).items())) or "none"
    valid = "n/a" if s.get("validity") is None else f"{100 * s['validity']:.0f}%"
    return (f"[{s['elapsed'] / 60:6.1f}m] execs {s['execs']} ({s['execs_per_s']:.2f}/s) | corpus "
            f"{s['corpus']} | features {s['features']} (lines {s.get('lines', 0)}) | failures {s['unique_failures']} ({kinds}) | "
            f"new feature {_ago(s.get('last_new_feature'))}, new failure {_ago(s.get('last_new_failure'))} | "
            f"valid {valid} ran {100 * s.get('ran_eagerly', 0):.0f}% | "
            f"restarts {s['worker_restarts']}")
