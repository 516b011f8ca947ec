"""Ray's per-case overhead: the same cases on local workers and on Ray actors (same count).

Starts a one-node Ray cluster on loopback (`ray start --head`, its own process group, killed at
the end), then runs the same generated cases through `LocalPool(spec, n)` and
`RayPool(spec, workers_per_node=n)` in alternating rounds (local, ray, local, ray, ...) so that
machine noise hits both alike. Each pool has its own fresh inductor cache and the FX-graph cache
is off, so neither reuses the other's kernels; each pool's workers are warmed up first (one case
each, not timed). Prints seconds per case for both and the overhead ratio.

    python benchmarks/bench_ray_overhead.py [--cases 8] [--workers 1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from covfuzz import serialize  # noqa: E402
from covfuzz.generator import GenOptions, generate  # noqa: E402
from harness.pool import LocalPool, WorkerSpec  # noqa: E402
from harness.ray_pool import RayPool  # noqa: E402


def start_head(cpus: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    proc = subprocess.Popen([ray, "start", "--head", "--port", str(port), "--num-cpus", str(cpus),
                             "--node-ip-address", "127.0.0.1", "--include-dashboard=false",
                             "--disable-usage-stats"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    if proc.wait(timeout=300) != 0:
        raise SystemExit("ray start --head failed")
    return proc, f"127.0.0.1:{port}"


def timed_batch(pool, cases: list[bytes]) -> float:
    t0 = time.perf_counter()
    futures = [pool.submit(c) for c in cases]
    outcomes = [f.result(timeout=1800).outcome for f in futures]
    if "process_crash" in outcomes:
        print(f"  note: outcomes {outcomes}")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, help="cases per round and pool")
    parser.add_argument("--workers", type=int, default=1, help="workers in each pool")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--seed", type=int, default=7000, help="first generator seed")
    args = parser.parse_args()

    opts = GenOptions(max_nodes=6)
    rounds = [[serialize.encode(generate(args.seed + r * args.cases + i, opts))
               for i in range(args.cases)] for r in range(args.rounds)]
    warm = [serialize.encode(generate(args.seed - 1 - i, opts)) for i in range(args.workers)]
    head, address = start_head(args.workers)
    env = {"TORCHINDUCTOR_FX_GRAPH_CACHE": "0", "TORCHINDUCTOR_AUTOGRAD_CACHE": "0"}
    with tempfile.TemporaryDirectory() as local_cache, tempfile.TemporaryDirectory() as ray_cache:
        local = LocalPool(WorkerSpec.for_campaign(device="cpu", cache_dir=local_cache, env=env),
                          args.workers)
        remote = RayPool(WorkerSpec.for_campaign(device="cpu", env=env), address,
                         workers_per_node=args.workers, node_cache_dir=ray_cache)
        try:
            timed_batch(local, warm)
            timed_batch(remote, warm)
            totals = {"local": 0.0, "ray": 0.0}
            for r, cases in enumerate(rounds):
                for name, pool in (("local", local), ("ray", remote)):
                    seconds = timed_batch(pool, cases)
                    totals[name] += seconds
                    print(f"round {r + 1} {name:5s}: {seconds / len(cases):6.2f} s/case", flush=True)
        finally:
            local.close()
            remote.close()
            os.killpg(head.pid, signal.SIGKILL)
    n = args.cases * args.rounds
    print(f"local: {totals['local'] / n:.2f} s/case   ray: {totals['ray'] / n:.2f} s/case   "
          f"overhead: {100 * (totals['ray'] / totals['local'] - 1):+.1f}% "
          f"({n} cases each, {args.workers} worker(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
