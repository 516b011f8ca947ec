"""Failure signatures: how failures are deduplicated into buckets.

A crash signature is `kind | root exception type | normalized root message | source line of the
check that fired | innermost frames` (the harness's details["check"], beneath wrapper exceptions;
records without it fall back to the outer `exception type | message | frames`), where the
message has numbers, hex addresses, generated names (v12, s0, buf3, cpp_fused_...), shapes, quoted
strings and paths replaced by placeholders, and frames are `file:function` (no line numbers, so
a bucket survives small edits of torch). Mismatches have no exception: their signature is built
from the op pattern that produced the diverging output (the op and the ops feeding it). A
`metamorphic` disagreement (two compiled results, no referee) is `metamorphic|<variant>|<op of the
diverging output>`: the variant names which compiler path disagrees.
The bucket key stored in the corpus is `signature_id(signature)`: 12 hex digits.
"""

from __future__ import annotations

import hashlib
import re

from covfuzz.outcomes import FAILURE_KINDS

_RULES = [
    (re.compile(r"0x[0-9a-fA-F]+"), "ADDR"),
    (re.compile(r"(/[\w.\-]+)+/?"), "PATH"),
    (re.compile(r"\b(cpp|triton)_\w+"), "KERNEL"),
    (re.compile(r"\b(buf|arg|primals_|tangents_|getitem_?|view_?|permute_?|add_?|mul_?)\d+\b"), "NAME"),
    (re.compile(r"\b[vxsuz]\d+\b"), "SYM"),
    (re.compile(r"'[^']{0,200}'"), "'STR'"),
    (re.compile(r'"[^"]{0,200}"'), '"STR"'),
    (re.compile(r"\[[\d,\s]*\]"), "[SHAPE]"),
    (re.compile(r"\([\d,\s]*\)"), "(SHAPE)"),
    (re.compile(r"-?\d+(\.\d+)?(e[-+]?\d+)?"), "N"),
    (re.compile(r"\s+"), " "),
]


def normalize_message(message: str, limit: int = 240) -> str:
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    # The first line names the problem; dynamo appends long "from user code" tails after it.
    # Wrappers (BackendCompilerFailed "backend='inductor' raised:") name the cause on the next
    # line: keep it, or every inductor crash would land in one bucket.
    text = lines[0] if lines else ""
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    text = _normalized(text)
    # One clause per offending dim ("expected size N==N, stride N==N at dim=N; ...") repeats
    # as often as the case has dims: a reduced case must keep its bucket.
    parts = text.split("; ")
    text = "; ".join(p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1])
    return text[:limit].strip()


def _normalized(text: str) -> str:
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def torch_frames(frames: list[str], count: int = 3) -> list[str]:
    """Innermost `count` frames inside torch, as `file.py:function` relative to torch.

    The harness reports frames as `path:line:function`, outermost first, with paths either
    relative to the torch package or absolute; line numbers are dropped here.
    """
    inside = []
    for frame in reversed(frames or []):
        parts = frame.rsplit(":", 2)
        path = parts[0]
        func = parts[-1] if len(parts) == 3 else ""
        if "/torch/" in path:
            path = path.split("/torch/", 1)[1]
        elif path.startswith("/") or path.startswith("<"):
            continue  # outside torch
        inside.append(f"{path}:{func}")
        if len(inside) == count:
            break
    return inside


def mismatch_pattern(case, output_index: int | None) -> str:
    """The op that produced the diverging output, with the ops of its arguments."""
    if case is None or output_index is None or output_index >= len(case.graph.outputs):
        return "?"
    graph = case.graph
    value = graph.outputs[output_index]
    node = graph.node_of(value)
    if node is None:
        return "input"
    feeding = sorted({(graph.node_of(a).op if graph.node_of(a) else "input") for a in node.args})
    return f"{node.op}<-{'+'.join(feeding)}"


def output_op(case, output_index: int | None) -> str:
    """The op that produced graph output `output_index` ("input" for a graph input, "?" when
    unknown)."""
    if case is None or output_index is None or not 0 <= output_index < len(case.graph.outputs):
        return "?"
    node = case.graph.node_of(case.graph.outputs[output_index])
    return "input" if node is None else node.op


