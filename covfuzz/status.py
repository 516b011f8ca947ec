"""Reading a campaign from outside: the status file and the stats time series (plots).

Nothing here attaches to the running campaign: `fuzzer_stats.json` is rewritten atomically by the
campaign and the LMDB store is opened read-only, so both are safe while a campaign writes.

`fuzzer_stats.json` comes from a campaign directory, which may have travelled: `decode_status`
reads it with a size bound and bounded JSON parsing (`covfuzz.jsondata`) and returns a dict with
exactly the keys of `STATUS_FIELDS`, each of its type and range (optional keys absent from the
file get their default; unknown keys are dropped). Anything else is a `CampaignDataError`
naming the file and the key.
"""

from __future__ import annotations

import io
import logging
import math
import os
import time

from corpus import open_campaign_store
from covfuzz import jsondata, workdir
from covfuzz.errors import CampaignDataError, CovfuzzError
from covfuzz.outfile import write_output

log = logging.getLogger("covfuzz")

MAX_STATUS_BYTES = 4 << 20  # a real fuzzer_stats.json is a few KiB
MAX_TIME = 1e11             # unix seconds (the year 5138)
MAX_COUNT = 1 << 62
MAX_NAME = 200              # mutator, strategy, outcome and failure-kind names
MAX_ROWS = 1000             # entries of one table (outcomes, mutators, ...)
MAX_TEXT = 4096             # dir, mode, device, note
MAX_PID = 1 << 22           # Linux's pid_max ceiling: 0 and negative pids name process groups


class _Bad(Exception):
    """A field of the status file that does not fit its type (the message names it)."""


def _count(v):
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_COUNT:
        raise _Bad(f"must be an int in [0, {MAX_COUNT}]")
    return v


def _number(lo: float, hi: float):
    def check(v):
        if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                or not lo <= v <= hi):
            raise _Bad(f"must be a number in [{lo:g}, {hi:g}]")
        return v
    return check


_time = _number(0, MAX_TIME)
_amount = _number(0, MAX_COUNT)
_fraction = _number(0, 1)


def _text(v):
    if not isinstance(v, str) or len(v) > MAX_TEXT:
        raise _Bad(f"must be a string of at most {MAX_TEXT} characters")
    return v


def _bool(v):
    if not isinstance(v, bool):
        raise _Bad("must be true or false")
    return v


def _pid(v):
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_PID:
        raise _Bad(f"must be a process id in [1, {MAX_PID}]")
    return v


def _or_none(check):
    return lambda v: None if v is None else check(v)


def _table(row_check):
    """An object of at most MAX_ROWS entries, names of at most MAX_NAME characters."""
    def check(v):
        if not isinstance(v, dict) or len(v) > MAX_ROWS:
            raise _Bad(f"must be an object of at most {MAX_ROWS} entries")
        out = {}
        for name, row in v.items():
            if len(name) > MAX_NAME:
                raise _Bad(f"has a name longer than {MAX_NAME} characters")
            try:
                out[name] = row_check(row)
            except _Bad as exc:
                raise _Bad(f"[{name!r:.40}] {exc}") from None
        return out
    return check


def _row(fields: dict):
    """An object whose listed fields (each optional, default 0) have their type."""
    def check(v):
        if not isinstance(v, dict):
            raise _Bad("must be an object")
        out = {}
        for key, (field_check, default) in fields.items():
            try:
                out[key] = field_check(v[key]) if key in v else default
            except _Bad as exc:
                raise _Bad(f".{key} {exc}") from None
        return out
    return check


_MUTATOR_ROW = _row({k: (_count, 0) for k in ("proposals", "valid", "executed", "ran", "wins")})
_BANDIT_ROW = _row({"tries": (_count, 0), "rate": (_amount, 0.0), "gain": (_amount, 0.0),
                    "cost": (_amount, 0.0)})
_TRIAGE_ROW = _row({"untriaged": (_count, 0), "states": (_table(_count), {}),
                    "root_causes": (_count, 0), "labels": (_table(_count), {}),
                    "recorded_seconds": (_amount, 0.0), "worker_share": (_amount, 0.0),
                    "seconds_by_step": (_table(_amount), {})})
_REQUIRED = object()

# key -> (check, default); _REQUIRED keys must be present (the status line prints them).
STATUS_FIELDS = {
    "elapsed": (_amount, _REQUIRED), "execs": (_count, _REQUIRED),
    "execs_per_s": (_amount, _REQUIRED), "corpus": (_count, _REQUIRED),
    "features": (_count, _REQUIRED), "unique_failures": (_count, _REQUIRED),
    "worker_restarts": (_count, _REQUIRED),
    "lines": (_count, 0), "failures_by_kind": (_table(_count), {}),
    "last_new_feature": (_or_none(_time), None), "last_new_failure": (_or_none(_time), None),
    "validity": (_or_none(_fraction), None), "ran_eagerly": (_fraction, 0.0),
    "running": (_bool, False), "pid": (_or_none(_pid), None), "updated": (_or_none(_time), None),
    "dir": (_or_none(_text), None), "mode": (_or_none(_text), None),
    "device": (_or_none(_text), None), "note": (_or_none(_text), None),
    "workers": (_or_none(_count), None), "supervisor_rss_mb": (_or_none(_amount), None),
    "outcomes": (_table(_count), {}), "mutators": (_table(_MUTATOR_ROW), {}),
    "strategies": (_table(_BANDIT_ROW), {}), "settings_moves": (_table(_BANDIT_ROW), {}),
    "triage": (_or_none(_TRIAGE_ROW), None), "triage_queue": (_or_none(_count), None),
    "triage_current": (_or_none(_text), None),
    "triage_worker_seconds": (_or_none(_amount), None),
}


