"""Reading a campaign from outside: the status file and the stats time series (plots).

Nothing here attaches to the running campaign: `fuzzer_stats.json` is rewritten atomically by the
campaign and the LMDB store is opened read-only, so both are safe while a campaign writes.
`covfuzz status` reads only `fuzzer_stats.json` (the campaign writes into it everything the
morning view shows: per-bucket rows, a coarse history for `--since`, the budget and the restart
reasons), so it answers in a fraction of a second whatever the corpus size, and this module
imports neither torch nor numpy nor LMDB unless a plot asks for the stats series.

`fuzzer_stats.json` comes from a campaign directory, which may have travelled: `decode_status`
reads it with a size bound and bounded JSON parsing (`covfuzz.jsondata`) and returns a dict with
exactly the keys of `STATUS_FIELDS`, each of its type and range (optional keys absent from the
file get their default; unknown keys are dropped). Anything else is a `CampaignDataError`
naming the file and the key.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import math
import os
import re
import shlex
import time

from covfuzz import jsondata, workdir
from covfuzz.errors import CampaignDataError, CovfuzzError
from covfuzz.outfile import write_output
from covfuzz.text import printable

log = logging.getLogger("covfuzz")

MAX_STATUS_BYTES = 4 << 20  # a real fuzzer_stats.json is a few KiB
MAX_TIME = 1e11             # unix seconds (the year 5138)
MAX_COUNT = 1 << 62
MAX_NAME = 200              # mutator, strategy, outcome and failure-kind names
MAX_ROWS = 1000             # entries of one table (outcomes, mutators, ...)
MAX_TEXT = 4096             # dir, mode, device, note
MAX_PID = 1 << 22           # Linux's pid_max ceiling: 0 and negative pids name process groups
MAX_BUCKET_ROWS = 500       # bucket rows in the status file (the newest first seen)
MAX_HISTORY = 400           # history snapshots (thinned by half when full)
MAX_ROW_TEXT = 300          # culprit / failing check / divergence of one bucket row
SEEN_FILE = "status_seen.json"  # DIR/status_seen.json: when `status --since last` last looked


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


def _short(limit: int):
    def check(v):
        if not isinstance(v, str) or len(v) > limit:
            raise _Bad(f"must be a string of at most {limit} characters")
        return v
    return check


def _list(item_check, limit: int):
    """A list of at most `limit` items, each checked."""
    def check(v):
        if not isinstance(v, list) or len(v) > limit:
            raise _Bad(f"must be a list of at most {limit} entries")
        out = []
        for i, item in enumerate(v):
            try:
                out.append(item_check(item))
            except _Bad as exc:
                raise _Bad(f"[{i}]{'' if str(exc).startswith('.') else ' '}{exc}") from None
        return out
    return check


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
_name = _short(MAX_NAME)
_row_text = _short(MAX_ROW_TEXT)
# One failure bucket as the morning view shows it (the campaign's monitor builds it).
_BUCKET_ROW = _row({"id": (_name, ""), "kind": (_name, ""), "count": (_count, 0),
                    "first_seen": (_or_none(_time), None), "last_seen": (_or_none(_time), None),
                    "state": (_name, "untriaged"), "root_id": (_or_none(_name), None),
                    "culprit": (_row_text, ""), "check": (_row_text, ""),
                    "divergence": (_row_text, ""), "label": (_or_none(_name), None),
                    "reduced_nodes": (_or_none(_count), None),
                    "triaged_at": (_or_none(_time), None)})
# A coarse snapshot of the counters (every few minutes), for `covfuzz status --since`.
_HISTORY_ROW = _row({"t": (_time, 0.0), "elapsed": (_amount, 0.0), "execs": (_count, 0),
                     "corpus": (_count, 0), "features": (_count, 0), "lines": (_count, 0),
                     "unique_failures": (_count, 0)})
# One Ray node of a campaign run with --ray (harness.ray_pool.NodeStats).
_NODE_ROW = _row({"address": (_name, ""), "head": (_bool, False), "alive": (_bool, False),
                  "workers": (_count, 0), "execs": (_count, 0), "restarts": (_count, 0),
                  "lost": (_count, 0), "requeued": (_count, 0), "last_heard": (_amount, 0.0)})
# Where worker time went (the campaign's monitor: `time_split`): worker slot-seconds, the
# executions summed, seconds by stage (harness.result.STAGES, triage_<step>, idle).
_TIME_SPLIT_ROW = _row({"worker_seconds": (_amount, 0.0), "execs": (_count, 0),
                        "stages": (_table(_amount), {})})
_SYNC_ROW = _row({"name": (_name, ""), "dir": (_text, ""), "exported": (_count, 0),
                  "imported": (_count, 0), "rejected": (_count, 0)})
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
    # this run: when it started, its budget (--hours / --execs), the workers still warming up
    "run_started": (_or_none(_time), None), "hours": (_or_none(_amount), None),
    "execs_budget": (_or_none(_count), None), "run_execs": (_or_none(_count), None),
    "warming": (_or_none(_count), None),
    "restart_reasons": (_table(_count), {}),
    "buckets": (_list(_BUCKET_ROW, MAX_BUCKET_ROWS), []),
    "history": (_list(_HISTORY_ROW, MAX_HISTORY), []),
    "families": (_table(_count), {}),   # features seen per feedback family
    "nodes": (_table(_NODE_ROW), {}),   # --ray: per node
    "pool": (_table(_count), {}),       # --ray: submitted / results / lost / cancelled
    "lost": (_count, 0),                # --ray: cases lost with a node this run
    "sync": (_or_none(_SYNC_ROW), None),  # --sync-dir: what was shared
    "time_split": (_or_none(_TIME_SPLIT_ROW), None),  # absent from status files made before it
    # feedback mode: the next sweep's steps, and what its steps earn per second over what
    # chosen candidates earn (None until both ran a few times)
    "sweep_steps": (_or_none(_count), None), "sweep_pay": (_or_none(_amount), None),
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
            status[key] = default.copy() if isinstance(default, (dict, list)) else default
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
    from corpus import open_campaign_store  # LMDB and numpy: only plots pay for them
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
    per campaign), and where each campaign's worker time went (one bar each)."""
    import matplotlib  # lazily: importing it costs a second that other commands need not pay
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_features, ax_lines, ax_failures, ax_time) = plt.subplots(
        1, 4, figsize=(20, 4), gridspec_kw={"width_ratios": [1, 1, 1, 1.3]})
    campaigns = [directory, *compare]
    for campaign in campaigns:
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
    _time_bars(ax_time, campaigns)
    for ax in (ax_features, ax_lines, ax_failures):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    write_output(out, png.getvalue())  # never through a symlink planted at `out`
    return out


