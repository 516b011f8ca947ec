"""`RayPool`: a campaign's workers spread over the nodes of a Ray cluster.

The driver (the machine running `covfuzz fuzz`) keeps the corpus, the scheduler and triage; the
cluster only runs cases. One Ray actor per worker slot, pinned to its node, holds a
`WorkerHandle`: the same isolated worker process as a local campaign, so timeouts, memory
limits, crashes and restarts behave as on one machine. Cases travel as their stored bytes
(`covfuzz.serialize.encode`) and results as `RunResult` JSON; no object of ours is pickled.

Nodes come and go:
- a node that joins (or is alive at the start) gets `workers_per_node` slots (default: its CPU
  count), or `workers_per_gpu` slots per GPU, each actor holding 1/N of a GPU;
- when a slot's actor dies (its node was lost, or the actor crashed), the case it was running
  is queued again once; if it is lost a second time the future raises `CaseLost`, counted
  against the node. The slot ends; a node that is still alive gets a fresh slot when the
  node watcher next looks (every `node_poll_s` seconds).

Ray is an optional extra (`pip install -e ".[ray]"`); `RayPool` says so in one line when it is
missing. Only this module imports it.
"""

from __future__ import annotations

import dataclasses
import queue
import socket
import threading
import time
from concurrent.futures import Future

from covfuzz.errors import CovfuzzError
from harness.pool import WorkerPool, start_worker
from harness.result import RunResult
from harness.worker_handle import WorkerSpec, WorkerStartError

REQUEUES = 1             # times a case whose slot died is queued again before it counts as lost
NODE_POLL_S = 5.0        # how often the watcher looks for nodes that joined or died
ACTOR_CLOSE_S = 30.0     # how long close() waits for an actor to stop its worker


class RayUnavailable(CovfuzzError):
    """Ray is not installed, or no cluster could be reached at the address given (the
    command line says so in one line, exit status 2)."""


class CaseLost(RuntimeError):
    """A case's worker slot died twice (its node was lost): there is no result to judge."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')") from None
    return ray


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """A HOST:PORT with nothing listening is refused at once: ray.init would retry for
    minutes. ("auto" and ray:// addresses are left to Ray.)"""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayUnavailable(f"--ray {address!r}: expected 'auto' or HOST:PORT (the head node's GCS port)")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailable(f"cannot reach a Ray cluster at {address!r}: "
                             f"{exc.strerror or type(exc).__name__}") from None


class _SlotActor:
    """Runs inside a Ray worker process on one node: one covfuzz worker, started lazily.
    Returns plain data only (bytes, ints, strings), never objects of ours."""

    def __init__(self, spec_fields: dict):
        spec_fields = dict(spec_fields, coverage_groups=tuple(spec_fields["coverage_groups"]))
        self.spec = WorkerSpec(**spec_fields)
        self.handle = None

    def ready(self) -> bool:
        """Answered once the actor runs: a slot takes cases only after this, so an actor
        placed on a node that is dying never takes (and loses) one."""
        return True

    def run(self, case_bytes: bytes) -> tuple[str, bytes, int]:
        """("ok", RunResult JSON, restarts so far) or ("start_error", message, restarts)."""
        try:
            if self.handle is None:
                self.handle = start_worker(self.spec)
            result = self.handle.run(case_bytes)
        except WorkerStartError as exc:
            return "start_error", str(exc).encode(), self._restarts()
        return "ok", result.to_json().encode(), self._restarts()

    def _restarts(self) -> int:
        return self.handle.stats["restarts"] if self.handle is not None else 0

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


@dataclasses.dataclass
class _Item:
    future: Future
    case_bytes: bytes
    attempts: int = 0


