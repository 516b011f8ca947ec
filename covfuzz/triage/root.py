"""Root-cause signatures: what merges buckets that are one bug.

A raw bucket is named by what a failure looked like where it was seen (the op at the graph
output for a mismatch, the crash message and frames for a crash). One root cause seen through
different graphs makes several raw buckets. Triage (covfuzz/triage/pipeline.py) names each
bucket's root:
- a mismatch: by its culprit, the node where the divergence is born (harness/localize.py): the
  op, its categorical attributes, the dtype classes in and out, the special value classes the
  divergence needs, plus the compile settings the reduced case still needs (a 1-minimal set).
  The culprit's exact dtypes, value classes present and loop regime (vectorized body, scalar
  tail, both) are recorded and shown, not part of the root: one lowering bug shows in every
  dtype and element count, and buckets split by them would be one bug in several buckets;
- a crash: its signature, which already names the failing check (the assert or raise that
  fired and the exception beneath wrapper messages);
- a mismatch that could not be localized: its raw signature (it is not merged with anything).
Buckets whose roots are equal are one root cause (`covfuzz crashes` lists root causes).
"""

from __future__ import annotations

import hashlib

from covfuzz.ir import FLOAT_DTYPES, INT_DTYPES, CompileSettings, TestCase

DEFAULTS = CompileSettings()


def culprit_signature(kind: str, culprit: dict) -> str:
    """The part of a mismatch's root that localization gives (without settings): the culprit's
    op, its categorical attributes (numbers vary between graphs of one bug: a softshrink's
    `lambd`), the dtype classes in and out (the same lowering fails in float32 and bfloat16),
    and the special value classes the divergence needs (localization tries each without;
    `unknown` when it cannot tell)."""
    attrs = ",".join(f"{k}={v}" for k, v in sorted((culprit.get("attrs") or {}).items())
                     if v is None or isinstance(v, bool) or (isinstance(v, str) and v != "n"))
    needed = culprit.get("needed_classes")
    # Unknown (the culprit alone does not diverge, or its inputs are too large to try): the
    # classes present vary from graph to graph, so they would split one bug.
    classes = "unknown" if needed is None else "+".join(needed) or "ordinary"
    dtypes = ",".join(_dtype_class(d) for d in culprit.get("dtypes_in") or [])
    return (f"{kind}|{culprit.get('op')}({attrs})|{dtypes}->"
            f"{_dtype_class(culprit.get('dtype_out') or '?')}|{classes}")


def _dtype_class(name: str) -> str:
    if name.startswith("py"):
        return name
    if name in FLOAT_DTYPES:
        return "float"
    if name in INT_DTYPES:
        return "int"
    return name


def settings_needed(case: TestCase) -> str:
    """The case's compile settings that differ from the defaults, as a stable short text
    (after reduction: the settings the failure needs)."""
    s = case.settings
    parts = []
    if s.mode is not None:
        parts.append(f"mode={s.mode}")
    if s.dynamic is not None:
        parts.append(f"dynamic={s.dynamic}")
    if s.fullgraph:
        parts.append("fullgraph")
    if s.mark_dynamic:
        parts.append("mark_dynamic")
    if s.backward:
        parts.append("backward")
    if s.device != DEFAULTS.device:
        parts.append(f"device={s.device}")
    parts += [f"inductor.{k}" for k in sorted(s.inductor_config)]
    parts += [f"dynamo.{k}" for k in sorted(s.dynamo_config)]
    return ",".join(parts) or "defaults"


def root_signature(kind: str, raw_signature: str, culprit: dict | None,
                   reduced: TestCase | None) -> str:
    """The root cause of a confirmed failure (see the module docstring)."""
    if kind in ("mismatch", "grad_mismatch"):
        if not culprit or not culprit.get("found"):
            return raw_signature
        sig = culprit_signature(kind, culprit)
        return f"{sig}|{settings_needed(reduced)}" if reduced is not None else sig
    return raw_signature


def root_id(root: str) -> str:
    """12 hex digits, like a bucket id (`crashes` shows it)."""
    return hashlib.sha1(root.encode("utf-8", "replace")).hexdigest()[:12]