def _time_bars(ax, campaigns: list[str]) -> None:
    """One bar per campaign: its worker time's shares by stage (`time_shares`), stacked."""
    import matplotlib.pyplot as plt
    colors = plt.get_cmap("tab20").colors
    names: list[str] = []  # one color per stage name, across campaigns
    labels = []
    for row, campaign in enumerate(campaigns):
        try:
            split = read_status(campaign).get("time_split")
        except CovfuzzError:
            split = None
        shares = time_shares(split) if split else []
        rate = 3600 * split["execs"] / split["worker_seconds"] if shares else 0.0
        labels.append(f"{printable(os.path.basename(os.path.abspath(campaign)))}\n"
                      + (f"{rate:.0f} execs/h/worker" if shares else "no time split"))
        left = 0.0
        for name, share in shares:
            if name not in names:
                names.append(name)
            ax.barh(row, 100 * share, left=left, color=colors[names.index(name) % len(colors)],
                    label=printable(name).replace("$", r"\$"))  # no mathtext from a file
            left += 100 * share
    ax.set_yticks(range(len(campaigns)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(title="where worker time goes", xlabel="% of worker time", xlim=(0, 100))
    handles, texts = ax.get_legend_handles_labels()
    if handles:
        seen = dict(zip(texts, handles))  # one legend entry per stage
        ax.legend(seen.values(), seen.keys(), fontsize=7, loc="center left",
                  bbox_to_anchor=(1.0, 0.5))


def _mode(directory: str) -> str:
    try:
        return read_status(directory)["mode"] or "?"
    except CovfuzzError:
        return "?"


def ago(ts) -> str:
    """How long ago unix time `ts` was ("never" for none)."""
    return _ago(ts)


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


def time_shares(split: dict) -> list[tuple[str, float]]:
    """(stage, share of worker time) by decreasing share, and what no stage accounts for (worker
    start-ups and restarts, the loop's own turns) as "unaccounted"; [] without worker time."""
    worker = split.get("worker_seconds") or 0.0
    if worker <= 0:
        return []
    stages = split.get("stages") or {}
    shares = sorted(((k, v / worker) for k, v in stages.items() if v > 0), key=lambda kv: -kv[1])
    rest = worker - sum(stages.values())
    return shares + ([("unaccounted", rest / worker)] if rest > 0 else [])


def time_line(s: dict) -> str | None:
    """Where worker time went, in one line: execs per hour per worker and each stage's share of
    the worker slots' time (None for a status file without the split)."""
    split = s.get("time_split")
    shares = time_shares(split) if split else []
    if not shares:
        return None
    worker = split["worker_seconds"]
    return (f"time: {worker / 3600:.2f} worker-hours, "
            f"{3600 * split['execs'] / worker:.0f} execs/hour/worker | "
            + ", ".join(f"{name} {100 * share:.1f}%" for name, share in shares if share >= 5e-4))


def status_line(s: dict) -> str:
    """One line of a status record (`fuzzer_stats.json`): the campaign's log and `covfuzz status`.
    While no case has finished in this run, it says the workers are warming up instead of
    showing "execs 0" (a fresh worker imports torch and compiles a warm-up case first)."""
    kinds = ",".join(f"{k}={v}" for k, v in sorted(s.get("failures_by_kind", {}).items())) or "none"
    valid = "n/a" if s.get("validity") is None else f"{100 * s['validity']:.0f}%"
    if s.get("warming"):
        progress = (f"warming {s['warming']} worker(s) (a fresh worker's first compile takes "
                    f"30-90 s), execs {s['execs']}")
    else:
        progress = f"execs {s['execs']} ({s['execs_per_s']:.2f}/s)"
    return (f"[{s['elapsed'] / 60:6.1f}m] {progress} | corpus "
            f"{s['corpus']} | features {s['features']} (lines {s.get('lines', 0)}) | failures {s['unique_failures']} ({kinds}) | "
            f"new feature {_ago(s.get('last_new_feature'))}, new failure {_ago(s.get('last_new_failure'))} | "
            f"valid {valid} ran {100 * s.get('ran_eagerly', 0):.0f}% | "
            f"{restarts_text(s)}")


def repro_command(directory: str, sig_id: str) -> str:
    """The command that writes the standalone reproducer of bucket `sig_id` of `directory`."""
    return (f"covfuzz repro {shlex.quote(sig_id)} --dir {shlex.quote(directory)} "
            f"-o {shlex.quote('repro-' + sig_id + '.py')}")


# ----------------------------------------------------------------------------- the morning view

# What the columns of the mutator table count (one row per mutator or strategy name).
MUTATOR_COLUMNS = (
    ("proposals", "mutants it proposed (fresh generations propose none)"),
    ("valid", "proposals that passed the validity check (shape propagation)"),
    ("executed", "cases run in a worker with this name in their origin"),
    ("ran", "executed cases whose eager run worked (not invalid)"),
    ("wins", "executed cases that found a new feature or a new failure bucket"),
)
RESTART_REASONS = ("timeout", "process_crash", "oom")  # outcomes that kill (and restart) a worker


def restarts_text(s: dict) -> str:
    """"restarts N" with its reasons when the campaign recorded them."""
    text = f"restarts {s['worker_restarts']}"
    reasons = s.get("restart_reasons") or {}
    parts = [f"{k} {v}" for k, v in sorted(reasons.items()) if v]
    return text + (f" ({', '.join(parts)})" if parts and s["worker_restarts"] else "")


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _when(ts) -> str:
    if not ts:
        return "never"
    return time.strftime("%m-%d %H:%M", time.localtime(ts))


def time_left(s: dict, now: float | None = None) -> str | None:
    """What is left of this run's budget (--hours or --execs), or None without one."""
    now = time.time() if now is None else now
    if not s.get("running") or not s.get("run_started"):
        return None  # stopped, or a status file from before budgets were recorded
    if s.get("hours"):
        left = s["run_started"] + s["hours"] * 3600 - now
        return f"{duration(left)} left of --hours {s['hours']:g}" if left > 0 else \
            "budget spent (finishing background triage)"
    if s.get("execs_budget") is not None and s.get("run_execs") is not None:
        return f"{max(s['execs_budget'] - s['run_execs'], 0)} of --execs {s['execs_budget']} left"
    return "no budget: runs until stopped"


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])\Z")


