"""The GPU half (issue 22): placement, the GPU oracle's reference, GPU settings and stream
constructs, Triton coverage, GPU fault handling.

Tests without a mark run on any machine: placement with fake GPU lists (the environment a real,
spawned worker reports), the reference decision, flags and modes per device, stream codegen, and
GPU faults injected as the real exception types and CUDA's message text into a real worker.
Tests marked `cuda` need an NVIDIA GPU and are skipped without one (benchmarks/gpu_check.sh runs
them on a GPU box: `pytest -m cuda tests/test_gpu.py`).
"""

from __future__ import annotations

import collections
import random

import pytest
import torch

from covfuzz import codegen, config_space, ops
from covfuzz.errors import InvalidGraph
from covfuzz.generator import GenOptions, cudagraph_friendly, generate
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from harness import oracle
from harness.coverage import include_globs, line_id, omit_globs
from harness.faults import (CUDA_DEVICE_ASSERT_MESSAGE, CUDA_ILLEGAL_ACCESS_MESSAGE,
                            GPU_FAULT_SEEDS)
from harness.pool import (GiB, LocalPool, WorkerSpec, default_workers, default_workers_per_gpu,
                          gpu_of_slot, start_worker, visible_gpus)
from mutators.params import apply_setting_move, modes_for, setting_moves

NO_GPU = "no CUDA device: this test runs the real GPU path (benchmarks/gpu_check.sh on a GPU box)"
cuda = pytest.mark.cuda
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
FAULT = {kind: seed for seed, kind in GPU_FAULT_SEEDS.items()}


def small_case(device: str = "cpu", seed: int = 0, mode: str | None = None, op: str = "torch.add",
               attrs: dict | None = None) -> TestCase:
    x = TensorSpec.contiguous((4, 8), device=device)
    graph = Graph((Input(x), Input(x)), (Node(op, (0, 1), attrs if attrs is not None
                                              else {"alpha": 1}),), (2,))
    return propagate(TestCase(graph, CompileSettings(device=device, mode=mode), seed=seed))


def streams_case(device: str, n: int = 3, checked: bool = True) -> TestCase:
    x = TensorSpec.contiguous((4, 8), device=device)
    graph = Graph((Input(x), Input(x)),
                  (Node("cuda.streams", (0, 1), {"f": "sin", "g": "exp", "n": n}),
                   Node("cuda.stream_chain", (2,), {"f": "tanh"})), (3,))
    case = TestCase(graph, CompileSettings(device=device), seed=1)
    return propagate(case) if checked else case


@pytest.fixture(scope="module")
def fake_gpu_pool():
    """A cuda pool over two fake GPUs, "3" and "5" (no worker started by the pool itself)."""
    pool = LocalPool(WorkerSpec(device="cuda", coverage=False, warmup=False, timeout=60,
                                env={"COVFUZZ_FAULT_INJECTION": "1"}), 4, gpus=["3", "5"])
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def fault_worker(fake_gpu_pool):
    """One real worker, started as the fake pool's slot 3 would be (pinned to GPU "5"), with
    fault injection on, no coverage and no warm-up. Its cases run with device="cpu" (this
    machine may have no GPU); the GPU faults fire before anything is compiled."""
    with start_worker(fake_gpu_pool.slot_spec(3)) as worker:
        yield worker


# ----------------------------------------------------------------------------- 1. placement

def test_default_workers_from_gpu_memory_and_cores():
    h200 = 141 * GiB
    assert default_workers_per_gpu(1, h200, 16) == 16  # one GPU, 16 cores: the cores decide
    assert default_workers(8, h200, 16) == 16  # 8 GPUs share 16 cores: 2 each
    assert default_workers(8, h200, 128) == 8 * 16  # memory: 17 x 8 GiB, cores 16 per GPU
    assert default_workers(1, 16 * GiB, 64) == 2  # a 16 GiB GPU holds two workers
    assert default_workers(2, 4 * GiB, 64) == 2  # too small for one at 8 GiB: still one each
    assert default_workers(4, h200, 2) == 4  # fewer cores than GPUs: one each
    assert default_workers(0, 0, 6) == 6  # no GPU: one per core (a CPU campaign)
    assert default_workers(8, h200, 16, per_gpu=3) == 24  # --workers-per-gpu


