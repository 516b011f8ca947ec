"""Root-cause signatures: what merges buckets that are one bug.

A raw bucket is named by what a failure looked like where it was seen (the op at the graph
output for a mismatch, the crash message and frames for a crash). One root cause seen through
different graphs makes several raw buckets. Triage (covfuzz/triage/pipeline.py) names each
bucket's root:
- a mismatch: by its culprit, the node where the divergence is born (harness/localize.py): the
  op, the attribute values that matter, the dtypes in and out, the special value classes in its
  inputs, the loop regime of its kernel (vectorized body, scalar tail, both), plus the compile
  settings the reduced case still needs (a 1-minimal set: what the divergence needs);
- a crash: its signature, which already names the failing check (the assert or raise that
  fired and the exception beneath wrapper messages);
- a mismatch that could not be localized: its raw signature (it is not merged with anything).
Buckets whose roots are equal are one root cause (`covfuzz crashes` lists root causes).
"""

from __future__ import annotations

import hashlib

from covfuzz.ir import CompileSettings, TestCase

DEFAULTS = CompileSettings()


def culprit_signature(kind: str, culprit: dict) -> str:
    """The part of a mismatch's root that localization gives (without settings)."""
    attrs = ",".join(f"{k}={v}" for k, v in sorted((culprit.get("attrs") or {}).items()))
    classes = "+".join(culprit.get("classes") or []) or "ordinary"
    dtypes = ",".join(culprit.get("dtypes_in") or [])
    return (f"{kind}|{culprit.get('op')}({attrs})|{dtypes}->{culprit.get('dtype_out')}"
            f"|{classes}|{culprit.get('regime')}")


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
