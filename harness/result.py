"""`RunResult`: what running one test case produced (plain data, JSON round-trippable), and how
its timings split into stages (`stage_split`)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from covfuzz.outcomes import is_failure

# The worker's timed regions (wall-clock, disjoint): `overhead` = total - the first five.
TIMING_KEYS = ("eager", "compile", "run", "backward", "coverage", "overhead", "total")
# Parts measured inside those regions (each counted in its region too):
# - reference: the float64 reference (inside eager); oracle: the verdict's own work (inside
#   overhead: comparisons; its reference and determinism reruns are in eager);
# - dynamo / aot / inductor / build: compile work measured by torch's own `dynamo_timed`
#   keys (`compile_parts`), in whichever region it happened: mostly compile, the backward
#   graph's lazy compile in backward, a recompile in run, an eager `while_loop` compiling
#   itself in eager; `compile_in_<region>` is the part of their sum that ran inside that other
#   region.
PART_KEYS = ("reference", "oracle", "dynamo", "aot", "inductor", "build", "compile_in_eager",
             "compile_in_run", "compile_in_backward")
# Where an execution's time went, as a partition of its total (`stage_split`).
STAGES = ("eager", "reference", "dynamo", "aot", "inductor", "build", "compile_other", "run",
          "backward", "coverage", "oracle", "metamorphic", "harness", "killed")
# A worker's environment variable: "0" compiles every case, even one that differs from the
# previous case only in values (harness/execute.py's compile reuse; harness.worker_handle's
# presets say which workers reuse).
REUSE_ENV = "COVFUZZ_REUSE_COMPILE"
KILLED_OUTCOMES = ("timeout", "process_crash", "oom")  # the worker was killed: nothing measured

# How torch 2.13 times a compile (read in convert_frame.py, output_graph.py, aot_autograd.py,
# _aot_autograd/runtime_wrappers.py, _inductor/compile_fx.py, cpp_builder.py, async_compile.py):
# the outermost compile windows, between its compile start and end callbacks
# (torch._dynamo.callback_handler, triggers DYNAMO and LAZY_BACKWARD), and `dynamo_timed` keys
# (torch._dynamo.utils.compilation_time_metrics) nested inside them:
WINDOWS = ("frame", "lazy_backward")         # Dynamo's compile of a frame; the backward graph's
                                             # compile at the first backward call
BACKEND = "OutputGraph.call_user_compiler"   # inside a frame: the backend (compile_fx)
AOT = "create_aot_dispatcher_function"       # inside BACKEND: AOTAutograd (+ forward Inductor)
INDUCTOR = "compile_fx_inner"                # inside AOT or lazy_backward: Inductor on one graph
BUILDS = ("compile_file", "async_compile.precompile")  # inside INDUCTOR: C++ compiler, Triton
COMPILE_KEYS = (BACKEND, AOT, INDUCTOR, *BUILDS)


def empty_timings() -> dict:
    return {k: 0.0 for k in (*TIMING_KEYS, *PART_KEYS)}


def compile_parts(seconds: dict) -> dict:
    """Compile seconds by part, from the seconds of each of `WINDOWS` and `COMPILE_KEYS` spent
    in one region: dynamo (tracing, guards: the frames minus their backend), aot (AOTAutograd
    and the lazy backward compile, minus the Inductor compiles inside them), inductor (lowering
    and codegen: its compiles minus their builds, plus compile_fx's own work before
    AOTAutograd), build (the C++ compiler or Triton). Each key is capped by the one it nests in,
    so the parts sum to the windows (frame + lazy_backward)."""
    def get(key):
        return max(0.0, float(seconds.get(key, 0.0)))
    frame, lazy = get("frame"), get("lazy_backward")
    backend = min(get(BACKEND), frame)
    aot = min(get(AOT), backend)
    inductor = min(get(INDUCTOR), aot + lazy)
    build = min(sum(get(k) for k in BUILDS), inductor)
    return {"dynamo": frame - backend, "aot": aot + lazy - inductor,
            "inductor": inductor - build + backend - aot, "build": build}


def _seconds(timings: dict, key: str) -> float:
    v = timings.get(key, 0.0)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return float(v) if ok else 0.0


def stage_split(timings: dict, outcome: str = "") -> dict:
    """The execution's total time as a partition over `STAGES` (every key, non-negative, summing
    to `timings["total"]`). `compile_other` is the compile region no key explains (torch.compile's
    own work, the first compiled call's run); `harness` is the rest (building the case's
    program, judging input, moving the result between processes). A case whose worker was killed
    (`KILLED_OUTCOMES`, no worker timings) counts whole as `killed`. Time inside the coverage
    tracer is not apart: it inflates the traced stages (dynamo, inductor, ...); `coverage` is
    only starting, stopping and reading it. Results from before the parts were measured give
    their whole compile region as compile_other. `metamorphic` (outside the five regions, like
    oracle) is the second compile of a passing case under its metamorphic variant, whole."""
    t = {k: _seconds(timings, k) for k in (*TIMING_KEYS, *PART_KEYS)}
    out = dict.fromkeys(STAGES, 0.0)
    total = t["total"]
    if outcome in KILLED_OUTCOMES and "worker_total" not in timings:
        out["killed"] = total
        return out
    compiled = t["dynamo"] + t["aot"] + t["inductor"] + t["build"]
    elsewhere = t["compile_in_eager"] + t["compile_in_run"] + t["compile_in_backward"]
    out.update(eager=max(0.0, t["eager"] - t["reference"] - t["compile_in_eager"]),
               reference=t["reference"],
               dynamo=t["dynamo"], aot=t["aot"], inductor=t["inductor"], build=t["build"],
               compile_other=max(0.0, t["compile"] - max(0.0, compiled - elsewhere)),
               run=max(0.0, t["run"] - t["compile_in_run"]),
               backward=max(0.0, t["backward"] - t["compile_in_backward"]),
               coverage=t["coverage"], oracle=t["oracle"],
               metamorphic=_seconds(timings, "metamorphic"))
    measured = sum(out.values())
    if measured > total > 0:  # parts that did not nest as expected: scaled to the total
        out = {k: v * total / measured for k, v in out.items()}
    elif total <= 0:
        return dict.fromkeys(STAGES, 0.0)
    out["harness"] = max(0.0, total - sum(out.values()))
    return out


@dataclass
class RunResult:
    """The verdict on one test case.

    - outcome: one of covfuzz.outcomes.OUTCOMES.
    - message: failure text (exception type and the first lines of its message), or a note.
    - exc_type: qualified exception type name ('' when none).
    - frames: innermost traceback frames inside torch, "path/rel/to/torch:line:function",
      outermost first (triage buckets on these).
    - timings: seconds, keys TIMING_KEYS (`overhead` = total - the other five) and the parts
      PART_KEYS measured inside them (`stage_split` turns them into a partition of the total).
    - features: sorted coverage feature ids, stable across processes: 62-bit arc ids, and
      line ids with bit 62 set (covfuzz.features.LINE_BIT).
    - n_lines: covered lines (all measured files).
    - details: mismatch figures, notes ('nondeterministic', 'float->int cast UB', ...),
      exit code / signal of a crashed worker, and so on.
    """

    outcome: str
    message: str = ""
    exc_type: str = ""
    frames: list = field(default_factory=list)
    timings: dict = field(default_factory=empty_timings)
    features: list = field(default_factory=list)
    n_lines: int = 0
    details: dict = field(default_factory=dict)
    case_id: str = ""

    @property
    def failed(self) -> bool:
        return is_failure(self.outcome)

    def stages(self) -> dict:
        """`stage_split` of this result."""
        return stage_split(self.timings, self.outcome)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, obj: dict) -> "RunResult":
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        return cls(**known)

    @classmethod
    def from_json(cls, text: str | bytes) -> "RunResult":
        return cls.from_dict(json.loads(text))