def test_slots_go_round_robin_over_the_gpus():
    gpus = ["0", "1", "2"]
    placed = collections.Counter(gpu_of_slot(slot, gpus) for slot in range(2 * len(gpus)))
    assert placed == {"0": 2, "1": 2, "2": 2}


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")
    assert visible_gpus() == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_a_pool_pins_each_spawned_worker_to_one_gpu(fake_gpu_pool, fault_worker):
    """Fake GPUs "3" and "5": the environment a real spawned worker process reports."""
    pool = fake_gpu_pool
    assert [pool.slot_spec(s).env["CUDA_VISIBLE_DEVICES"] for s in range(4)] == \
        ["3", "5", "3", "5"]
    assert all(pool.slot_spec(s).env["COVFUZZ_FAULT_INJECTION"] == "1" for s in range(4))
    assert fault_worker.ping()["cuda_visible_devices"] == "5"
    cpu_pool = LocalPool(WorkerSpec(coverage=False), 2, gpus=["3", "5"])
    try:
        assert "CUDA_VISIBLE_DEVICES" not in cpu_pool.slot_spec(1).env  # a CPU pool pins nothing
    finally:
        cpu_pool.close()


# ----------------------------------------------------------------------------- 2. the GPU oracle

def test_reference_runs_on_the_gpu_when_it_fits_else_on_the_cpu():
    assert oracle.reference_device("cuda", None, 10 * GiB, 100 * GiB) == "cuda"
    assert oracle.reference_device("cuda", "auto", 60 * GiB, 100 * GiB) == "cpu"  # > half free
    assert oracle.reference_device("cuda", None, 1, None) == "cpu"  # free memory unknown
    assert oracle.reference_device("cuda", "cpu", 1, 100 * GiB) == "cpu"
    assert oracle.reference_device("cuda", "cuda", 60 * GiB, 1) == "cuda"  # asked for
    assert oracle.reference_device("cpu", None, 1, None) == "cpu"
    assert oracle.reference_device("cuda", "cpu-eager", 1, 100 * GiB) == "cuda"
    assert oracle.eager_device("cuda", "cpu-eager") == "cpu"
    assert oracle.eager_device("cuda", None) == "cuda"
    assert oracle.free_gpu_bytes("cpu") is None


def test_float64_estimate_counts_every_value():
    case = small_case()
    assert oracle.float64_bytes(case) == 3 * 32 * 8  # two inputs and one output of 32 elements
    back = case.replace(settings=CompileSettings(backward=True))
    assert oracle.float64_bytes(back) == 2 * oracle.float64_bytes(case)


# ----------------------------------------------------------------------------- 3. GPU settings

def test_triton_flags_only_for_cuda_cases():
    cpu = config_space.available_flags("inductor_config", "cpu")
    gpu = config_space.available_flags("inductor_config", "cuda")
    assert not [k for k in cpu if k.startswith("triton.") or k == "coordinate_descent_tuning"]
    assert not [k for k in gpu if k.startswith("cpp.")]
    for key in ("triton.cudagraphs", "triton.unique_kernel_names", "triton.persistent_reductions",
                "triton.multi_kernel", "coordinate_descent_tuning"):
        assert key in gpu, key  # all present in torch 2.11 .. 2.13
    assert "cpp_wrapper" in cpu and "cpp_wrapper" in gpu
    assert "inductor:triton.cudagraphs" in setting_moves("cuda")
    assert "inductor:triton.cudagraphs" not in setting_moves("cpu")
    cpu_case = small_case("cpu")
    assert apply_setting_move(cpu_case, random.Random(0), "inductor:triton.cudagraphs") is None
    gpu_case = small_case("cuda")
    moved = apply_setting_move(gpu_case, random.Random(0), "inductor:triton.cudagraphs")
    assert moved.settings.inductor_config == {"triton.cudagraphs": True}


def test_cuda_graph_modes_only_for_cuda_cases_that_do_not_write_in_place():
    assert "reduce-overhead" not in modes_for(small_case("cpu"))
    assert "reduce-overhead" in modes_for(small_case("cuda"))
    x = TensorSpec.contiguous((4, 8), device="cuda")
    inplace = propagate(TestCase(Graph((Input(x), Input(x)), (Node("Tensor.add_", (0, 1), {}),),
                                       (2,)), CompileSettings(device="cuda")))
    assert not cudagraph_friendly(inplace.graph.nodes)
    assert "reduce-overhead" not in modes_for(inplace)
    assert "max-autotune" in modes_for(inplace)
    rng = random.Random(2)
    modes = {apply_setting_move(small_case("cuda"), rng, "mode").settings.mode for _ in range(60)}
    assert "reduce-overhead" in modes and "max-autotune" in modes


