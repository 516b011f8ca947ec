"""Metamorphic checks (issue 19, point 6): a passing case compiled again under a variant of its
settings (vectorization off, dynamic or static shapes, cpp_wrapper flipped) and the two
compiled results compared; and the late bandit credit for a new root cause (point 5).

Real torch.compile on graphs of one or two nodes, in this process (harness.execute) and in real
worker processes; a disagreement between two compiled results that no torch bug provides comes
from the test-only fault `perturb_variant` (harness/faults.py), which moves only the variant's
outputs: the comparison, the signature, the confirmation and the reduction all run for real.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

import corpus
from cli_inprocess import run_covfuzz
from covfuzz import codegen, serialize
from covfuzz.campaign import Campaign, CampaignOptions
from covfuzz.campaign.candidates import NEW_ROOT_CREDIT, metamorphic_variant
from covfuzz.campaign.execution import Candidate, Execution
from covfuzz.campaign.objectives import record_failure
from covfuzz.errors import TestCaseFormatError
from covfuzz.generator import GenOptions, generate
from covfuzz.ir import (METAMORPHIC_VARIANTS, CompileSettings, Graph, Input, Node, TensorSpec,
                        TestCase, applicable_variants, metamorphic_case)
from covfuzz.propagate import propagate
from covfuzz.triage.pipeline import Budgets, _failing_case, triage_failure
from covfuzz.triage.signature import signature_of
from harness import execute as ex
from harness import gencode
from harness.faults import METAMORPHIC_FAULT_SEEDS
from harness.result import RunResult

pytestmark = pytest.mark.slow

PERTURB = next(s for s, name in METAMORPHIC_FAULT_SEEDS.items() if name == "perturb_variant")


def _sin(variant: str | None, seed: int = 3, **settings) -> TestCase:
    """sin of a float32 [4, 37]: 37 elements a row, so a vectorized body and a scalar tail."""
    x = TensorSpec.contiguous((4, 37))
    graph = Graph((Input(x),), (Node("torch.sin", (0,), {}),), (1,))
    return propagate(TestCase(graph, CompileSettings(metamorphic=variant, **settings), seed))


def _unjudged(seed: int = 3) -> TestCase:
    """sin of float16 bits read as bfloat16: the float64 reference reinterprets 8-byte floats
    (another shape), so the oracle has no reference for the output and eager cannot decide."""
    h = TensorSpec.contiguous((4, 8), "float16")
    graph = Graph((Input(h),), (Node("Tensor.view.dtype", (0,), {"dtype": "bfloat16"}),
                                Node("torch.sin", (1,), {})), (2,))
    return propagate(TestCase(graph, CompileSettings(metamorphic="novec"), seed))


@pytest.fixture
def faults(monkeypatch):
    # Read per case (harness.faults.fault_of); workers started meanwhile inherit it.
    monkeypatch.setenv("COVFUZZ_FAULT_INJECTION", "1")


# ----------------------------------------------------------------------------- the variants


@pytest.mark.parametrize("variant, default_only, variant_only", [
    ("novec", "at::vec", None),                 # the vectorized loops are gone
    ("dynamic", None, "ks0"),                   # kernels take symbolic sizes
    ("cpp_wrapper", None, "inductor_entry_impl"),  # the wrapper is C++
])
def test_variant_compile_changes_the_code_and_a_passing_case_stays_passing(variant, default_only,
                                                                          variant_only):
    case = _sin(variant)
    with gencode.capture() as codes:  # every module Inductor writes: the case's, the variant's
        result = ex.execute(serialize.encode(case))
    assert result["outcome"] == "pass", result["message"]
    assert result["details"]["metamorphic"] == variant and "metamorphic_note" not in result["details"]
    assert result["timings"]["metamorphic"] > 0
    assert len(codes) == 2, "one compile of the case, one of its variant"
    default, other = codes
    assert "at::vec" in default  # the case's own kernel is vectorized
    if default_only:
        assert default_only not in other
    if variant_only:
        assert variant_only in other and variant_only not in default


def test_a_variant_that_changes_nothing_is_not_compiled():
    assert "static" not in applicable_variants(CompileSettings())  # static already
    assert "novec" not in applicable_variants(CompileSettings(device="cuda"))
    assert applicable_variants(CompileSettings(dynamic=True, backend="aot_eager")) == ("static",)
    case = _sin("static")
    assert metamorphic_case(case) is None
    result = ex.execute(serialize.encode(case))
    assert result["outcome"] == "pass"
    assert "changes nothing" in result["details"]["metamorphic_note"]


def test_variant_settings():
    s = CompileSettings(dynamic=True, mark_dynamic=((0, 0),), metamorphic="static",
                        inductor_config={"cpp_wrapper": True})
    static = metamorphic_case(_sin(None).replace(settings=s)).settings
    assert (static.dynamic, static.mark_dynamic, static.metamorphic) == (False, (), None)
    flipped = metamorphic_case(_sin("cpp_wrapper", inductor_config={"cpp_wrapper": True}))
    assert flipped.settings.inductor_config == {"cpp_wrapper": False}
    assert metamorphic_case(_sin("novec")).settings.inductor_config == {"cpp.simdlen": 0}


# ----------------------------------------------------------------------------- verdicts


def test_a_variant_eager_proves_wrong_is_an_ordinary_mismatch(faults):
    """Eager and its float64 reference judge the output: the variant's wrong result is a
    mismatch of the case under the variant's settings, which triage then works on."""
    case = _sin("novec", seed=PERTURB)
    result = ex.execute(serialize.encode(case))
    assert result["outcome"] == "mismatch", result["message"]
    assert result["details"]["metamorphic"] == "novec"
    assert "metamorphic variant novec" in result["message"]
    assert signature_of(case, result)[0] == "mismatch|torch.sin<-input"
    failing = _failing_case(case, result)
    assert failing.settings.metamorphic is None
    assert failing.settings.inductor_config == {"cpp.simdlen": 0}
    # The same fault seed without a variant: the case's own compile is not touched.
    assert ex.execute(serialize.encode(_sin(None, seed=PERTURB)))["outcome"] == "pass"