def parse_since(text: str, now: float | None = None) -> float:
    """A point in time from `--since`: `30m` / `2h` / `1d` ago, an ISO date-time
    (`2026-11-30T07:00`), a time of day today (`07:00`), or unix seconds. CovfuzzError else."""
    now = time.time() if now is None else now
    text = text.strip()
    m = _RELATIVE.match(text)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        value = float(text)
        if 0 <= value <= MAX_TIME:
            return value
    except ValueError:
        pass
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}", text):
            hour, minute = map(int, text.split(":"))
            day = datetime.datetime.fromtimestamp(now)
            return day.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise CovfuzzError(f"--since {text[:40]!r}: not a time (use 30m, 2h, 1d, 07:00, "
                           "2026-11-30T07:00, or last)") from None


def read_seen(directory: str) -> float | None:
    """When `covfuzz status --since last` last looked at `directory` (None: never)."""
    path = os.path.join(directory, SEEN_FILE)
    try:
        with open(path, "rb") as handle:
            data = handle.read(4097)
    except OSError:
        return None
    try:
        obj = jsondata.loads(data, path, CampaignDataError, max_bytes=4096)
        seen = obj.get("seen") if isinstance(obj, dict) else None
        return float(_time(seen))
    except (CampaignDataError, _Bad):
        log.warning("%s: unreadable, treated as never looked", path)
        return None


