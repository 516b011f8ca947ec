"""Triage of one failure bucket: confirm, localize, label, reduce, name the root cause.

1. Confirm in a fresh process: the example runs in a worker that has run nothing before (warm
   processes carry state from earlier cases, which can make a failure appear or vanish). What
   does not fail the same way there is `flaky`: recorded with both results, not reported; a
   different failure there is a bucket of its own. A timeout is confirmed only when the fresh
   process does not finish in HANG_LIMIT either; one that finishes late is `slow` (not a bug).
   A compile crash under fullgraph=True that is Dynamo refusing a graph break, and that passes
   with fullgraph=False, is `fullgraph_break` (the documented behaviour, not a bug).
2. Localize a mismatch (harness/localize.py): the culprit node, and whether the divergence there
   is a documented non-bug class (harness/labels.py): `not_a_bug` with its label, not reported.
3. Reduce (covfuzz/triage/reduce.py): a mismatch from the prefix that ends at its culprit,
   keeping a failure of the same kind whose diverging output is the culprit's op; a crash keeping
   its signature (which names the failing check). Bounded in time.
4. The root signature (covfuzz/triage/root.py) from the culprit (localized again on the reduced
   case, whose inputs may now be literal values) and the settings the reduced case still needs.

Metamorphic checks (issue 19, harness/metamorphic.py): a failure that the compile under the
case's metamorphic variant produced (the result's details name the variant) is a failure of the
case under the variant's settings: that case (`covfuzz.ir.metamorphic_case`) is triaged, like
any other. A `metamorphic` disagreement keeps the variant (it is what compares the two compiled
results): confirmed and reduced like a crash, on its signature; no localization (no referee).

`triage_failure` does all of it on worker processes it starts and closes itself; the campaign's
triage stage calls it in the background, `covfuzz triage` and the tests call it directly.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

from covfuzz import serialize
from covfuzz.errors import CovfuzzError
from covfuzz.ir import TestCase, metamorphic_case, type_name
from covfuzz.outcomes import FAILURE_KINDS
from covfuzz.propagate import propagate
from covfuzz.subgraph import sub_case
from covfuzz.triage import root as roots
from covfuzz.triage.reduce import Reducer, ReduceResult
from covfuzz.triage.signature import output_index, signature_of
from harness.pool import WorkerSpec, start_worker
from harness.worker_handle import DEFAULT_TIMEOUT

MISMATCH_KINDS = ("mismatch", "grad_mismatch")
LOCALIZE_BUDGET = 150.0  # seconds for one localization
REDUCE_BUDGET = 240.0  # seconds of reduction per bucket
# A campaign's timeout is a hang only when a fresh process cannot finish the case in this long
# either: on loaded cores a slow compile (an associative_scan with a dynamic dim: 2 minutes)
# passes the campaign's limit and is not a bug.
HANG_LIMIT = 600.0
# ... and a case that a fresh process finishes in under this share of the campaign's limit did
# not need the time: the timeout came from the warm process (flaky), not from the case (slow).
SLOW_SHARE = 0.25
# Bumped when triage learns to judge differently (new labels, stricter confirmation): a campaign
# resumed by a newer covfuzz triages buckets judged by an older version again.
TRIAGE_VERSION = 6
# Exceptions with which Dynamo refuses what needs a graph break (an op whose output shape or
# value depends on the data, a construct it does not trace): with fullgraph=True that error is
# the documented behaviour, not a bug, when the same case compiles with fullgraph=False.
GRAPH_BREAK_EXCEPTIONS = ("DynamicOutputShapeException", "DataDependentOutputException",
                          "Unsupported")


@dataclass
class Budgets:
    localize: float = LOCALIZE_BUDGET
    reduce: float = REDUCE_BUDGET
    timeout: float = 60.0  # per run
    hang: float = HANG_LIMIT  # the fresh run that confirms a timeout


@dataclass
class TriageOutcome:
    """What triage learned about one bucket (the campaign stores `record()` in its extra)."""

    state: str  # "confirmed" | "flaky" | "not_a_bug" | "gone" (no longer fails at all)
    kind: str
    fresh: dict = field(default_factory=dict)  # {outcome, message, signature} in the fresh process
    culprit: dict | None = None  # harness.localize result
    label: list | None = None  # [name, reason] of a non-bug class
    root: str = ""
    root_id: str = ""
    reduced: TestCase | None = None
    reduction: dict | None = None  # ReduceResult.to_dict()
    seconds: dict = field(default_factory=dict)  # confirm / localize / reduce
    # The fresh process's RunResult when it failed differently (another kind): a failure of its
    # own, which the campaign buckets and triages like any other.
    fresh_failure: object | None = None

    def record(self) -> dict:
        culprit = self.culprit or {}
        return {"state": self.state, "fresh_outcome": self.fresh.get("outcome", ""),
                "fresh_message": (self.fresh.get("message") or "")[:300],
                "culprit_op": culprit.get("op") if culprit.get("found") else None,
                "culprit": culprit_text(culprit) if culprit.get("found") else None,
                "label": self.label[0] if self.label else None,
                "label_reason": (self.label[1] or "")[:300] if self.label else None,
                "root": self.root[:400], "root_id": self.root_id,
                "reduced_nodes": (self.reduction or {}).get("nodes_after"),
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
                "triaged_at": time.time(), "version": TRIAGE_VERSION}


def culprit_text(culprit: dict) -> str:
    """One line about a culprit: `F.softshrink(lambd=n) float32 -> float32, inputs nan (needs
    nan), vec+tail`."""
    attrs = ",".join(f"{k}={v}" for k, v in sorted((culprit.get("attrs") or {}).items()))
    classes = "+".join(culprit.get("classes") or []) or "ordinary"
    needed = culprit.get("needed_classes")
    needed = "unknown" if needed is None else "+".join(needed) or "none"
    return (f"{culprit.get('op')}({attrs}) {','.join(culprit.get('dtypes_in') or [])} -> "
            f"{culprit.get('dtype_out')}, inputs {classes} (needs {needed}), "
            f"{culprit.get('regime')}")[:300]


def _accept_culprit(kind: str, culprit: dict) -> Callable[[TestCase, object], bool]:
    """A reduction candidate keeps a mismatch when it fails with the same kind and, for an output
    mismatch, the diverging output is made by the culprit's op with the culprit's output dtype."""
    op, dtype_out = culprit.get("op"), culprit.get("dtype_out")

    def accept(case: TestCase, result) -> bool:
        if result.outcome != kind:
            return False
        if kind == "grad_mismatch":
            return any(n.op == op for n in case.graph.nodes)
        index = output_index(result)
        if index is None or index >= len(case.graph.outputs):
            return False
        node = case.graph.node_of(case.graph.outputs[index])
        return node is not None and node.op == op and type_name(node.out) == dtype_out
    return accept


def triage_failure(case: TestCase, result: dict, *, cache_dir: str | None = None,
                   budgets: Budgets | None = None, reduce: bool = True, worker=None,
                   log: Callable[[str], None] | None = None) -> TriageOutcome:
    """Triage one failing example (`result`: its RunResult as a dict) on a fresh worker process
    started and closed here; `worker`: a worker to use instead (kept open; the confirmation is
    then not in a fresh process: for tests that triage many cases)."""
    budgets = budgets or Budgets()
    log = log or (lambda text: None)
    kind = result.get("outcome", "")
    raw_sig, _ = signature_of(case, result)
    case = _failing_case(case, result)
    seconds: dict = {}
    own = worker is None
    if own:  # fresh: it has run no case yet
        worker = start_worker(WorkerSpec.for_reducer(timeout=budgets.timeout, cache_dir=cache_dir))
    try:
        t = time.monotonic()
        limit = max(budgets.hang, _timeout_of(result)) if kind == "timeout" else budgets.timeout
        fresh = worker.run(case, timeout=limit, coverage=False)
        fresh_sig, _ = signature_of(case, fresh)
        seconds["confirm"] = time.monotonic() - t
        facts = {"outcome": fresh.outcome, "message": fresh.message, "signature": fresh_sig}
        if kind == "timeout" and fresh.outcome in ("pass", "invalid"):
            took, allowed = seconds["confirm"], _timeout_of(result)
            if took >= SLOW_SHARE * allowed:
                return TriageOutcome("not_a_bug", kind, facts, label=[
                    "slow", f"finished in {took:.0f} s in a fresh process ({fresh.outcome}); "
                    f"the campaign allowed {allowed:.0f} s: slow, not hung"],
                    root=raw_sig, root_id=roots.root_id(raw_sig), seconds=seconds)
        if fresh.outcome not in FAILURE_KINDS:
            return TriageOutcome("flaky" if fresh.outcome == "pass" else "gone", kind, facts,
                                 root=raw_sig, root_id=roots.root_id(raw_sig), seconds=seconds)
        if fresh.outcome != kind:
            return TriageOutcome("flaky", kind, facts, root=raw_sig,
                                 root_id=roots.root_id(raw_sig), seconds=seconds,
                                 fresh_failure=fresh)
        label = _fullgraph_break(worker, case, fresh, budgets)
        if label is not None:
            return TriageOutcome("not_a_bug", kind, facts, label=label, root=raw_sig,
                                 root_id=roots.root_id(raw_sig), seconds=seconds)
        out = TriageOutcome("confirmed", kind, facts, seconds=seconds)
        starts: list[TestCase] = []
        accept = None
        if kind in MISMATCH_KINDS:
            t = time.monotonic()
            culprit = worker.localize(case, kind, output_index(fresh.to_dict()), budgets.localize)
            seconds["localize"] = time.monotonic() - t
            out.culprit = culprit
            if culprit.get("found") and culprit.get("label"):
                out.state, out.label = "not_a_bug", list(culprit["label"])
                out.root = roots.root_signature(kind, raw_sig, culprit, None)
                out.root_id = roots.root_id(out.root)
                return out
            if culprit.get("found"):
                accept = _accept_culprit(kind, culprit)
                if kind == "mismatch":
                    base = len(case.graph.inputs)
                    starts = [propagate(sub_case(case, [base + culprit["node"]]))]
                    alone = _culprit_case(culprit)
                    if alone is not None:
                        starts.insert(0, alone)
        if reduce:
            t = time.monotonic()
            reduced = _reduce(worker, starts, case, raw_sig if accept is None else None, accept,
                              budgets, log)
            seconds["reduce"] = time.monotonic() - t
            if reduced is not None:
                out.reduced, out.reduction = reduced.case, reduced.to_dict()
                if out.culprit and out.culprit.get("found"):
                    last = worker.run(reduced.case, timeout=budgets.timeout, coverage=False)
                    again = worker.localize(reduced.case, kind, output_index(last.to_dict()),
                                            budgets.localize)
                    if again.get("found"):
                        out.culprit = again
                        if again.get("label"):  # values made visible can show a non-bug class
                            out.state, out.label = "not_a_bug", list(again["label"])
        out.root = roots.root_signature(kind, raw_sig, out.culprit, out.reduced)
        out.root_id = roots.root_id(out.root)
        return out
    finally:
        if own:
            worker.close()


def _fullgraph_break(worker, case: TestCase, fresh, budgets: Budgets) -> list[str] | None:
    """The `fullgraph_break` label of a compile crash under fullgraph=True whose exception is a
    graph-break refusal that graph breaks get past: once they are allowed, the case does not
    fail with that exception again (it passes, or fails some other way: another bug, which
    this refusal does not stand for); else None."""
    exc_type = (fresh.exc_type or "").rsplit(".", 1)[-1]
    if (fresh.outcome != "compile_crash" or not case.settings.fullgraph
            or exc_type not in GRAPH_BREAK_EXCEPTIONS):
        return None
    relaxed = case.replace(settings=dataclasses.replace(case.settings, fullgraph=False))
    again = worker.run(relaxed, timeout=budgets.timeout, coverage=False)
    if again.outcome in ("timeout", "process_crash", "oom") or (
            again.outcome == "compile_crash"
            and (again.exc_type or "").rsplit(".", 1)[-1] == exc_type):
        return None  # the refusal is not what graph breaks get past, or nothing was learned
    then = ("compiles and matches eager" if again.outcome == "pass"
            else f"compiles past it (and then gives {again.outcome})")
    return ["fullgraph_break", f"{exc_type} under fullgraph=True, which forbids graph breaks; "
            f"with fullgraph=False the case {then}"]


def _timeout_of(result: dict) -> float:
    """The limit a timed-out run had (its details, untrusted), else the workers' default (the
    campaign's `--timeout` default too)."""
    details = result.get("details")
    limit = details.get("timeout") if isinstance(details, dict) else None
    if isinstance(limit, (int, float)) and not isinstance(limit, bool) and 0 < limit < 1e5:
        return float(limit)
    return DEFAULT_TIMEOUT


