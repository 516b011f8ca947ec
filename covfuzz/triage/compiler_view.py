"""Where a failure lives in the compiler.

- `bucket_view(store, sig_id)`: the Inductor and Dynamo functions (and so the files and passes:
  `fx_passes/post_grad.py`, `codegen/cpp.py`...) a bucket's example reaches that few of the
  campaign's executions reach. Read from stored data only: the example's feature ids (a failure
  example keeps its run's features) are turned back into (file, line) by hashing every line of
  torch/_inductor and torch/_dynamo the way `harness.coverage.line_id` does (about a second),
  and the store's hit counts (how many executions reached each feature) say how rare each line
  is. The lines of the example that at most `RARE_SHARE` of the executions reached (the failing
  run counts itself) are grouped by their enclosing function (from the file's syntax tree): a
  rare branch inside a common function shows, as a rare function does. The innermost frames of
  a crash are shown too (a run that killed its worker records no features).
- `corpus_html(directory, out, ...)`: coverage.py's own HTML report of what the corpus reaches:
  the seeds re-run in a warm worker whose collector records (harness.coverage, recording mode)
  instead of hashing, then combined and rendered.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import corpus
from covfuzz import workdir
from covfuzz.errors import CovfuzzError
from covfuzz.features import LINE_BIT
from covfuzz.triage.failures import is_signature_id
from harness.coverage import DEFAULT_GROUPS, GROUPS, RECORD_ENV, html_report, line_id
from harness.pool import WorkerSpec, start_worker

RARE_SHARE = 0.10   # "few": reached by at most this share of the campaign's executions
MAX_SOURCE = 8 << 20  # bytes of one torch source file read for the index


def torch_dir() -> str:
    """The installed torch package folder, found without importing torch (seconds)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        raise CovfuzzError("torch is not installed")
    return os.path.dirname(spec.origin)


def line_index(groups=DEFAULT_GROUPS) -> dict[int, tuple[str, int]]:
    """{line feature id: (path relative to torch's parent, line)} for every line of the
    measured packages (about 375k lines: a second)."""
    base = torch_dir()
    index: dict[int, tuple[str, int]] = {}
    for group in groups:
        top = os.path.join(base, GROUPS.get(group, group))
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(root, name)
                rel = "torch/" + os.path.relpath(path, base).replace(os.sep, "/")
                with open(path, "rb") as handle:
                    n = handle.read(MAX_SOURCE).count(b"\n") + 1
                for line in range(1, n + 1):
                    index[line_id(rel, line)] = (rel, line)
    return index


def _functions(rel: str) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function of a torch file, innermost
    last for equal starts."""
    path = os.path.join(os.path.dirname(torch_dir()), rel)
    try:
        with open(path, "rb") as handle:
            tree = ast.parse(handle.read(MAX_SOURCE))
    except (OSError, SyntaxError, ValueError):
        return []
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    out.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)
    visit(tree, "")
    return out


def _enclosing(functions, line: int) -> str:
    best = None
    for start, end, name in functions:
        if start <= line <= end and (best is None or start >= best[0]):
            best = (start, name)
    return best[1] if best else "<module>"


@dataclass
class Place:
    """One function of the compiler where a bucket's example ran lines few executions ran."""
    file: str
    function: str
    lines: list[int] = field(default_factory=list)  # its rarely reached lines the example ran
    reach: int = 0  # executions that reached the most travelled of those lines


def places(features, hits: dict[int, int], index: dict[int, tuple[str, int]],
           rare: int) -> tuple[list[Place], int, int]:
    """The functions in which `features` cover lines reached by at most `rare` executions
    (`hits`), rarest first (then most such lines); with the covered line and file counts."""
    by_file: dict[str, list[tuple[int, int]]] = {}
    for f in features:
        f = int(f)
        if f & LINE_BIT and f in index:
            rel, line = index[f]
            by_file.setdefault(rel, []).append((line, hits.get(f, 0)))
    out: dict[tuple[str, str], Place] = {}
    n_lines = 0
    for rel, lines in by_file.items():
        functions = _functions(rel) if any(count <= rare for _, count in lines) else []
        n_lines += len(lines)
        for line, count in sorted(lines):
            if count > rare:
                continue
            key = (rel, _enclosing(functions, line))
            place = out.get(key) or out.setdefault(key, Place(rel, key[1]))
            place.lines.append(line)
            place.reach = max(place.reach, count)
    found = sorted(out.values(), key=lambda p: (p.reach, -len(p.lines), p.file, p.function))
    return found, n_lines, len(by_file)


