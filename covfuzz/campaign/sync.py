"""Independent campaigns that share what they find through a directory (AFL++'s sync).

Without a cluster, run one campaign per machine and give them all the same shared directory
(`covfuzz fuzz DIR --sync-dir SHARED --sync-name NAME`). Each campaign
- writes every case it keeps as a seed, and the first example of every new failure bucket, as
  stored test cases under `SHARED/NAME/queue/` and `SHARED/NAME/failures/` (written to a
  temporary name, then renamed: a reader never sees half a file);
- every `interval` seconds reads the cases the *other* campaigns wrote since it last looked and
  runs them as ordinary candidates (origin marker `sync`): a case that covers something new here
  becomes a seed here; a failure lands in this campaign's own buckets, confirmed and triaged
  like one found here.
Nothing is trusted: a file must be named `<16 hex digits>.cfz`, be a regular file within the
stored-form size limit and decode and propagate cleanly; anything else is skipped and counted
(`sync_rejected`). The names already imported are kept in `DIR/sync_imported.json`, so a resumed
campaign does not run them again.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections import deque

from covfuzz import serialize
from covfuzz.campaign.execution import Candidate, Execution
from covfuzz.campaign.stages import Stage
from covfuzz.errors import CovfuzzError, InvalidGraph, TestCaseFormatError
from covfuzz.outfile import write_output
from covfuzz.propagate import propagate

SYNC_INTERVAL_S = 300.0   # how often other campaigns' cases are read
MAX_IMPORT = 64           # cases read per look (the rest wait for the next one)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_CASE_FILE = re.compile(r"^([0-9a-f]{16})\.cfz\Z")
KINDS = ("queue", "failures")


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise CovfuzzError(f"--sync-name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


class SyncStage(Stage):
    """Exports this campaign's seeds and new buckets; imports the other campaigns' cases."""

    def __init__(self, campaign_dir: str, sync_dir: str, name: str,
                 interval: float = SYNC_INTERVAL_S):
        self.sync_dir = os.path.abspath(sync_dir)
        self.name = check_name(name)
        self.interval = interval
        self._own = os.path.join(self.sync_dir, self.name)
        self._state_path = os.path.join(campaign_dir, "sync_imported.json")
        self._imported: set[str] = self._load_imported()
        self._waiting: deque[Candidate] = deque()
        self._last_look = 0.0
        self.exported = self.imported = self.rejected = 0
        for kind in KINDS:
            path = os.path.join(self._own, kind)
            os.makedirs(path, exist_ok=True)
            if os.path.islink(self._own) or os.path.islink(path):
                raise CovfuzzError(f"{path}: is a symbolic link: covfuzz never writes through one")

    # ----------------------------------------------------------------------- state
    def _load_imported(self) -> set[str]:
        try:
            with open(self._state_path, "rb") as f:
                data = json.loads(f.read(8 << 20))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError):
            return set()  # unreadable: importing again only costs executions
        names = data.get("imported") if isinstance(data, dict) else None
        return {n for n in names if isinstance(n, str) and len(n) < 200} if isinstance(names, list) else set()

    def _save_imported(self) -> None:
        write_output(self._state_path, json.dumps({"imported": sorted(self._imported)}))

    # ----------------------------------------------------------------------- export
    def _export(self, kind: str, data: bytes, case_id: str) -> None:
        final = os.path.join(self._own, kind, f"{case_id}.cfz")
        if os.path.lexists(final):
            return
        tmp = os.path.join(self._own, kind, f".{case_id}.tmp")
        write_output(tmp, data)
        os.replace(tmp, final)
        self.exported += 1

    def resume(self, campaign) -> None:
        """Export the seeds an earlier run kept (a campaign that joins the sync late)."""
        for seed_id in campaign.store.seed_ids():
            data = campaign.store.get_case_bytes(seed_id)
            if data is not None:
                self._export("queue", data, seed_id)

    def process(self, ex: Execution, campaign) -> None:
        if ex.kept:
            self._export("queue", ex.data, ex.case_id)
        if ex.new_bucket:
            self._export("failures", ex.data, ex.case_id)

    # ----------------------------------------------------------------------- import
    def poll(self, campaign) -> None:
        now = time.time()
        if now - self._last_look < self.interval:
            return
        self._last_look = now
        budget = MAX_IMPORT - len(self._waiting)
        for other in sorted(os.listdir(self.sync_dir)):
            if other == self.name or not _NAME.match(other):
                continue
            for kind in KINDS:
                folder = os.path.join(self.sync_dir, other, kind)
                if budget <= 0 or not os.path.isdir(folder) or os.path.islink(folder):
                    continue
                for entry in sorted(os.listdir(folder)):
                    key = f"{other}/{kind}/{entry}"
                    if budget <= 0:
                        break
                    match = _CASE_FILE.match(entry)
                    if key in self._imported or not match:
                        continue
                    self._imported.add(key)
                    if campaign.store.has_seed(match.group(1)):
                        continue  # ours already (a case of ours another campaign kept too)
                    case = self._read(os.path.join(folder, entry))
                    if case is None:
                        self.rejected += 1
                        continue
                    budget -= 1
                    self.imported += 1
                    self._waiting.append(Candidate(case, {"parent": None, "mutators": ["sync"],
                                                          "depth": 0, "sync_from": other}))
        self._save_imported()

    def _read(self, path: str):
        """The test case in `path`, or None when it is not a valid one."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > serialize.MAX_ENCODED_BYTES:
                return None
            with os.fdopen(fd, "rb") as f:
                fd = -1
                data = f.read(serialize.MAX_ENCODED_BYTES + 1)
        finally:
            if fd >= 0:
                os.close(fd)
        try:
            return propagate(serialize.decode(data))
        except (TestCaseFormatError, InvalidGraph, ValueError, TypeError, RuntimeError):
            return None

    def candidates(self) -> list[Candidate]:
        """Imported cases waiting to run (the loop takes them before making new ones)."""
        out = list(self._waiting)
        self._waiting.clear()
        return out

    def status(self) -> dict:
        return {"sync": {"name": self.name, "dir": self.sync_dir, "exported": self.exported,
                         "imported": self.imported, "rejected": self.rejected}}
