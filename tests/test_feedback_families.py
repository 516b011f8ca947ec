"""Issue 19's feature families: generated code, values and divergence, the value mutators, and a
short real campaign that records features of every family (real torch.compile, one worker)."""

from __future__ import annotations

import importlib.util
import math
import os
import random

import numpy as np
import pytest
import torch

from corpus import CorpusStore
from covfuzz import serialize
from covfuzz.campaign.feedbacks import (MAX_FAMILY_CREDIT, family_counts, make_feedbacks,
                                        normalized_gain)
from covfuzz.campaign.loop import Campaign
from covfuzz.campaign.options import CampaignOptions
from covfuzz.features import (FAMILY_ENV, LINE_BIT, family_codes, family_count, family_id,
                              is_line, parse_families)
from covfuzz.generator import GenOptions
from covfuzz.ir import (MAX_LITERAL_VALUES, CompileSettings, Graph, Input, Node, ScalarSpec,
                        TensorSpec, TestCase, literal_values_problem)
from covfuzz.propagate import propagate
from covfuzz.scheduler import DIVERGENCE_BOOST, Scheduler, SeedInfo
from harness import gencode, values
from harness.pool import WorkerSpec, start_worker
from mutators import MutationContext, propose
from mutators.values import lanes

pytestmark = pytest.mark.slow
NAN = float("nan")


def _case(inputs, nodes, outputs=None, seed=3) -> TestCase:
    outputs = outputs or (len(inputs) + len(nodes) - 1,)
    return propagate(TestCase(Graph(tuple(inputs), tuple(nodes), tuple(outputs)),
                              CompileSettings(), seed))


def _sin(vals) -> TestCase:
    spec = TensorSpec.contiguous((len(vals),), "float32")
    return _case([Input(spec, values=tuple(float(v) for v in vals))], [Node("torch.sin", (0,), {})])


def _row_sum(shape) -> TestCase:
    return _case([Input(TensorSpec.contiguous(shape, "float32"))],
                 [Node("torch.sum", (0,), {"dim": (len(shape) - 1,), "keepdim": False})])