def _line_span(lines: list[int]) -> str:
    return f"{lines[0]}" if len(lines) == 1 else f"{lines[0]}-{lines[-1]}"


def bucket_view(store, sig_id: str, limit: int = 20, index=None) -> list[str]:
    """Text lines: where bucket `sig_id`'s example lives in the compiler (see the module)."""
    if not is_signature_id(sig_id):
        raise CovfuzzError(f"{sig_id[:40]!r}: not a bucket signature id (12 hex digits)")
    rec = store.get_failure(sig_id)
    if rec is None:
        raise CovfuzzError(f"no failure bucket {sig_id} in this campaign")
    example = None
    for eid in rec.get("example_ids") or []:
        example = store.get_example(eid)
        if example and example.get("result", {}).get("features"):
            break
    result = (example or {}).get("result") or {}
    kind = rec.get("kind")
    out = [f"bucket {sig_id} ({kind}): where its example lives in torch/_inductor and "
           "torch/_dynamo"]
    features = result.get("features") or []
    frames = [str(f) for f in (result.get("frames") or []) if isinstance(f, str)]
    if frames:
        out.append("  innermost frames of its failure: " + ", ".join(f[:120] for f in frames[-3:]))
    if not features:
        out.append("  its run recorded no coverage (the worker died, or the record is older)")
        return out
    counters = ((store.get_info() or {}).get("state") or {}).get("counters") or {}
    execs = counters.get("execs")
    hits = store.feature_counts()
    total = execs if isinstance(execs, int) and execs > 0 else \
        max((hits.get(int(f), 0) for f in features), default=1) or 1
    rare = max(1, int(RARE_SHARE * total))
    found, n_lines, n_files = places(features, hits, index if index is not None else line_index(),
                                     rare)
    out.append(f"  {n_lines} covered lines in {n_files} files; lines reached by at most {rare} "
               f"of the campaign's {total} executions ({100 * RARE_SHARE:.0f}%) lie in "
               f"{len(found)} functions:")
    out.append(f"  {'reached by':>14}  function  (file:lines of those the example ran)")
    for p in found[:limit]:
        out.append(f"  {p.reach:>6} ({100 * p.reach / total:4.1f}%)  {p.function}  ({p.file}:"
                   f"{_line_span(p.lines)}, {len(p.lines)} lines)")
    if len(found) > limit:
        out.append(f"  ... {len(found) - limit} more")
    files: dict[str, int] = {}
    for p in found:
        files[p.file] = files.get(p.file, 0) + len(p.lines)
    if files:
        top = sorted(files.items(), key=lambda kv: -kv[1])[:8]
        out.append("  files (and passes) with the most such lines: "
                   + ", ".join(f"{f.removeprefix('torch/')} ({n})" for f, n in top))
    return out


def corpus_html(directory: str, out: str, limit: int | None = None, timeout: float = 120.0,
                progress=print) -> dict:
    """Re-run up to `limit` seeds of campaign `directory` (newest-kept order: `seed_ids`) in a
    warm worker that records coverage, and write coverage.py's HTML report into `out`.
    Returns {"seeds", "ran", "failed", "percent", "index"}."""
    with corpus.open_campaign_store(directory) as store:
        ids = store.seed_ids()
        ids = ids[:limit] if limit is not None else ids
        cases = [(sid, store.get_case_bytes(sid)) for sid in ids]
    cases = [(sid, data) for sid, data in cases if data is not None]
    data_dir = tempfile.mkdtemp(prefix="covfuzz-coverage-")
    ran = failed = 0
    try:
        spec = dataclasses.replace(
            WorkerSpec.for_campaign(cache_dir=workdir.inductor_cache(directory), timeout=timeout),
            env={RECORD_ENV: data_dir})
        progress(f"re-running {len(cases)} seeds under coverage.py (a warm-up compile first)")
        with start_worker(spec) as worker:
            for i, (sid, data) in enumerate(cases, 1):
                result = worker.run(data)
                ran += 1
                failed += result.outcome not in ("pass", "mismatch", "grad_mismatch")
                if i % 10 == 0 or i == len(cases):
                    progress(f"  {i}/{len(cases)} seeds ({result.outcome} {sid})")
        progress("combining the coverage data and writing the HTML report")
        percent = html_report(data_dir, out, title=f"covfuzz corpus of {directory}: "
                                                   "torch/_inductor and torch/_dynamo")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"seeds": len(cases), "ran": ran, "failed": failed, "percent": percent,
            "index": os.path.join(out, "index.html")}
