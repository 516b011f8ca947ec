"""Coverage of torch.compile internals as stable feature ids.

`Collector` wraps one `coverage.Coverage(branch=True)` per worker process, measuring the files
matched by include globs under the installed torch package (default: torch/_inductor and
torch/_dynamo; `extra=("fx", "functorch")` adds torch/fx and torch/_functorch). It is started
after torch is imported (file-path globs, never `source_pkgs`: dotted package names break
importing torch) and measures one case at a time: start() before compiling, stop() after the
last compiled call, then features() and erase().

Recording mode (`covfuzz coverage DIR --html OUT`): with COVFUZZ_COVERAGE_DATA=<folder> in the
worker's environment (WorkerSpec.env), the collector keeps what every case ran instead of
erasing it between cases and saves it, after each case, to its own data file in that folder
(`data_suffix`: a restarted worker writes a new one, nothing is overwritten); the parent then
combines them and renders coverage.py's own HTML report (`html_report`). Cases measured in this
mode return no feature ids.

The coverage unit, the same in every command (`run`, `import --run`, `cmin`, `fuzz`, `status`,
`plot`): a case's *features* are its arc ids, with its covered *lines* (ids with LINE_BIT)
reported beside them (`corpus.cmin.unit_counts` counts both; ids of the other feature families
count in neither), measured in a worker that has compiled the warm-up case first
(`WorkerSpec.for_campaign`: the cold first compile of a process runs one-time initialisation
that is not the case's own) and given the case propagated, as a campaign gives it.

An arc's feature id is the first 8 bytes of blake2b(f"{path relative to torch dir}:{from}:{to}")
as an unsigned int shifted right by two (62 bits); a covered line's id hashes
f"{path}:{line}" the same way and sets `covfuzz.features.LINE_BIT` (bit 62). The same arc or
line gives the same id in every process and campaign with the same torch installation.
"""

from __future__ import annotations

import hashlib
import os

from covfuzz.features import LINE_BIT

GROUPS = {
    "inductor": "_inductor",
    "dynamo": "_dynamo",
    "fx": "fx",
    "functorch": "_functorch",
}
DEFAULT_GROUPS = ("inductor", "dynamo")


def torch_dir() -> str:
    import torch  # heavy: only when a collector is made (in a worker, after its env is set)
    return os.path.dirname(os.path.abspath(torch.__file__))


def include_globs(groups=DEFAULT_GROUPS, extra_globs=()) -> list[str]:
    """File-path include globs for `coverage.Coverage(include=...)`."""
    base = torch_dir()
    globs = []
    for g in groups:
        sub = GROUPS.get(g, g)
        globs.append(os.path.join(base, sub, "*"))
    globs.extend(extra_globs)
    return globs


# Cache machinery: whether a kernel is already in the (kept) kernel cache changes which of these
# lines run, not what the compiler does with the graph; counting them makes features unstable.
OMIT = ("_inductor/codecache.py", "_inductor/cpp_builder.py", "_inductor/async_compile.py",
        "_inductor/compile_worker/*", "_inductor/remote_cache.py")


def omit_globs() -> list[str]:
    base = torch_dir()
    return [os.path.join(base, pattern) for pattern in OMIT]


def feature_id(rel_path: str, src: int, dst: int) -> int:
    """Stable id of an arc: 62 bits of blake2b over `torch/<rel path>:src:dst`."""
    digest = hashlib.blake2b(f"{rel_path}:{src}:{dst}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


def line_id(rel_path: str, line: int) -> int:
    """Stable id of a covered line (bit 62 set), so plain line coverage travels with the arcs."""
    digest = hashlib.blake2b(f"{rel_path}:{line}".encode(), digest_size=8).digest()
    return LINE_BIT | (int.from_bytes(digest, "little") >> 2)


RECORD_ENV = "COVFUZZ_COVERAGE_DATA"  # a folder: record every case's coverage into data files


class Collector:
    """Per-case arc coverage of torch internals (one per worker process)."""

    def __init__(self, groups=DEFAULT_GROUPS, extra_globs=()):
        import coverage  # only workers that measure coverage need it
        self.base = torch_dir()
        record = os.environ.get(RECORD_ENV)
        self.recording = bool(record)
        data_file = os.path.join(record, ".coverage") if record else None
        self.cov = coverage.Coverage(branch=True, include=include_globs(groups, extra_globs),
                                     omit=omit_globs(), data_file=data_file,
                                     data_suffix=bool(record), config_file=False)
        self._rel: dict[str, str] = {}
        self._ids: dict[tuple[str, int, int], int] = {}
        self.running = False

    def start(self) -> None:
        self.cov.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.cov.stop()
            self.running = False
            if self.recording:
                self.cov.save()  # a later case that kills the worker cannot lose this one

    def _relpath(self, filename: str) -> str:
        rel = self._rel.get(filename)
        if rel is None:
            rel = "torch/" + os.path.relpath(filename, self.base).replace(os.sep, "/")
            self._rel[filename] = rel
        return rel

    def features(self) -> tuple[list[int], int]:
        """(sorted feature ids, covered line count) of what was measured since erase().

        Features are arcs and, flagged with LINE_BIT, covered lines."""
        if self.recording:
            return [], 0
        data = self.cov.get_data()
        ids = self._ids
        if len(ids) > 2_000_000:
            ids.clear()
        out = set()
        n_lines = 0
        for filename in data.measured_files():
            rel = self._relpath(filename)
            lines = data.lines(filename) or ()
            n_lines += len(lines)
            for line in lines:
                key = (rel, line, None)
                fid = ids.get(key)
                if fid is None:
                    fid = ids[key] = line_id(rel, line)
                out.add(fid)
            for src, dst in data.arcs(filename) or ():
                key = (rel, src, dst)
                fid = ids.get(key)
                if fid is None:
                    fid = ids[key] = feature_id(rel, src, dst)
                out.add(fid)
        return sorted(out), n_lines

    def erase(self) -> None:
        if not self.recording:  # recording keeps every case's coverage
            self.cov.erase()


def html_report(data_dir: str, out: str, title: str) -> float:
    """Combine the data files a recording worker left in `data_dir` and write coverage.py's
    HTML report of torch/_inductor and torch/_dynamo into `out`; returns the covered percent.
    Runs in the parent (no torch import: the torch folder is found by its import spec)."""
    import importlib.util
    import coverage
    base = os.path.dirname(importlib.util.find_spec("torch").origin)
    cov = coverage.Coverage(data_file=os.path.join(data_dir, ".coverage"), branch=True,
                            config_file=False)
    cov.combine([data_dir], keep=False)
    cov.save()
    include = [os.path.join(base, GROUPS[g], "*") for g in DEFAULT_GROUPS]
    return cov.html_report(directory=out, include=include,
                           omit=[os.path.join(base, p) for p in OMIT], title=title,
                           ignore_errors=True)