def test_generator_gives_gpu_settings_and_streams_to_cuda_cases_only():
    gpu_modes, gpu_ops, cpu_ops = collections.Counter(), collections.Counter(), collections.Counter()
    for seed in range(260):  # stream ops are 1 in ~60 draws among 637 ops; seeds 182, 218, 251 draw one
        gpu = generate(seed, GenOptions(device="cuda", max_nodes=6))
        gpu_modes[gpu.settings.mode] += 1
        gpu_ops.update(n.op for n in gpu.graph.nodes if ops.get_op(n.op).category == "streams")
        if gpu.settings.mode == "reduce-overhead":
            assert cudagraph_friendly(gpu.graph.nodes)
        cpu = generate(seed, GenOptions(device="cpu", max_nodes=6))
        assert cpu.settings.mode is None
        assert not any(config_space.flag_device(k) == "cuda" for k in cpu.settings.inductor_config)
        cpu_ops.update(n.op for n in cpu.graph.nodes if ops.get_op(n.op).category == "streams")
    assert gpu_modes["reduce-overhead"] > 0 and gpu_modes[None] > 130
    assert gpu_ops and not cpu_ops
    assert ops.allowed_on(ops.get_op("cuda.streams"), "cuda")
    assert not ops.allowed_on(ops.get_op("cuda.streams"), "cpu")


def test_stream_codegen_is_valid_python_over_two_or_three_streams():
    for n in (2, 3):
        src = codegen.program(streams_case("cuda", n))
        compile(src, "streams_case.py", "exec")  # valid Python
        assert f"on_streams(x0, x1, {n}, lambda t: t.sin(), lambda t: t.exp())" in src
        for construct in ("torch.cuda.Stream()", ".wait_stream(", "torch.cuda.Event()",
                          ".record(", ".wait_event(", ".record_event()",
                          "with torch.cuda.stream("):
            assert construct in src, construct


# ----------------------------------------------------------------------------- 4. Triton coverage

def test_triton_codegen_and_runtime_are_measured():
    from coverage.files import GlobMatcher
    include, omit = GlobMatcher(include_globs()), GlobMatcher(omit_globs())
    base = torch.__file__.rsplit("/", 1)[0]
    for rel in ("_inductor/codegen/triton.py", "_inductor/codegen/triton_utils.py",
                "_inductor/codegen/triton_combo_kernel.py", "_inductor/runtime/triton_heuristics.py",
                "_inductor/cudagraph_trees.py"):
        path = f"{base}/{rel}"
        assert include.match(path) and not omit.match(path), rel


# ----------------------------------------------------------------------------- 5. GPU faults

def test_gpu_errors_are_classified():
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB.")
    assert oracle.classify(oom, "compile") == "oom" and oracle.classify(oom, "eager") == "oom"
    illegal = RuntimeError(CUDA_ILLEGAL_ACCESS_MESSAGE)
    assert oracle.is_cuda_fatal(illegal)
    assert oracle.classify(illegal, "compile") == "process_crash"
    assert oracle.classify(illegal, "run") == "process_crash"
    assert oracle.classify(illegal, "eager") == "invalid"  # eager's own fault: the case's
    wrapped = RuntimeError("backend='inductor' raised:\nRuntimeError: "
                           + CUDA_DEVICE_ASSERT_MESSAGE)
    assert oracle.classify(wrapped, "compile") == "process_crash"
    assert not oracle.is_cuda_fatal(RuntimeError("CUDA error: invalid argument"))


def test_gpu_faults_in_a_real_worker(fault_worker):
    w = fault_worker
    r = w.run(small_case(seed=FAULT["cuda_oom"]), device="cpu")
    assert r.outcome == "oom" and "CUDA out of memory" in r.message, r
    pid = w.pid
    assert pid is not None  # an OOM keeps the worker: its CUDA context is still sound

    restarts = w.stats["restarts"]
    for kind, text in (("cuda_illegal_access", "an illegal memory access was encountered"),
                       ("cuda_device_assert", "device-side assert triggered")):
        r = w.run(small_case(seed=FAULT[kind]), device="cpu")
        assert r.outcome == "process_crash" and text in r.message, r
        assert r.details["cuda_context_lost"] and r.details["stage"] == "compile"
        assert w.pid is None  # killed after it reported: its CUDA context cannot be trusted
    assert w.stats["context_losses"] == 2 and w.stats["crashes"] == 2
    assert w.stats["restarts"] == restarts + 1  # the second ran on a fresh worker

    # A kernel that never ends blocks the host thread: the per-case timeout (a hang guard).
    r = w.run(small_case(seed=FAULT["kernel_hang"]), timeout=8, device="cpu")
    assert r.outcome == "timeout" and w.stats["timeouts"] == 1
    assert w.stats["restarts"] == restarts + 2
    assert w.ping()["cuda_visible_devices"] == "5"  # a restarted worker keeps its GPU