def test_a_failure_of_the_default_compile_is_triaged_without_the_variant():
    """A case that carries a variant but fails in its own compile (or eagerly): triage works on
    it without the variant, so the reduced case's repro compares eager with compiled (the
    variant's repro would compare two compiles and miss the failure)."""
    case = _sin("cpp_wrapper", inductor_config={"cpp_wrapper": True})
    result = {"outcome": "mismatch", "details": {"output": 0}}
    failing = _failing_case(case, result)
    assert failing.settings.metamorphic is None
    assert failing.settings.inductor_config == {"cpp_wrapper": True}  # its own settings kept
    assert "METAMORPHIC" not in codegen.program(failing)
    forged = {"outcome": "mismatch", "details": {"metamorphic": "novec"}}  # not its variant
    assert _failing_case(case, forged).settings.metamorphic is None
    assert _failing_case(case, {"outcome": "metamorphic", "details": {}}) is case
    # A timeout does not say which of the two compiles hung: the case is kept whole.
    assert _failing_case(case, {"outcome": "timeout", "details": {"timeout": 60}}) is case


def test_two_compiled_results_that_disagree_where_eager_cannot_decide(faults, tmp_path):
    """No float64 reference for the output: the disagreement is a `metamorphic` failure,
    bucketed by variant and op, confirmed in a fresh worker process and reduced (briefly here)
    keeping the variant."""
    case = _unjudged(seed=3)
    assert ex.execute(serialize.encode(case))["outcome"] == "pass"  # no fault: they agree
    case = _unjudged(seed=PERTURB)
    result = RunResult.from_dict(ex.execute(serialize.encode(case)))
    assert result.outcome == "metamorphic", result.message
    d = result.details
    assert (d["metamorphic"], d["output"], d["dtype"]) == ("novec", 0, "bfloat16")
    assert d["variant"] - d["default"] == pytest.approx(1.0, abs=0.02)
    assert d["default"] == d["eager"]  # eager sides with the default, but has no referee
    with corpus.open_campaign_store(str(tmp_path), readonly=False, create=True) as store:
        bucket, sig, new = record_failure(store, case, serialize.case_id(case),
                                          serialize.encode(case), result)
        assert new and sig == "metamorphic|novec|torch.sin"
        example = store.get_failure(bucket)
        assert example["kind"] == "metamorphic"
    outcome = triage_failure(case, result.to_dict(), cache_dir=None,
                             budgets=Budgets(reduce=10.0, timeout=120.0))
    assert outcome.state == "confirmed", outcome.fresh
    assert outcome.fresh["signature"] == sig and outcome.root == sig
    assert outcome.culprit is None  # no referee: nothing to localize
    assert outcome.reduced is not None and outcome.reduced.settings.metamorphic == "novec"


