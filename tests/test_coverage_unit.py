"""One coverage unit everywhere: the same case measured by `covfuzz run`, `covfuzz import --run`,
`covfuzz cmin --rerun` and stored as a campaign's seed has the same feature count (arcs of
torch/_inductor and torch/_dynamo) and the same covered lines. Each command measures in a fresh
worker after the warm-up case a campaign's workers compile first (a cold worker's first case
would also count one-time initialisation). `import --run` puts a failing case into its failure
bucket, as a campaign does.

Real workers, real torch.compile on a two-node graph, real LMDB; one fresh worker per command
(a worker that has run a case measures it differently the second time: Inductor's caches).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import corpus
from covfuzz.features import COVERAGE, family_mask, is_line
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.serialize import case_id, encode, to_json
from harness.faults import FAULT_SEEDS
from tests.cli_inprocess import run_covfuzz

pytestmark = pytest.mark.slow

RAISE_IN_COMPILE = next(seed for seed, fault in FAULT_SEEDS.items() if fault == "raise_compile")


def _case(seed: int) -> TestCase:
    x = TensorSpec.contiguous((4, 8))
    graph = Graph((Input(x),), (Node("torch.sin", (0,), {}), Node("torch.mul", (0, 1), {})), (2,))
    return TestCase(graph, CompileSettings(), seed=seed)


def _counts(features) -> tuple[int, int]:
    """(arcs, lines) of the coverage family (a campaign also stores other feature families)."""
    f = np.asarray(features, dtype=np.uint64)
    f = f[family_mask(f, COVERAGE)]
    lines = int(is_line(f).sum())
    return len(f) - lines, lines


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("unit")
    good, bad = root / "case.json", root / "fault.json"
    good.write_text(to_json(_case(1)))
    bad.write_text(to_json(_case(RAISE_IN_COMPILE)))
    return root, str(good), str(bad)


@pytest.fixture(scope="module")
def campaign_counts(files):
    """The campaign's stored seed: the seed file is its first execution, after the warm-up."""
    root, good, _ = files
    camp = root / "camp"
    # --no-feedback: coverage is the only feature family its workers compute. (Feedback mode
    # also computes the generated-code family, whose capture hook in Inductor runs inside the
    # measured window: one line and one arc more. Left to issue 19's harness change.)
    ran = run_covfuzz("fuzz", camp, "--seeds", good, "--execs", "1", "--workers", "1",
                      "--no-triage", "--no-feedback", "--status-interval", "1")
    assert ran.returncode == 0, ran.stderr[-3000:]
    with corpus.open_campaign_store(str(camp)) as store:
        features = store.get_features(case_id(_case(1)))
    assert features is not None and len(features), "the seed file was not kept as a seed"
    status = json.loads((camp / "fuzzer_stats.json").read_text())
    arcs, lines = _counts(features)
    assert status["features"] == arcs and status["lines"] == lines  # the status's unit too
    return arcs, lines


def test_run_import_cmin_and_campaign_count_the_same(files, campaign_counts, monkeypatch):
    root, good, bad = files
    arcs, lines = campaign_counts
    assert arcs > 1000 and lines > 1000

    ran = run_covfuzz("run", good)
    assert ran.returncode == 0, ran.stderr[-3000:]
    m = re.search(r"coverage: (\d+) arc features, (\d+) lines", ran.stdout)
    assert m and (int(m[1]), int(m[2])) == (arcs, lines), (ran.stdout, arcs, lines)

    # import --run: the good case first (a fresh warm worker), then one whose compile raises
    # (the harness's test-only fault hook, inherited by the worker through the environment).
    monkeypatch.setenv("COVFUZZ_FAULT_INJECTION", "1")
    imported = root / "imported"
    ran = run_covfuzz("import", imported, good, bad, "--run")
    assert ran.returncode == 0, ran.stderr[-3000:]
    m = re.search(r"case\.json: added as \w+ \(pass, (\d+) features \((\d+) lines\)", ran.stdout)
    assert m and (int(m[1]), int(m[2])) == (arcs, lines), (ran.stdout, arcs, lines)
    assert "fault.json: compile_crash" in ran.stdout and "new failure bucket" in ran.stdout
    assert "not added as a seed" in ran.stdout and "1 failed" in ran.stdout
    monkeypatch.delenv("COVFUZZ_FAULT_INJECTION")
    with corpus.open_campaign_store(str(imported)) as store:
        assert store.seed_ids() == [case_id(_case(1))]
        buckets = store.failures()
        assert [b["kind"] for b in buckets] == ["compile_crash"]
        assert buckets[0]["example_ids"] == [case_id(_case(RAISE_IN_COMPILE))]
    crashes = run_covfuzz("crashes", imported, "--json")
    assert crashes.returncode == 0 and "compile_crash" in crashes.stdout

    # cmin --rerun re-measures the imported seed in a fresh warm worker: same count again
    ran = run_covfuzz("cmin", imported, "--rerun", "-o", root / "minimized")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert f"features {arcs} -> {arcs} (lines {lines} -> {lines})" in ran.stdout, ran.stdout


def test_coverage_html_of_the_corpus(files, campaign_counts):
    """`covfuzz coverage DIR --html OUT`: the seeds re-run under coverage.py (recording mode),
    then its own HTML report of torch/_inductor and torch/_dynamo."""
    root, _, _ = files
    out = root / "html"
    ran = run_covfuzz("coverage", root / "camp", "--html", out, "--limit", "1")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "re-running 1 seeds" in ran.stdout and "1/1 seeds" in ran.stdout
    index = (out / "index.html").read_text()
    assert "_inductor" in index and "_dynamo" in index
    assert not list((root / "camp").glob(".coverage*"))  # data files stay in a temp folder


def test_bucket_view_names_the_rarely_reached_functions(tmp_path):
    """`covfuzz coverage DIR --bucket SIG` from stored data only: the example's line features
    mapped back to torch files and functions, ranked by how many executions reached them."""
    from covfuzz.generator import generate
    from covfuzz.triage.compiler_view import _functions
    from covfuzz.triage.signature import signature_id
    from harness.coverage import line_id
    rel = "torch/_inductor/lowering.py"
    funcs = [f for f in _functions(rel) if f[1] - f[0] >= 3 and "." not in f[2]]
    (a_start, _, rare), (b_start, _, common) = funcs[0], funcs[1]
    rare_lines = [line_id(rel, a_start + k) for k in range(3)]
    common_lines = [line_id(rel, b_start + k) for k in range(3)]
    camp = tmp_path / "camp"
    with corpus.open_campaign_store(str(camp), readonly=False, create=True) as store:
        for k in range(20):  # 20 passing seeds all reach `common`, none reaches `rare`
            case = generate(k)
            store.add_seed(case_id(case), encode(case), {}, common_lines)
        case = generate(99)
        sig = "mismatch|torch.rare<-input"
        store.record_failure(signature_id(sig), "mismatch", "output 0 value mismatch", "",
                             case_id(case), encode(case),
                             {"outcome": "mismatch", "features": rare_lines + common_lines},
                             extra={"signature": sig})
    ran = run_covfuzz("coverage", camp, "--bucket", signature_id(sig))
    assert ran.returncode == 0, ran.stderr
    listed = ran.stdout.split("reached by", 2)[2]
    assert f"  {rare}  (" in listed and f"  {common}  (" not in listed, ran.stdout
    assert "_inductor/lowering.py" in ran.stdout
    bad = run_covfuzz("coverage", camp, "--bucket", "0123456789ab")
    assert bad.returncode == 2 and "no failure bucket" in bad.stderr