def _search_table():
    """benchmarks/search_table.py, loaded by path."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks", "search_table.py")
    spec = importlib.util.spec_from_file_location("search_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ids(result, family: str) -> set[int]:
    feats = np.asarray(result.features, dtype=np.uint64)
    return set(feats[family_codes(feats) == {"gencode": 1, "values": 2, "divergence": 3}[family]]
               .tolist())


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """One worker computing every family (coverage off: these tests judge the new families)."""
    spec = WorkerSpec(cache_dir=str(tmp_path_factory.mktemp("inductor_cache")), timeout=300,
                      coverage=False, env={FAMILY_ENV: "gencode,values,divergence"})
    with start_worker(spec) as handle:
        yield handle


# ----------------------------------------------------------------------------- ids


def test_family_ids_never_collide_with_coverage_ids():
    ids = [family_id(f, "same text") for f in ("gencode", "values", "divergence")]
    assert len(set(ids)) == 3
    assert list(family_codes(ids)) == [1, 2, 3]
    assert not is_line(np.array(ids, dtype=np.uint64)).any()
    coverage = np.array([5, LINE_BIT | 7, (1 << 62) - 1], dtype=np.uint64)
    assert list(family_codes(coverage)) == [0, 0, 0]
    assert family_count(np.concatenate([coverage, np.array(ids, dtype=np.uint64)])) == {
        "coverage": 3, "gencode": 1, "values": 1, "divergence": 1}
    with pytest.raises(ValueError, match="unknown feature family"):
        parse_families("coverage,bogus")


# ----------------------------------------------------------------------------- generated code

TRITON = '''
@triton.jit
def triton_red_fused_amax_exp_sub_0(in_ptr0, out_ptr0, ks0, xnumel, r0_numel, XBLOCK : tl.constexpr, R0_BLOCK : tl.constexpr):
    xoffset = tl.program_id(0) * XBLOCK
    xindex = xoffset + tl.arange(0, XBLOCK)[:, None]
    xmask = xindex < xnumel
    x0 = xindex
    _tmp3 = tl.full([XBLOCK, R0_BLOCK], float("-inf"), tl.float32)
    for r0_offset in range(0, r0_numel, R0_BLOCK):
        r0_index = r0_offset + r0_base
        r0_1 = r0_index
        tmp0 = tl.load(in_ptr0 + (r0_1 + 37*x0), r0_mask & xmask, other=0.0)
        tmp1 = libdevice.exp(tmp0)
        tmp4 = triton_helpers.maximum(_tmp3, tmp1)
        _tmp3 = tl.where(r0_mask & xmask, tmp4, _tmp3)
    tmp3 = triton_helpers.max2(_tmp3, 1)[:, None]
    tl.store(out_ptr0 + (x0), tmp3, xmask)
'''


def test_normalizer_reads_triton_kernels():
    code = f"async_compile.triton('triton_red_fused_0', '''{TRITON}''', device_str='cuda')\n" \
           "def call(args):\n    buf0 = empty_strided_cuda((4, ), (1, ), torch.float32)\n"
    texts = gencode.feature_texts([code])
    assert "call:triton:libdevice.exp" in texts and "call:triton:triton_helpers.max2" in texts
    assert 'init:triton:tl.full([XBLOCK, R0_BLOCK], float("-inf"), tl.float32)' in texts
    assert "index:triton:r0_+N*x" in texts and "index:triton:x" in texts
    assert any(t.startswith("loops:triton:") and "for" in t and "reduce" in t for t in texts)
    assert "line:triton:tmp = tl.load(in_ptr + (r0_ + N*x), r0_mask & xmask, other=N)" in texts
    assert "line:wrapper:buf = empty_strided_cuda((N, ), (N, ), torch.float32)" in texts
    assert ("pair:triton:tmp = libdevice.exp(tmp)>tmp = triton_helpers.maximum(tmp, tmp)"
            in texts)
    # Names and numbers are abstracted: another kernel of the same shape gives the same texts.
    renamed = code.replace("37*x0", "91*x2").replace("_tmp3", "_tmp8").replace("in_ptr0", "in_ptr4")
    assert gencode.feature_texts([renamed]) == texts


def test_generated_code_tells_a_vectorized_body_from_a_scalar_tail(worker):
    vec = worker.run(_sin([0.25] * 64))  # whole vectors on any x86 ISA (8, 16 floats)
    tail = worker.run(_sin([0.25] * 5))  # fewer than one vector: partial (masked) vectors
    assert vec.outcome == tail.outcome == "pass", (vec.message, tail.message)
    full = family_id("gencode", "vec:cpp:body:load_full")
    partial = family_id("gencode", "vec:cpp:body:load_partial")
    assert full in _ids(vec, "gencode") and full not in _ids(tail, "gencode")
    assert partial in _ids(tail, "gencode") and partial not in _ids(vec, "gencode")
    assert _ids(vec, "gencode") != _ids(tail, "gencode")


# ----------------------------------------------------------------------------- values


def test_a_nan_input_gives_a_value_feature_a_finite_one_does_not(worker):
    finite = worker.run(_sin([0.5, 1.0, 2.0, 3.0, 4.0]))
    nan = worker.run(_sin([0.5, NAN, 2.0, 3.0, 4.0]))
    assert finite.outcome == nan.outcome == "pass"
    only_nan = _ids(nan, "values") - _ids(finite, "values")
    assert family_id("values", "node:torch.sin|float32>float32|nan>nan|tail") in only_nan
    assert family_id("values", "node:torch.sin|float32>float32|->-|tail") in _ids(finite, "values")
    assert family_id("values", "flow:input>torch.sin|float32|nan>nan") in only_nan


# ----------------------------------------------------------------------------- divergence


def test_divergence_buckets_climb_as_the_error_nears_the_tolerance():
    case = _row_sum((4, 8))
    eager = [torch.full((4,), 1000.0)]
    rtol, atol = 1e-4, 1e-5  # float32 in harness.oracle
    seen, buckets = set(), []
    for fraction in (0.0, 1e-3, 1e-2, 0.2, 0.9, 1.5):
        compiled = [eager[0] + fraction * (atol + rtol * 1000.0)]
        texts, best = values.divergence_texts(case, eager, compiled)
        buckets.append(best)
        assert texts >= seen  # every bucket up to the one reached: lower ones stay
        seen = texts
    assert buckets[0] == 0 and buckets == sorted(buckets) and len(set(buckets)) == len(buckets)
    assert buckets[-1] == values.PAST_ALLCLOSE
    assert "div:torch.sum|float32|3" in seen
    assert "divr:torch.sum|float32|tail|3" in seen  # 4 outputs: fewer than one vector


def test_a_real_run_reports_its_divergence(worker):
    result = worker.run(_row_sum((64, 64)))  # a long row sum: compiled and eager round apart
    assert result.outcome == "pass"
    bucket = result.details.get("divergence")
    assert isinstance(bucket, int) and bucket >= 0
    where = values.regime([torch.zeros(64)], "cpu")
    expected = {family_id("divergence", f"{name}|{b}") for b in range(1, bucket + 1)
                for name in ("div:torch.sum|float32", f"divr:torch.sum|float32|{where}")}
    assert _ids(result, "divergence") == expected


# ----------------------------------------------------------------------------- mutators


def test_value_mutators_edit_values_and_counts_validly():
    spec = TensorSpec.contiguous((4, 6), "float16")
    case = _case([Input(spec), Input(ScalarSpec("float"), value=2.0)],
                 [Node("torch.exp", (0,), {}), Node("torch.mul", (2, 1), {})])
    ctx, rng = MutationContext(), random.Random(5)
    changed = {"value_magnitudes": 0, "value_specials": 0, "simd_counts": 0}
    specials = 0
    for _ in range(40):
        for name in changed:
            out = propose(name, case, rng, ctx).case
            if out is None:
                continue
            changed[name] += 1
            x = out.graph.inputs[0]
            if x.values is not None:  # exact float16 literals only, never an invalid table
                assert literal_values_problem(x.spec, x.values) is None
                assert len(x.values) <= MAX_LITERAL_VALUES
                specials += any(math.isnan(v) or math.isinf(v) or v == 65504.0 for v in x.values)
            if name == "simd_counts" and x.spec.shape[-1] != spec.shape[-1]:
                width = x.spec.shape[-1]  # below, at or one past a width, or past two of them
                assert any(width in (w - 1, w, w + 1) or width > 2 * w
                           for w in lanes("float16")), width
    assert all(changed.values()), changed
    assert specials > 0


# ----------------------------------------------------------------------------- scheduling


def test_seeds_near_a_divergence_get_more_energy_and_families_are_credited_alike():
    sched = Scheduler(random.Random(0))
    sched.add_seeds([SeedInfo("near", np.array([1, 2, 3], dtype=np.uint64), 2, 1.0),
                     SeedInfo("far", np.array([4, 5, 6], dtype=np.uint64), 2, 1.0)])
    before = sched.energies()
    assert before[0] == before[1]
    sched.set_divergence("near", 8)
    after = sched.energies()
    assert after[0] == pytest.approx(after[1] * (1 + 8 * DIVERGENCE_BOOST))
    # Each family's find counts in units of its own mean per execution: one new divergence
    # bucket weighs as much as an average burst of thousands of coverage features.
    coverage, divergence = make_feedbacks("divergence")
    coverage.mean_gain, divergence.mean_gain = 3000.0, 0.2
    assert normalized_gain([coverage, divergence], {"coverage": 3000, "divergence": 1}) == 2.0
    assert normalized_gain([coverage, divergence], {"coverage": 10**6}) == MAX_FAMILY_CREDIT


# ----------------------------------------------------------------------------- a campaign


def test_a_short_campaign_records_features_of_every_family(tmp_path):
    seed_file = tmp_path / "row_sum.cfz"
    seed_file.write_bytes(serialize.encode(_row_sum((64, 64))))  # diverges a little: bucket > 0
    opts = CampaignOptions(workers=1, execs=3, seed_files=[str(seed_file)],
                           initial_seeds=2, status_interval=5.0, quiet=True,
                           gen=GenOptions(max_nodes=4), drain_limit=0.0)
    assert opts.families == ("coverage", "gencode", "values", "divergence")
    campaign = Campaign(str(tmp_path / "camp"), opts)
    status = campaign.run()
    counts = family_counts(campaign.feedbacks)
    assert status["execs"] >= 2
    assert all(counts[f] > 0 for f in ("coverage", "gencode", "values", "divergence")), counts
    with CorpusStore(os.path.join(tmp_path / "camp", "corpus.lmdb"), readonly=True,
                     create=False) as store:
        stored = np.concatenate([f for _, _, f in store.iter_seeds(with_features=True)])
        metas = [m for _, m in store.iter_seeds()]
    assert all(n > 0 for n in family_count(stored).values()), family_count(stored)
    assert any(m.get("divergence", 0) > 0 for m in metas)
    # benchmarks/search_table.py reads the campaign (here compared with itself).
    table = _search_table()
    row = table.campaign_table(str(tmp_path / "camp"), 1800.0)
    assert row["features"] == family_count(np.unique(stored)) and row["features"]["divergence"] > 0
    assert row["found_by"]["unknown"] == 0 and row["confirmed_root_causes"] >= 0
    assert sum(row["executed_by"].values()) == status["execs"] and row["executed_by"]["seed-file"]
    assert row["seconds_per_exec"]["seed-file"] > 0
    assert table.main([str(tmp_path / "camp"), str(tmp_path / "missing")]) == 2
    # The baseline computes coverage alone unless asked; `feedback` chooses families.
    assert CampaignOptions(no_feedback=True).families == ("coverage",)
    assert CampaignOptions(feedback=("values",)).families == ("coverage", "values")
    assert [f.name for f in make_feedbacks("divergence")] == ["coverage", "divergence"]