def decode_status(data: bytes, path: str = workdir.STATS) -> dict:
    """The validated status record in `data` (the bytes of `fuzzer_stats.json`): every key of
    `STATUS_FIELDS` with its type and range; CampaignDataError naming `path` and the key."""
    obj = jsondata.loads(data, f"{path}: status file", CampaignDataError, max_bytes=MAX_STATUS_BYTES)
    if not isinstance(obj, dict):
        raise CampaignDataError(f"{path}: status file is not a JSON object")
    status = {}
    for key, (check, default) in STATUS_FIELDS.items():
        if key not in obj:
            if default is _REQUIRED:
                raise CampaignDataError(f"{path}: status file lacks {key!r}")
            status[key] = default.copy() if isinstance(default, dict) else default
            continue
        try:
            status[key] = check(obj[key])
        except _Bad as exc:
            inner = str(exc)  # "[name] ..." / ".field ..." from a table row, else "must be ..."
            sep = "" if inner.startswith(("[", ".")) else " "
            raise CampaignDataError(f"{path}: status file: {key!r}{sep}{inner}") from None
    return status


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists (and is ours)
        return True
    except OSError:
        return False


def read_status(directory: str) -> dict:
    """The validated status record of a campaign directory (see `decode_status`)."""
    path = workdir.stats_path(directory)
    if not os.path.isdir(directory):
        raise CovfuzzError(f"{directory}: no such campaign directory")
    if not os.path.lexists(path):
        raise CovfuzzError(f"{directory}: no fuzzer_stats.json yet (has a campaign run here?)")
    if not os.path.isfile(path):
        raise CampaignDataError(f"{path}: status file is not a regular file")
    try:
        with open(path, "rb") as handle:  # bounded read: a huge file costs no memory
            data = handle.read(MAX_STATUS_BYTES + 1)
    except OSError as exc:
        raise CampaignDataError(f"{path}: unreadable status file: {exc.strerror or exc}") from None
    status = decode_status(data, path)
    if status["running"] and not _pid_alive(status["pid"]):
        status["running"] = False
        status["note"] = "the campaign process is gone (killed?): re-run covfuzz fuzz to resume"
    return status


PLOT_FIELDS = ("elapsed", "features", "unique_failures")  # what every plotted record needs


def stats_series(directory: str) -> list[dict]:
    """The stats records that have what a plot needs, in time order. The store's decoder has
    checked each field's type and range; a damaged record, or one without these fields, is
    skipped with a warning (the plot carries on with the rest)."""
    store = open_campaign_store(directory)
    try:
        series = store.stats_series()  # damaged records are logged and skipped by the store
    finally:
        store.close()
    out = []
    for t, record in series:
        missing = [k for k in PLOT_FIELDS if k not in record]
        if missing:
            log.warning("%s: stats record at t=%.3f lacks %s (skipped)", directory, t,
                        ", ".join(missing))
            continue
        out.append(record)
    return out


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
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    write_output(out, png.getvalue())  # never through a symlink planted at `out`
    return out


def _mode(directory: str) -> str:
    try:
        return read_status(directory)["mode"] or "?"
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


def triage_line(s: dict) -> str | None:
    """What background triage has done (None for a campaign without it)."""
    t = s.get("triage")
    if not t:
        return None
    states = t.get("states") or {}
    labels = ", ".join(f"{k} {v}" for k, v in sorted((t.get("labels") or {}).items()))
    queue = s.get("triage_queue")
    share = t.get("worker_share")
    steps = t.get("seconds_by_step") or {}
    return (f"triage: {states.get('confirmed', 0)} confirmed bucket(s) in {t.get('root_causes', 0)} "
            f"root cause(s), {states.get('flaky', 0)} flaky, {states.get('not_a_bug', 0)} not a bug"
            + (f" ({labels})" if labels else "")
            + f", {t.get('untriaged', 0)} not triaged yet"
            + (f" ({queue} in the triage queue)" if queue else "")
            + (f"; {100 * share:.1f}% of worker time this run" if share else "")
            + ("; seconds " + ", ".join(f"{k} {v:.0f}" for k, v in steps.items()) if steps else ""))


def status_line(s: dict) -> str:
    """One line of a status record (`fuzzer_stats.json`): the campaign's log and `covfuzz status`."""
    kinds = ",".join(f"{k}={v}" for k, v in sorted(s.get("failures_by_kind", {}).items())) or "none"
    valid = "n/a" if s.get("validity") is None else f"{100 * s['validity']:.0f}%"
    return (f"[{s['elapsed'] / 60:6.1f}m] execs {s['execs']} ({s['execs_per_s']:.2f}/s) | corpus "
            f"{s['corpus']} | features {s['features']} (lines {s.get('lines', 0)}) | failures {s['unique_failures']} ({kinds}) | "
            f"new feature {_ago(s.get('last_new_feature'))}, new failure {_ago(s.get('last_new_failure'))} | "
            f"valid {valid} ran {100 * s.get('ran_eagerly', 0):.0f}% | "
            f"restarts {s['worker_restarts']}")