def test_stream_ops_on_a_cpu_case_are_refused(fault_worker):
    """Meta tensors carry no device, so the validity check looks at the case's: a stream op in
    a CPU case is invalid before anything runs, and a worker handed one anyway (a file from
    elsewhere) answers `invalid`, never a finding."""
    with pytest.raises(InvalidGraph, match="not available on device cpu"):
        streams_case("cpu")
    r = fault_worker.run(streams_case("cpu", checked=False), device="cpu")
    assert r.outcome == "invalid", r


# ----------------------------------------------------------------------------- on a real GPU

def triton_codegen_lines() -> set[int]:
    """The feature ids of every line of Inductor's Triton code generator."""
    rel = "_inductor/codegen/triton.py"
    with open(f"{torch.__file__.rsplit('/', 1)[0]}/{rel}") as handle:
        count = sum(1 for _ in handle)
    return {line_id(f"torch/{rel}", n) for n in range(1, count + 1)}


@pytest.fixture(scope="module")
def gpu_worker(tmp_path_factory):
    """One real worker on the GPU, started as a cuda pool starts its first worker."""
    spec = WorkerSpec(device="cuda", coverage=True, warmup=False, timeout=300,
                      cache_dir=str(tmp_path_factory.mktemp("inductor_cache")))
    pool = LocalPool(spec, 1)
    try:
        with start_worker(pool.slot_spec(0)) as worker:
            yield worker
    finally:
        pool.close()


@cuda
@needs_gpu
def test_cuda_placement_and_cases_judged_on_the_gpu(gpu_worker):
    assert gpu_worker.ping()["cuda_visible_devices"] == visible_gpus()[0]
    r = gpu_worker.run(small_case("cuda"))
    assert r.outcome == "pass", r
    assert set(r.features) & triton_codegen_lines()  # Triton code generation is measured
    r = gpu_worker.run(small_case("cuda", seed=2), reference="cpu-eager")
    assert r.outcome == "pass", r


@cuda
@needs_gpu
def test_cuda_graphs_and_streams(gpu_worker):
    for case in (small_case("cuda", seed=4, mode="reduce-overhead"), streams_case("cuda", 3),
                 streams_case("cuda", 2).replace(
                     settings=CompileSettings(device="cuda", mode="reduce-overhead"))):
        r = gpu_worker.run(case, coverage=False)
        assert r.outcome == "pass", (case.settings.mode, r)


@cuda
@needs_gpu
def test_cuda_device_assert_restarts_the_worker(gpu_worker):
    """An out-of-range index on the GPU: a real device-side assert in eager (the case's own
    fault: invalid), after which the worker is replaced."""
    x = TensorSpec.contiguous((4, 8), device="cuda")
    idx = TensorSpec.contiguous((2,), dtype="int64", device="cuda")
    graph = Graph((Input(x), Input(idx, fill="index", values=(1, 1000))),
                  (Node("torch.index_select", (0, 1), {"dim": 0}),), (2,))
    bad = propagate(TestCase(graph, CompileSettings(device="cuda")))
    restarts = gpu_worker.stats["restarts"]
    r = gpu_worker.run(bad, coverage=False)
    assert r.outcome == "invalid" and r.details.get("cuda_context_lost"), r
    assert gpu_worker.run(small_case("cuda", seed=5), coverage=False).outcome == "pass"
    assert gpu_worker.stats["restarts"] == restarts + 1


@cuda
@needs_gpu
def test_cuda_out_of_memory_is_oom():
    free, total = torch.cuda.mem_get_info()
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        torch.empty(int(total * 2), dtype=torch.uint8, device="cuda")  # more than the GPU has
    assert oracle.classify(info.value, "compile") == "oom"
    assert oracle.free_gpu_bytes("cuda") > 0
