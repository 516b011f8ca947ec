"""Throughput: warm covfuzz workers vs a fresh Python process per test case (torchfuzz's way).

The same generated CPU test cases run both ways, interleaved (warm, fresh, warm, fresh, ...) so
machine noise hits both alike. The fresh-process variant runs the case's standalone program
(`covfuzz.codegen.program`: import torch, build inputs, eager, torch.compile, compare) in a new
interpreter. Each variant has its own inductor cache directory (so neither reuses the C++
kernels the other compiled), and both have the FX-graph and AOT-autograd caches off.

Prints cases/hour/worker for each, their ratio, and where the warm worker's time goes.

    python benchmarks/bench_throughput.py [--cases 12] [--seed 9000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from covfuzz import codegen  # noqa: E402
from covfuzz.generator import generate  # noqa: E402
from harness.pool import WorkerSpec, start_worker  # noqa: E402


def fresh_process(case, workdir: str, cache_dir: str) -> float:
    script = os.path.join(workdir, "case.py")
    with open(script, "w") as handle:
        handle.write(codegen.program(case))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TORCHINDUCTOR_CACHE_DIR=cache_dir, TORCHINDUCTOR_FX_GRAPH_CACHE="0",
               TORCHINDUCTOR_AUTOGRAD_CACHE="0")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-I", script], cwd=workdir, env=env, capture_output=True,
                   timeout=600)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--seed", type=int, default=9000)
    args = parser.parse_args()

    cases = [generate(args.seed + i) for i in range(args.cases)]
    work = tempfile.mkdtemp(prefix="covfuzz-throughput-")
    cache = os.path.join(work, "inductor")
    t0 = time.perf_counter()
    worker = start_worker(WorkerSpec.for_campaign(cache_dir=cache))  # warm-up, like a campaign's
    startup = time.perf_counter() - t0
    warm, fresh, splits = [], [], []
    for i, case in enumerate(cases):
        result = worker.run(case)
        warm.append(result.timings["total"])
        splits.append(result.timings)
        fresh.append(fresh_process(case, work, os.path.join(work, "inductor-fresh")))
        print(f"case {i:>3}: warm {warm[-1]:6.2f}s ({result.outcome})  fresh process {fresh[-1]:6.2f}s",
              flush=True)
    worker.close()

    # The warm worker's start-up (imports, warm-up compile) is paid once per worker life
    # (recycled every 200 cases): amortize it over that many cases.
    warm_per_case = statistics.mean(warm) + startup / 200
    fresh_per_case = statistics.mean(fresh)
    print()
    print(f"{'':<22}{'s/case':>10}{'cases/hour/worker':>20}")
    print(f"{'covfuzz warm worker':<22}{warm_per_case:>10.2f}{3600 / warm_per_case:>20.0f}")
    print(f"{'fresh process':<22}{fresh_per_case:>10.2f}{3600 / fresh_per_case:>20.0f}")
    print(f"ratio warm/fresh throughput: {fresh_per_case / warm_per_case:.1f}x "
          f"(worker start-up {startup:.1f}s amortized over 200 cases)")
    keys = ("eager", "compile", "run", "backward", "coverage", "overhead")
    total = sum(t["total"] for t in splits)
    print("warm worker time split: " + ", ".join(
        f"{k} {100 * sum(t.get(k, 0.0) for t in splits) / total:.1f}%" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
