"""The labelled triage set (tests/triage_set.py) through the real triage pipeline: confirmation,
localization to the culprit, non-bug labels, root signatures.

Done when (issue 16): 0 root causes split over two roots, 0 distinct causes merged into one,
0 near-misses reported as bugs. One worker triages every case (the pipeline's fresh-process
confirmation is covered by tests/test_triage_stage.py); reduction is left out here to keep the
suite short, so roots carry no settings part (reduction is tested on its own)."""

import pytest

from covfuzz.triage.pipeline import Budgets, triage_failure
from harness.pool import WorkerSpec, start_worker

from triage_set import CASES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def verdicts():
    worker = start_worker(WorkerSpec.for_reducer(timeout=120))
    out = {}
    try:
        for labelled in CASES:
            case = labelled.build()
            result = worker.run(case, coverage=False)
            if result.outcome == "pass":
                out[labelled.name] = ("pass", None, None)
                continue
            t = triage_failure(case, result.to_dict(), worker=worker, reduce=False,
                               budgets=Budgets(localize=120, timeout=120))
            out[labelled.name] = (t.state, t.root_id, t.label and t.label[0])
    finally:
        worker.close()
    return out


def test_one_root_per_cause_and_no_two_causes_merged(verdicts):
    roots_of_cause: dict[str, set] = {}
    for labelled in CASES:
        if labelled.cause is None:
            continue
        state, root, _ = verdicts[labelled.name]
        assert state == "confirmed", (labelled.name, verdicts[labelled.name])
        roots_of_cause.setdefault(labelled.cause, set()).add(root)
    split = {c: r for c, r in roots_of_cause.items() if len(r) != 1}
    assert not split, f"root causes split over several roots: {split}"
    owner: dict[str, str] = {}
    for cause, roots in roots_of_cause.items():
        (root,) = roots
        assert root not in owner, f"{cause} and {owner.get(root)} merged into root {root}"
        owner[root] = cause


def test_near_misses_are_not_reported(verdicts):
    reported = {}
    for labelled in CASES:
        if labelled.cause is not None:
            continue
        state, _, label = verdicts[labelled.name]
        if state == "confirmed":
            reported[labelled.name] = (state, labelled.kind)
    assert not reported, f"near-misses reported as bugs: {reported}"