def metamorphic_signature(case, output_index: int | None) -> str:
    """`metamorphic|<variant>|<op>`: the variant the case's settings name and the op of the
    output on which the two compiled results disagree."""
    variant = getattr(getattr(case, "settings", None), "metamorphic", None) or "?"
    return f"metamorphic|{variant}|{output_op(case, output_index)}"


CHECK_KEYS = ("where", "source", "root_type", "root_message")
MAX_CHECK_FIELD = 500


def check_of(result) -> dict:
    """The failing check of a crash result (harness details["check"]: where, source, root_type,
    root_message), read defensively: stored records are untrusted and older ones lack it.
    Only str values are kept, each bounded; {} when there is none."""
    details = _get(result, "details")
    check = details.get("check") if isinstance(details, dict) else None
    if not isinstance(check, dict):
        return {}
    return {k: check[k][:MAX_CHECK_FIELD] for k in CHECK_KEYS if isinstance(check.get(k), str)}


def normalize_source(line: str, limit: int = 160) -> str:
    """A source line as a signature part: whitespace collapsed, bounded (code text is stable
    across runs, so names and numbers in it are kept)."""
    return " ".join((line or "").split())[:limit]


def crash_signature(kind: str, exc_type: str, message: str, frames: list[str] | None,
                    check: dict | None) -> str:
    """`kind | root type | normalized root message | check source line | innermost frames`:
    the check that fired, beneath wrapper exceptions (BackendCompilerFailed's
    "Set TORCHDYNAMO_VERBOSE=1" text would merge every inductor assertion into one bucket).
    Without a recorded check (older records) the outer type and message stand in."""
    check = check or {}
    inner = torch_frames(frames or [])
    if not check.get("root_type"):
        return f"{kind}|{exc_type}|{normalize_message(message)}|{','.join(inner)}"
    top = torch_frames([check["where"]], 1) if check.get("where") else []
    if top and top[0] not in inner:  # the raising frame is outside torch (a backend, sympy)
        inner = top + inner[:2]
    source = normalize_source(check.get("source", ""))
    if check.get("where") and not top:  # generated code (Inductor's output): shapes in it vary
        source = _normalized(source)
    return (f"{kind}|{check['root_type']}|{normalize_message(check.get('root_message', ''))}|"
            f"{source}|{','.join(inner)}")


def signature(kind: str, exc_type: str = "", message: str = "", frames: list[str] | None = None,
              case=None, output_index: int | None = None, check: dict | None = None) -> str:
    if kind in ("mismatch", "grad_mismatch"):
        return f"{kind}|{mismatch_pattern(case, output_index)}"
    if kind == "metamorphic":
        return metamorphic_signature(case, output_index)
    if kind in ("timeout", "oom"):
        return kind
    if kind == "process_crash":
        return f"{kind}|{normalize_message(message, 80)}"
    return crash_signature(kind, exc_type, message, frames, check)


def signature_id(sig: str) -> str:
    return hashlib.sha1(sig.encode("utf-8", "replace")).hexdigest()[:12]


def _get(result, key, default=None):
    if isinstance(result, dict):
        return result.get(key, default)
    return getattr(result, key, default)


def output_index(result) -> int | None:
    """The diverging output of a mismatch result (harness details key `output`; older
    records may carry `output_index`)."""
    details = _get(result, "details") or {}
    for key in ("output", "output_index"):
        value = details.get(key) if isinstance(details, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def signature_of(case, result) -> tuple[str, str]:
    """(signature, signature_id) of a failing run: `result` is a harness RunResult or its
    `to_dict()` form, `case` the test case that produced it (used for mismatch patterns).
    This is what campaigns record buckets under."""
    sig = signature(_get(result, "outcome") or "", _get(result, "exc_type") or "",
                    _get(result, "message") or "", _get(result, "frames") or [], case,
                    output_index(result), check_of(result))
    return sig, signature_id(sig)


def is_failure(result) -> bool:
    return (_get(result, "outcome") or "") in FAILURE_KINDS