def write_seen(directory: str, t: float) -> bool:
    """Remember `t` as the last look (an own small file; nothing of the campaign is touched).
    False when the directory is not writable (the view is still shown)."""
    try:
        write_output(os.path.join(directory, SEEN_FILE), json.dumps({"seen": t}) + "\n")
        return True
    except (OSError, CovfuzzError):
        return False


def _snapshot_at(s: dict, since: float) -> dict | None:
    """The last history snapshot taken at or before `since` (None: none that old)."""
    best = None
    for row in s.get("history") or ():
        if row["t"] <= since:
            best = row
    return best


def since_lines(s: dict, since: float, now: float | None = None) -> list[str]:
    """What is new since `since`: counter deltas (from the history snapshots) and the buckets
    first seen or triaged since then."""
    now = time.time() if now is None else now
    out = [f"new since {_when(since)} ({_ago(since)}):"]
    before = _snapshot_at(s, since)
    if before is not None:
        out.append("  " + ", ".join(f"+{s[key] - before[key]} {label}" for key, label in (
            ("execs", "execs"), ("corpus", "seeds"), ("features", "features"),
            ("lines", "lines"), ("unique_failures", "buckets"))))
    elif s.get("history"):
        out.append("  (the campaign's history starts later: everything below is new)")
    rows = s.get("buckets") or []
    if not rows and s["unique_failures"]:
        out.append(f"  (this status file has no bucket rows: `covfuzz crashes {s.get('dir') or 'DIR'} "
                   "--sort recent` lists the newest)")
        return out
    new = [r for r in rows if (r["first_seen"] or 0) > since]
    triaged = [r for r in rows if (r["triaged_at"] or 0) > since and r not in new]
    out.append(f"  {len(new)} new bucket(s), {len(triaged)} older bucket(s) triaged since")
    out.extend("  " + line for line in bucket_table(new + triaged, directory=s.get("dir")))
    return out


def bucket_table(rows: list[dict], directory: str | None = None, limit: int = 30) -> list[str]:
    """One line per bucket, newest first: id, kind, triage state, culprit, failing check or
    divergence, reduced size, first seen."""
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: -(r["first_seen"] or 0))
    out = [f"{'bucket':<12}  {'kind':<13} {'state':<10} {'reduced':<8} {'first seen':<11}  "
           "culprit: failing check or divergence"]
    for r in rows[:limit]:
        what = r["check"] or r["divergence"]
        culprit = f"{r['culprit']}: " if r["culprit"] else ""  # crashes have none
        state = r["state"] if r["state"] != "not_a_bug" else "not a bug"
        reduced = f"{r['reduced_nodes']} nodes" if r["reduced_nodes"] is not None else "no"
        out.append(f"{r['id']:<12}  {r['kind']:<13} {state:<10} {reduced:<8} "
                   f"{_when(r['first_seen']):<11}  {culprit}{what}"[:220])
    if len(rows) > limit:
        out.append(f"... {len(rows) - limit} more (covfuzz crashes {directory or 'DIR'})")
    return out


def family_lines(families: dict) -> list[str]:
    """Features seen per feedback family (issue 19; validated by decode_status)."""
    if not families:
        return []
    return ["features by family: " + ", ".join(f"{printable(k)} {v}" for k, v in families.items())]