# Failures a worker reports itself, with its verdict's details (not a timeout or a kill).
JUDGED_IN_WORKER = ("mismatch", "grad_mismatch", "compile_crash", "runtime_crash")


def _failing_case(case: TestCase, result: dict) -> TestCase:
    """The case that fails as `result` says: `case` itself for a `metamorphic` disagreement (the
    variant is what compares the two compiled results); `case` under its metamorphic variant
    when the variant's compile made the failure (details["metamorphic"], untrusted: it must
    name the case's own variant); a failure the worker judged itself without naming the
    variant came from the case's own run: `case` without its variant, whose extra compile the
    failure did not need (and whose repro would compare two compiles instead of eager and
    compiled). A timeout or a killed worker does not say which compile it was in: `case`."""
    details = result.get("details")
    name = case.settings.metamorphic
    if name is None or result.get("outcome") == "metamorphic":
        return case
    if isinstance(details, dict) and details.get("metamorphic") == name:
        return metamorphic_case(case) or case
    if result.get("outcome") not in JUDGED_IN_WORKER:
        return case
    return case.replace(settings=dataclasses.replace(case.settings, metamorphic=None))


def _culprit_case(culprit: dict) -> TestCase | None:
    """The culprit alone on literal inputs (harness/localize.py), decoded like any outside case."""
    text = culprit.get("culprit_case")
    if not isinstance(text, str):
        return None
    try:
        return propagate(serialize.from_json_text(text))
    except Exception:  # noqa: BLE001 - TestCaseFormatError, InvalidGraph: start elsewhere
        return None


def _reduce(worker, starts: list[TestCase], original: TestCase, target: str | None, accept,
            budgets: Budgets, log) -> ReduceResult | None:
    """Reduce from the first of `starts` (then `original`) that fails as asked, within one
    time budget: the culprit alone on literal inputs, its prefix, the whole case."""
    reducer = Reducer(worker, budgets.timeout, budget=budgets.reduce, log=log)
    for case in [*starts, original]:
        try:
            res = reducer.reduce(case, target, accept)
            res.original = original
            res.nodes_before = len(original.graph.nodes)
            return res
        except CovfuzzError as exc:  # it did not fail as asked: start from the next one
            log(f"  reduction from {serialize.case_id(case)}: {exc}")
    return None