def test_the_full_program_compiles_both_variants(tmp_path):
    case = _unjudged()
    assert codegen.compact_program(case) is None  # the short repro compares with eager only
    src = codegen.program(case)
    assert "VARIANT_INDUCTOR_CONFIG = {'cpp.simdlen': 0}" in src
    plain = codegen.program(case.replace(settings=dataclasses.replace(case.settings,
                                                                      metamorphic=None)))
    assert "VARIANT_" not in plain and "METAMORPHIC" not in plain
    (tmp_path / "repro.py").write_text(src)
    proc = subprocess.run([sys.executable, "repro.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "metamorphic variant 'novec'" in proc.stdout
    assert "the two compiled results agree" in proc.stdout


# ----------------------------------------------------------------------------- stored form


def test_the_variant_round_trips_and_a_bad_name_is_refused(tmp_path):
    case = _sin("dynamic")
    for data in (serialize.encode(case), serialize.to_json(case).encode()):
        assert serialize.decode(data).settings.metamorphic == "dynamic"
    plain = _sin(None)
    assert "metamorphic" not in serialize.to_json(plain)  # old cases encode and hash as before
    assert serialize.case_id(plain) != serialize.case_id(case)
    obj = serialize.to_dict(case)
    del obj["settings"]["metamorphic"]
    assert serialize.from_dict(obj).settings.metamorphic is None  # files from before load
    for bad in ("vectorize", 1, True, ["novec"]):
        obj["settings"]["metamorphic"] = bad
        with pytest.raises(TestCaseFormatError, match="settings.metamorphic"):
            serialize.from_dict(obj)
    obj["settings"]["metamorphic"] = "x" * 5000
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    ran = run_covfuzz("show", path)
    assert ran.returncode == 2 and len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert "settings.metamorphic" in ran.stderr and len(ran.stderr) < 400


def test_fuzz_refuses_a_rate_outside_zero_one(tmp_path):
    ran = run_covfuzz("fuzz", tmp_path / "c", "--metamorphic", "1.5", "--execs", "1")
    assert ran.returncode == 2 and "--metamorphic" in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1
    with pytest.raises(ValueError):
        CampaignOptions(metamorphic_rate=-0.1)


# ----------------------------------------------------------------------------- campaigns


def test_candidates_draw_variants_at_the_rate():
    cases = [generate(seed, GenOptions(max_nodes=3)) for seed in range(400)]
    drawn = [metamorphic_variant(c, 0.25, campaign_seed=7) for c in cases]
    share = sum(v is not None for v in drawn) / len(cases)
    assert 0.17 < share < 0.33
    assert set(drawn) - {None} <= set(METAMORPHIC_VARIANTS)
    assert len(set(drawn) - {None}) >= 3  # every applicable variant gets drawn
    for c, v in zip(cases, drawn):
        assert v is None or v in applicable_variants(c.settings)
    # The draw is a function of the case and the campaign seed (a resume draws the same)...
    assert drawn == [metamorphic_variant(c, 0.25, campaign_seed=7) for c in cases]
    # ...and of the case without its own variant: a seed's check is not what decides.
    flagged = cases[0].replace(settings=dataclasses.replace(cases[0].settings, metamorphic="dynamic"))
    assert metamorphic_variant(flagged, 0.25, 7) == drawn[0]
    assert all(metamorphic_variant(c, 0.0, 7) is None for c in cases[:50])
    assert all(metamorphic_variant(c, 1.0, 7) is not None for c in cases[:50])


def _execution(case: TestCase, strategy: str, bucket: str | None = None) -> Execution:
    origin = {"parent": None, "mutators": ["mutate_settings"], "depth": 1, "strategy": strategy,
              "settings": ["dynamic"]}
    ex_ = Execution.of(Candidate(case, origin), RunResult("mismatch" if bucket else "pass",
                                                          timings={"total": 2.0}))
    ex_.bucket, ex_.new_bucket = bucket, bucket is not None
    return ex_


def test_a_new_root_cause_is_credited_to_the_strategy_of_its_first_example(tmp_path):
    case = _sin(None)
    campaign = Campaign(str(tmp_path / "c"), CampaignOptions(metamorphic_rate=0.0))
    try:
        maker = campaign.candidates
        # A bucket triaged before (another root) is in the store.
        campaign.store.record_failure("0123456789ab", "mismatch", "m", "", "ffff", b"x",
                                      {"outcome": "mismatch"},
                                      extra={"triage": {"state": "confirmed",
                                                        "root_id": "aaaaaaaaaaaa"}})
        maker.learn(_execution(case, "generate"))
        maker.learn(_execution(case, "settings", bucket="bbbbbbbbbbbb"))
        maker.learn(_execution(case, "mutate", bucket="cccccccccccc"))
        gain = {n: maker.strategies.arms[n][0] for n in ("settings", "mutate")}
        move = maker.setting_moves.arms["dynamic"][0]
        tries = maker.strategies.arms["settings"][2]
        assert maker.credit_root("bbbbbbbbbbbb", "dddddddddddd") == "settings"
        assert maker.strategies.arms["settings"][0] == pytest.approx(gain["settings"] + NEW_ROOT_CREDIT)
        assert maker.strategies.arms["settings"][2] == tries  # a late reward, not a play
        assert maker.setting_moves.arms["dynamic"][0] == pytest.approx(move + NEW_ROOT_CREDIT)
        # A root some bucket had already: no credit (here one triaged before this run).
        assert maker.credit_root("cccccccccccc", "aaaaaaaaaaaa") is None
        assert maker.strategies.arms["mutate"][0] == pytest.approx(gain["mutate"])
        # A bucket found before this run (its origin is not kept): no credit either.
        assert maker.credit_root("eeeeeeeeeeee", "ffffffffffff") is None
    finally:
        campaign.close()