def node_lines(nodes: dict, lost: int) -> list[str]:
    """Per Ray node (a campaign run with --ray; validated by decode_status): workers,
    executions, restarts, cases requeued and lost, when last heard from."""
    if not nodes:
        return []
    out = [f"ray nodes ({len(nodes)}; cases lost with a node this run: {lost}):"]
    for node_id, n in nodes.items():
        heard = ago(n["last_heard"]) if n["last_heard"] else "never"
        out.append(f"  {printable(node_id)[:12]} {printable(n['address'])[:40]:<16} "
                   f"{'alive' if n['alive'] else 'lost':<5} {'head ' if n['head'] else ''}"
                   f"workers {n['workers']} execs {n['execs']} restarts {n['restarts']} "
                   f"requeued {n['requeued']} lost {n['lost']} last heard {heard}")
    return out


def status_view(s: dict, directory: str, since: float | None = None,
                now: float | None = None) -> list[str]:
    """The morning view of a status record, as text lines (`covfuzz status`)."""
    now = time.time() if now is None else now
    state = "running" if s.get("running") else "stopped"
    out = [f"{directory}: {state} ({s.get('mode')}, {s.get('workers')} workers, {s.get('device')})"]
    if s.get("running") and s.get("pid"):
        out.append(f"pid {s['pid']}: stop with `kill -INT {s['pid']}` (finishes the cases in "
                   f"flight, saves; `covfuzz fuzz {directory}` resumes)")
    elif not s.get("running"):
        out.append(f"resume with `covfuzz fuzz {directory}` (same options)")
    if s.get("note"):
        out.append(f"note: {s['note']}")
    timing = f"elapsed {duration(s['elapsed'])}"
    if s.get("running") and s.get("run_started"):
        timing += f" (this run {duration(now - s['run_started'])})"
    left = time_left(s, now)
    if left:
        timing += f", {left}"
    if s.get("updated"):
        timing += f"; status written {_ago(s['updated'])}"
    out.append(timing)
    out.append(status_line(s))
    triage = triage_line(s)
    if triage:
        out.append(triage)
    timing_split = time_line(s)
    if timing_split:
        out.append(timing_split)
    if s.get("triage_current"):
        out.append(f"triaging now: {s['triage_current']}")
    rows = s.get("buckets") or []
    if since is not None:
        out.extend(since_lines(s, since, now))
    elif rows:
        out.append(f"buckets ({len(rows)} of {s['unique_failures']}, newest first; "
                   f"`covfuzz crashes {directory}` groups them by root cause):")
        out.extend("  " + line for line in bucket_table(rows, directory, limit=15))
    elif s["unique_failures"]:
        out.append(f"buckets: `covfuzz crashes {directory}` (this status file has no bucket rows)")
    if rows or s["unique_failures"]:
        out.append(f"reproduce one: {repro_command(directory, 'BUCKET')}")
    outcomes = s.get("outcomes") or {}
    if outcomes:
        out.append("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    out.extend(family_lines(s.get("families") or {}))
    out.extend(node_lines(s.get("nodes") or {}, s.get("lost") or 0))
    table = s.get("mutators") or {}
    if table:
        out.append("mutators and strategies (" + "; ".join(
            f"{name}: {what}" for name, what in MUTATOR_COLUMNS) + "):")
        out.append(f"  {'name':<18} " + " ".join(f"{name:>9}" for name, _ in MUTATOR_COLUMNS))
        for name, row in sorted(table.items()):
            out.append(f"  {name:<18} " + " ".join(f"{row.get(k, 0):>9}" for k, _ in MUTATOR_COLUMNS))
    for title, key in (("strategies", "strategies"), ("best settings moves", "settings_moves")):
        bandit = s.get(key) or {}
        if bandit:
            out.append(f"{title} (tries, new features per second of execution, decayed):")
            for name, row in sorted(bandit.items(), key=lambda kv: -kv[1].get("rate", 0)):
                out.append(f"  {name:<34} {row.get('tries', 0):>6} {row.get('rate', 0):>10.3f}")
    if s.get("sweep_steps") is not None:
        pay = s.get("sweep_pay")
        out.append(f"sweeps: {s['sweep_steps']} value variants after each chosen case"
                   + (f" (their steps earn {pay:.2f}x the new features per second of chosen cases)"
                      if pay is not None else " (the default, until steps and cases have run a few times)"))
    if s.get("supervisor_rss_mb") is not None:
        out.append(f"supervisor RSS: {s['supervisor_rss_mb']} MiB")
    return out