@dataclasses.dataclass
class NodeStats:
    """What the driver knows of one node (`RayPool.node_stats()`)."""

    address: str
    head: bool = False      # the head node (where the cluster was started)
    alive: bool = True
    execs: int = 0          # results received
    restarts: int = 0       # worker processes restarted, all of this node's slots together
    lost: int = 0           # cases lost with this node (after their one re-queue)
    requeued: int = 0       # cases this node was running when a slot died, queued again
    last_heard: float = 0.0  # time.time() of the last result

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class RayPool(WorkerPool):
    """Worker slots on every node of the Ray cluster at `address` ("auto": the cluster this
    machine belongs to; or "HOST:PORT")."""

    def __init__(self, spec: WorkerSpec, address: str = "auto", workers_per_node: int | None = None,
                 workers_per_gpu: int | None = None, node_poll_s: float = NODE_POLL_S,
                 node_cache_dir: str | None = None):
        if workers_per_node is not None and workers_per_gpu is not None:
            raise ValueError("give workers_per_node or workers_per_gpu, not both")
        for name, value in (("workers_per_node", workers_per_node), ("workers_per_gpu", workers_per_gpu)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self._ray = ray = import_ray()
        _check_reachable(address)
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayUnavailable(f"cannot reach a Ray cluster at {address!r}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        # Each node keeps its own kernel cache (`node_cache_dir`, default: the node's
        # default_cache_dir()): a driver's campaign-directory path means nothing elsewhere.
        fields = dataclasses.asdict(dataclasses.replace(spec, cache_dir=node_cache_dir))
        self._spec_fields = dict(fields, coverage_groups=list(fields["coverage_groups"]))
        self._per_node, self._per_gpu = workers_per_node, workers_per_gpu
        self._actor_class = ray.remote(_SlotActor)
        self._cases: queue.SimpleQueue = queue.SimpleQueue()   # _Item, or None: a slot stops
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeStats] = {}
        self._slots: dict[str, list] = {}                       # node id -> live actors
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._stop = threading.Event()
        # Every case submitted ends as a result, a lost case or a case cancelled at close.
        self.counts = {"submitted": 0, "results": 0, "lost": 0, "cancelled": 0}
        self.sync_nodes()
        if not self.size:
            self.close()
            raise RayUnavailable(f"the Ray cluster at {address!r} has no node with capacity "
                                 "for a worker (no CPUs, or no GPUs with --workers-per-gpu)")
        self._watcher = threading.Thread(target=self._watch, args=(node_poll_s,), daemon=True,
                                         name="covfuzz-ray-nodes")
        self._watcher.start()

    # ----------------------------------------------------------------------- interface
    @property
    def size(self) -> int:
        with self._lock:
            return sum(len(actors) for actors in self._slots.values())

    def submit(self, case_bytes: bytes) -> Future[RunResult]:
        if self._closed:
            raise RuntimeError("submit on a closed pool")
        future: Future = Future()
        with self._lock:
            self.counts["submitted"] += 1
        self._cases.put(_Item(future, bytes(case_bytes)))
        return future

    def restarts(self) -> int:
        with self._lock:
            return sum(node.restarts for node in self._nodes.values())

    def node_stats(self) -> dict[str, dict]:
        """Per node (by Ray node id): address, alive, workers, execs, restarts, lost,
        requeued, last_heard."""
        with self._lock:
            return {node_id: dict(stats.to_dict(), workers=len(self._slots.get(node_id, ())))
                    for node_id, stats in self._nodes.items()}

    def status(self) -> dict:
        """The pool's keys in the campaign's status: per-node stats and the case accounting."""
        with self._lock:
            counts = dict(self.counts)
        return {"nodes": self.node_stats(), "pool": counts}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        while True:  # cancel what no slot has taken yet
            try:
                item = self._cases.get_nowait()
            except queue.Empty:
                break
            if item is None:
                continue
            if item.attempts:  # queued again after its slot died: already running
                item.future.set_exception(CaseLost("the pool closed before the case ran again"))
            elif not item.future.cancel():
                continue
            with self._lock:
                self.counts["cancelled"] += 1
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._cases.put(None)
        for thread in threads:
            thread.join()
        self._ray.shutdown()  # disconnects this driver; the cluster keeps running

    # ----------------------------------------------------------------------- nodes
    def _capacity(self, node: dict) -> tuple[int, dict]:
        """Slots for a node and the Ray resources each slot's actor asks for."""
        resources = node.get("Resources", {})
        if self._per_gpu is not None:
            gpus = int(resources.get("GPU", 0))
            return gpus * self._per_gpu, {"num_cpus": 0, "num_gpus": 1.0 / self._per_gpu}
        cpus = int(resources.get("CPU", 0))
        return (self._per_node if self._per_node is not None else cpus), {"num_cpus": 0}

    def sync_nodes(self) -> None:
        """Start slots on nodes that are alive and short of them; mark dead nodes."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        for node in self._ray.nodes():
            node_id = node["NodeID"]
            with self._lock:
                stats = self._nodes.setdefault(node_id, NodeStats(
                    str(node.get("NodeManagerAddress", "?")),
                    head="node:__internal_head__" in node.get("Resources", {})))
                stats.alive = bool(node.get("Alive"))
                have = len(self._slots.get(node_id, []))
            if not stats.alive or self._closed:
                continue
            want, resources = self._capacity(node)
            for _ in range(want - have):
                actor = self._actor_class.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                    max_restarts=0, **resources).remote(self._spec_fields)
                thread = threading.Thread(target=self._serve, args=(node_id, actor), daemon=True,
                                          name=f"covfuzz-ray-{node_id[:8]}")
                with self._lock:
                    self._slots.setdefault(node_id, []).append(actor)
                    self._threads.append(thread)
                thread.start()

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.sync_nodes()
            except Exception:  # noqa: BLE001 - the GCS may be briefly unreachable; look again later
                pass

    # ----------------------------------------------------------------------- slots
    def _serve(self, node_id: str, actor) -> None:
        """One slot's thread: cases from the queue to its actor, until told to stop or the
        actor dies."""
        ray = self._ray
        reported_restarts = 0  # this actor's restarts already added to its node's count
        try:
            if not self._wait_ready(actor):
                return
            while True:
                item = self._cases.get()
                if item is None:
                    return
                if item.attempts == 0 and not item.future.set_running_or_notify_cancel():
                    continue
                item.attempts += 1
                try:
                    status, payload, restarts = ray.get(actor.run.remote(item.case_bytes))
                except ray.exceptions.RayActorError:
                    self._slot_died(node_id, item)
                    return
                with self._lock:
                    stats = self._nodes[node_id]
                    stats.execs += 1
                    self.counts["results"] += 1
                    stats.last_heard = time.time()
                    stats.restarts += restarts - reported_restarts
                reported_restarts = restarts
                if status == "ok":
                    item.future.set_result(RunResult.from_json(payload))
                else:
                    item.future.set_exception(WorkerStartError(payload.decode(errors="replace")))
        finally:
            with self._lock:
                actors = self._slots.get(node_id, [])
                if actor in actors:
                    actors.remove(actor)
            self._stop_actor(actor)

    def _wait_ready(self, actor) -> bool:
        """Wait until the actor runs (False: it died first, or the pool is closing)."""
        ray = self._ray
        ref = actor.ready.remote()
        while not self._stop.is_set():
            done, _ = ray.wait([ref], timeout=1.0)
            if done:
                try:
                    return bool(ray.get(ref))
                except ray.exceptions.RayActorError:
                    return False
        return False

    def _slot_died(self, node_id: str, item: _Item) -> None:
        """The actor is gone with the case it was running: queue the case again once, then
        count it lost with the node."""
        with self._lock:
            stats = self._nodes[node_id]
            if item.attempts <= REQUEUES and not self._closed:
                stats.requeued += 1
                requeue = True
            else:
                stats.lost += 1
                self.counts["lost"] += 1
                requeue = False
        if requeue:
            self._cases.put(item)
        else:
            item.future.set_exception(CaseLost(
                f"case lost with Ray node {node_id[:12]} ({stats.address}) after "
                f"{item.attempts} attempt(s)"))

    def _stop_actor(self, actor) -> None:
        ray = self._ray
        try:
            ray.get(actor.close.remote(), timeout=ACTOR_CLOSE_S)
        except Exception:  # noqa: BLE001 - dead, unreachable or slow: it is killed below
            pass
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
