"""The execution harness: run test cases in isolated worker processes and judge them.

- harness.pool: `WorkerSpec` (how to start a worker, with presets per role), `start_worker(spec)`
  (the one way to create a `WorkerHandle`), the `WorkerPool` interface and `LocalPool`;
- harness.worker_handle: `WorkerHandle`, the parent side of one isolated worker process
  (timeout, memory limit, crash recovery, recycling);
- harness.worker: the child process; harness.execute: running one case inside it;
- harness.result: `RunResult` (outcomes: covfuzz.outcomes);
- harness.oracle: pure comparison functions; harness.coverage: coverage feature ids.

This package imports nothing on purpose: a spawned worker imports it before harness.worker sets
up torch's environment, so nothing here may pull in torch.
"""
