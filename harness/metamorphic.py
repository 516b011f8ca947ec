"""Metamorphic verdicts (issue 19): a passing case compiled again under a variant of its settings.

A case whose settings name a variant (`CompileSettings.metamorphic`, covfuzz.ir
METAMORPHIC_VARIANTS: the vectorized C++ path off, dynamic or static shapes, the C++ wrapper
flipped) runs as usual; when the oracle passes it, harness/execute.py makes the compiled calls
again under the variant (`covfuzz.ir.metamorphic_case`), on the same eager values, and hands
both runs here. The verdict (`judge`), into the case's result:

- the variant run fails on its own (a crash, or a mismatch the oracle finds against eager and
  the float64 reference): eager decides, the variant is simply wrong: the result becomes that
  failure, an ordinary one of the case under the variant's settings (details["metamorphic"]
  names the variant; triage replays the case with the variant applied);
- otherwise, output by output, the two compiled results are compared with the oracle's
  per-dtype tolerance and value classes. A disagreement counts only where eager cannot decide
  (the oracle compares eager with the variant and has no float64 reference for that output) and
  when the second compiled calls of both disagree too: outcome `metamorphic`;
- outputs that no compiled result is bound to reproduce are left out, as the oracle leaves
  them out: values downstream of a float -> int cast or a dtype reinterpretation (undefined
  behaviour), and every output of a case whose eager run is not deterministic (ops that are
  nondeterministic by contract).
"""

from __future__ import annotations

import torch

from covfuzz.ir import TestCase
from covfuzz.outcomes import is_failure
from harness import oracle


def _compare(i: int, a, b, ref: oracle._LazyRef) -> dict | None:
    """The oracle's verdict on output `i` of two runs (`a` in the place of eager)."""
    if isinstance(a, torch.Tensor):
        return oracle.compare_tensor(i, a, b, ref)
    return oracle.compare_scalar(i, a, b, ref)


def undecided_divergence(case: TestCase, own, other, tainted: set[int]) -> dict | None:
    """The first output where the case's own compiled result (`own`: its trace, eager values
    included) and the variant's (`other`) disagree, on both compiled calls, where eager cannot
    decide; None when there is none. Details: output, kind, index, default / variant / eager
    values there, max_abs_err, n_diff, dtype, shape."""
    no_ref = oracle._LazyRef(None)
    reference = oracle._LazyRef(lambda: other.program.reference()[0])
    for i, e in enumerate(own.eager):
        if i >= min(len(own.compiled), len(other.compiled), len(own.second), len(other.second)):
            break  # a different arity is the oracle's to judge (the variant run saw it)
        if case.graph.outputs[i] in tainted:
            continue
        first = _compare(i, own.compiled[i], other.compiled[i], no_ref)
        if first is None:
            continue
        judged = _compare(i, e, other.compiled[i], reference)
        if judged is None or judged.get("has_reference") is not False:
            continue  # eager decides: the variant agrees with it, or the oracle judged it
        if _compare(i, own.second[i], other.second[i], no_ref) is None:
            continue  # the disagreement did not reproduce
        return {"output": i, "kind": first.get("kind"), "index": first.get("index"),
                "default": first.get("eager"), "variant": first.get("compiled"),
                "eager": judged.get("eager"), "max_abs_err": first.get("max_abs_err"),
                "n_diff": first.get("n_diff"), "dtype": first.get("dtype"),
                "shape": first.get("shape")}
    return None


def judge(case: TestCase, own, other, run: dict, result: dict, tainted: set[int]) -> None:
    """The metamorphic verdict of passing `case` into its `result` (see the module docstring).
    `own` / `other`: the traces of the case's run and of the variant's compiled calls (which
    share the eager values); `run`: the variant run's own result (the oracle's verdict on it
    against eager); `tainted`: value ids whose values are undefined behaviour."""
    name = case.settings.metamorphic
    details = result["details"]
    if is_failure(run["outcome"]):
        result.update(outcome=run["outcome"], exc_type=run["exc_type"], frames=run["frames"],
                      message=f"{run['message']}\n(compiled under metamorphic variant {name})",
                      details={**run["details"], "metamorphic": name})
        return
    details["metamorphic"] = name
    if run["outcome"] != "pass" or other.compiled is None or other.second is None:
        details["metamorphic_note"] = f"the variant run is {run['outcome']}: {run['message']}"[:300]
        return
    if details.get("eager_deterministic") is False:
        details["metamorphic_note"] = "nondeterministic eager: the compiled results are not compared"
        return
    found = undecided_divergence(case, own, other, tainted)
    if found is None:
        return
    details.update(found)
    at = f" at {found['index']}" if found.get("index") is not None else ""
    result.update(outcome="metamorphic", message=(
        f"output {found['output']} {found['kind']} differs between compiled "
        f"({found['default']}) and compiled under metamorphic variant {name} "
        f"({found['variant']}){at}; eager gives {found['eager']}, with no float64 reference "
        "to decide"))
