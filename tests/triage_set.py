"""A labelled triage set: hand-written failing cases for torch 2.13.0 (CPU), grouped by root cause,
plus near-misses that look like failures but are not compiler bugs (issue 16, point 8).

Every root cause is reached through at least three graphs that differ in the ops around the
culprit, dtypes and shapes, so a triage pipeline that buckets by the graph *output* splits it,
and one that buckets by the culprit does not. Near-misses (`cause is None`) carry the non-bug class
the pipeline should label them with in `kind`.

Inputs are drawn from each case's seed by its fill (covfuzz/materialize.py); the seeds and fills
were chosen so that the values that trigger each divergence (a NaN, a negative dividend, ...)
are present. Value ids: graph input i is value i, node j is value len(inputs) + j.

This module is data only: it builds cases, it runs nothing (tests/test_triage_set_cases.py runs
them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from covfuzz.ir import CompileSettings, Graph, Input, Node, ScalarSpec, TensorSpec, TestCase
from covfuzz.propagate import propagate


@dataclass(frozen=True)
class LabelledCase:
    name: str
    cause: str | None  # short id of the root cause; None for a near-miss (not a bug)
    kind: str          # expected outcome for a bug; the non-bug class for a near-miss
    build: Callable[[], TestCase]
    note: str          # why it fails / what it shows


def _t(shape, dtype="float32", fill="normal", param=False, grad=False) -> Input:
    return Input(TensorSpec.contiguous(shape, dtype, requires_grad=grad), fill=fill, param=param)


def _scalar(value: float) -> Input:
    return Input(ScalarSpec("float"), value=value)


def _case(inputs, nodes, outputs, seed, settings=None) -> TestCase:
    graph = Graph(tuple(inputs), tuple(nodes), tuple(outputs))
    return propagate(TestCase(graph, settings or CompileSettings(), seed=seed))


FREEZING = CompileSettings(inductor_config={"freezing": True})


# ----------------------------------------------------------------------------- softshrink_nan
# Inductor's softshrink lowering, `where(|x| > lambd, x - sign(x)*lambd, 0)`, sends NaN to the
# `0` branch (NaN > lambd is false); eager (and the ATen kernel) propagate NaN.

def softshrink_after_acosh() -> TestCase:
    # acosh of normal draws below 1 is NaN.
    return _case([_t((4, 8))],
                 [Node("torch.acosh", (0,)), Node("F.softshrink", (1,), {"lambd": 0.5})],
                 (2,), seed=1)


def softshrink_after_log_then_mul() -> TestCase:
    # log of a negative is NaN; a downstream mul keeps NaN in eager, 0 * y in compiled.
    return _case([_t((3, 5), "float64"), _t((3, 5), "float64", "positive")],
                 [Node("torch.log", (0,)), Node("F.softshrink", (2,), {"lambd": 1.0}),
                  Node("torch.mul", (3, 1))],
                 (4,), seed=2)


def softshrink_on_edge_values_after_expm1_then_tanh() -> TestCase:
    # An "edge" fill holds NaN directly (expm1 keeps it); tanh after keeps it in eager only.
    return _case([_t((8, 16), "float32", "edge")],
                 [Node("torch.expm1", (0,)), Node("F.softshrink", (1,), {"lambd": 1.0}),
                  Node("torch.tanh", (2,))],
                 (3,), seed=3)


def softshrink_after_atanh_bf16() -> TestCase:
    # atanh beyond [-1, 1] is NaN, in bfloat16 this time.
    return _case([_t((17,), "bfloat16")],
                 [Node("torch.atanh", (0,)), Node("F.softshrink", (1,), {"lambd": 0.5}),
                  Node("torch.neg", (2,))],
                 (3,), seed=4)


# ----------------------------------------------------------------------------- addmm_alpha
# A post-grad pattern fuses `mm(a, b)` and a following `add(..., alpha=k)` into addmm and drops
# `alpha`: the compiled result is `mm + c` instead of `mm + k*c` (or `c + mm` instead of
# `c + k*mm`).

def addmm_alpha_mm_plus_matrix() -> TestCase:
    return _case([_t((4, 5)), _t((5, 6)), _t((4, 6))],
                 [Node("torch.mm", (0, 1)), Node("torch.add", (3, 2), {"alpha": 3})],
                 (4,), seed=5)


def addmm_alpha_bias_plus_mm_f64_relu() -> TestCase:
    return _case([_t((3, 8), "float64"), _t((8, 5), "float64"), _t((5,), "float64")],
                 [Node("torch.mm", (0, 1)), Node("torch.add", (2, 3), {"alpha": 2}),
                  Node("F.relu", (4,))],
                 (5,), seed=6)


def addmm_alpha_after_sin_then_sum() -> TestCase:
    return _case([_t((6, 4)), _t((4, 7)), _t((7,))],
                 [Node("torch.sin", (0,)), Node("torch.mm", (3, 1)),
                  Node("torch.add", (4, 2), {"alpha": -2}),
                  Node("torch.sum", (5,), {"dim": (0,), "keepdim": True})],
                 (6,), seed=7)


# ----------------------------------------------------------------------------- frozen_0d_floordiv
# With inductor freezing, a 0-d integer parameter is folded into a constant and floor_divide by
# it is generated as C++ integer division, which truncates toward zero: -7 // 2 gives -3, not -4.

def floordiv_frozen_0d_i64() -> TestCase:
    return _case([_t((8,), "int64"), _t((), "int64", "nonzero", param=True)],
                 [Node("torch.floor_divide", (0, 1))],
                 (2,), seed=8, settings=FREEZING)


def floordiv_frozen_0d_after_sub_i32() -> TestCase:
    return _case([_t((3, 4), "int32"), _t((3, 4), "int32"), _t((), "int32", "nonzero", param=True)],
                 [Node("torch.sub", (0, 1), {"alpha": 1}), Node("torch.floor_divide", (3, 2))],
                 (4,), seed=9, settings=FREEZING)


def floordiv_frozen_0d_then_mul_i16() -> TestCase:
    return _case([_t((5, 3), "int16"), _t((), "int16", "nonzero", param=True), _t((5, 3), "int16")],
                 [Node("torch.floor_divide", (0, 1)), Node("torch.mul", (3, 2))],
                 (4,), seed=10, settings=FREEZING)


# ----------------------------------------------------------------------------- cpp_vec_atomic_add
# An accumulating scatter (index_add, index_put with accumulate=True) into a tensor whose last dim
# has size 1: the C++ vectorized kernel stores with a scalar index and fails
# `assert isinstance(index, CppCSEVariable) and index.is_vec` (torch/_inductor/codegen/cpp.py).

def index_add_size1_last_dim() -> TestCase:
    """Reduced from a no-feedback campaign (bucket ff98b22541e5), as in test_repro_real_bug."""
    return _case([_t((4, 4, 1)), _t((6,), "int64", "index"), _t((4, 4, 6))],
                 [Node("torch.index_add", (0, 1, 2), {"dim": -1})],
                 (3,), seed=565)


# Pinned to 256-bit vectors: this float64 case crashes where Inductor vectorizes with AVX2
# (4 doubles) and compiles cleanly under AVX-512, which Inductor picks on hosts that have it
# (seen on an AMD EPYC with AVX-512): the label must not depend on the machine.
AVX2_WIDTH = CompileSettings(inductor_config={"cpp.simdlen": 256})


def index_add_size1_f64_after_mul_then_exp() -> TestCase:
    return _case([_t((8, 1), "float64"), _t((8, 1), "float64"), _t((3,), "int64", "index"),
                  _t((8, 3), "float64")],
                 [Node("torch.mul", (0, 1)), Node("torch.index_add", (4, 2, 3), {"dim": -1}),
                  Node("torch.exp", (5,))],
                 (6,), seed=11, settings=AVX2_WIDTH)


def index_add_size1_int32_then_sum() -> TestCase:
    return _case([_t((3, 1), "int32"), _t((5,), "int64", "index"), _t((3, 5), "int32")],
                 [Node("torch.index_add", (0, 1, 2), {"dim": 1}),
                  Node("torch.sum", (3,), {"dim": (0,), "keepdim": False})],
                 (4,), seed=12)


def index_put_accumulate_one_element_then_relu() -> TestCase:
    return _case([_t((1,)), _t((6,), "int64", "index"), _t((6,)), _t((1,))],
                 [Node("Tensor.index_put", (0, 1, 2), {"accumulate": True}),
                  Node("torch.add", (4, 3), {"alpha": 1}), Node("F.relu", (5,))],
                 (6,), seed=13)


# ----------------------------------------------------------------------------- near-misses
# Divergences that are not compiler bugs (design brief section 6, issue 16 point 7).

def near_sum_at_flt_max() -> TestCase:
    # Normals scaled by 1e38: partial sums pass FLT_MAX in one summation order and not in the
    # other. sum|x| itself overflows float32, so the reduction's error bound is unbounded.
    return _case([_t((4, 64)), _scalar(1e38)],
                 [Node("torch.mul", (0, 1)),
                  Node("torch.sum", (2,), {"dim": (1,), "keepdim": False})],
                 (3,), seed=8)


def near_welford_mean_of_neg_inf() -> TestCase:
    # var_mean's mean of a row (-1e4, -inf, -1.5): eager's Welford update turns -inf followed
    # by a finite value into -inf + inf = NaN; compiled (sum / n) gives the exact -inf. The
    # float64 reference runs eager's Welford too and shares its NaN.
    return _case([_t((32, 3), "float32", "edge")],
                 [Node("torch.var_mean", (0,), {"dim": (1,), "keepdim": False, "correction": 1})],
                 (1,), seed=1)


def near_bf16_intermediate_flips_gt() -> TestCase:
    # x*y + z in bfloat16: eager rounds x*y to bf16, Inductor keeps it in float32, so the
    # comparison with z flips where the rounding decides it. Agrees with
    # emulate_precision_casts=True.
    return _case([_t((8, 8), "bfloat16"), _t((8, 8), "bfloat16"), _t((8, 8), "bfloat16")],
                 [Node("torch.mul", (0, 1)), Node("torch.add", (3, 2), {"alpha": 1}),
                  Node("torch.gt", (4, 2))],
                 (5,), seed=6)


def near_signbit_of_nan() -> TestCase:
    # sqrt of a negative is NaN in both; its sign bit differs (the x86 default NaN is negative),
    # and signbit exposes it as an exact bool.
    return _case([_t((4, 8))], [Node("torch.sqrt", (0,)), Node("torch.signbit", (1,))],
                 (2,), seed=1)


def near_out_of_range_cast_to_int8() -> TestCase:
    # Normals times 1000 cast to int8: out of range, undefined behaviour in C.
    return _case([_t((64,)), _scalar(1000.0)],
                 [Node("torch.mul", (0, 1)), Node("Tensor.to", (2,), {"dtype": "int8"})],
                 (3,), seed=2)


def near_tan_of_sum_near_pole() -> TestCase:
    # Row sums of 100 uniforms differ by an ulp between eager's and Inductor's summation order;
    # a sum near a pole of tan (k*pi + pi/2) amplifies that by its condition number.
    return _case([_t((16, 100), "float32", "uniform")],
                 [Node("torch.sum", (0,), {"dim": (1,), "keepdim": False}),
                  Node("torch.tan", (1,))],
                 (2,), seed=48)


def near_scatter_duplicate_indices() -> TestCase:
    # scatter without reduction and with duplicate indices: which write wins is unspecified
    # (nondeterministic by contract). Eager and compiled happen to agree on this CPU today.
    return _case([_t((64, 4)), _t((64, 64), "int64", "index"), _t((64, 64))],
                 [Node("torch.scatter", (0, 1, 2), {"dim": 1})],
                 (3,), seed=1)


CASES: list[LabelledCase] = [
    LabelledCase("softshrink_after_acosh", "softshrink_nan", "mismatch", softshrink_after_acosh,
                 "acosh(x<1) is NaN; compiled softshrink turns it into 0"),
    LabelledCase("softshrink_after_log_then_mul", "softshrink_nan", "mismatch",
                 softshrink_after_log_then_mul, "log of a negative, float64, mul downstream"),
    LabelledCase("softshrink_on_edge_values_after_expm1_then_tanh", "softshrink_nan", "mismatch",
                 softshrink_on_edge_values_after_expm1_then_tanh,
                 "NaN straight from an edge input through expm1, tanh after"),
    LabelledCase("softshrink_after_atanh_bf16", "softshrink_nan", "mismatch",
                 softshrink_after_atanh_bf16, "atanh(|x|>1) in bfloat16, neg downstream"),
    LabelledCase("addmm_alpha_mm_plus_matrix", "addmm_alpha", "mismatch",
                 addmm_alpha_mm_plus_matrix, "add(mm, c, alpha=3) computed as mm + c"),
    LabelledCase("addmm_alpha_bias_plus_mm_f64_relu", "addmm_alpha", "mismatch",
                 addmm_alpha_bias_plus_mm_f64_relu, "add(bias, mm, alpha=2), float64, relu after"),
    LabelledCase("addmm_alpha_after_sin_then_sum", "addmm_alpha", "mismatch",
                 addmm_alpha_after_sin_then_sum, "sin before the mm, negative alpha, sum after"),
    LabelledCase("floordiv_frozen_0d_i64", "frozen_0d_floordiv", "mismatch",
                 floordiv_frozen_0d_i64, "x // w with w a frozen 0-d int64 parameter truncates"),
    LabelledCase("floordiv_frozen_0d_after_sub_i32", "frozen_0d_floordiv", "mismatch",
                 floordiv_frozen_0d_after_sub_i32, "int32, a sub feeding the dividend"),
    LabelledCase("floordiv_frozen_0d_then_mul_i16", "frozen_0d_floordiv", "mismatch",
                 floordiv_frozen_0d_then_mul_i16, "int16, a mul after the division"),
    LabelledCase("index_add_size1_last_dim", "cpp_vec_atomic_add", "compile_crash",
                 index_add_size1_last_dim, "index_add into a size-1 last dim (4x4x1)"),
    LabelledCase("index_add_size1_f64_after_mul_then_exp", "cpp_vec_atomic_add", "compile_crash",
                 index_add_size1_f64_after_mul_then_exp, "float64 8x1, mul before, exp after"),
    LabelledCase("index_add_size1_int32_then_sum", "cpp_vec_atomic_add", "compile_crash",
                 index_add_size1_int32_then_sum, "int32 3x1 (dim=1), sum after"),
    LabelledCase("index_put_accumulate_one_element_then_relu", "cpp_vec_atomic_add",
                 "compile_crash", index_put_accumulate_one_element_then_relu,
                 "index_put(accumulate=True) into a 1-element tensor, add and relu after"),
    # near-misses: not bugs
    LabelledCase("near_sum_at_flt_max", None, "reduction_error_bound", near_sum_at_flt_max,
                 "float32 sum near FLT_MAX: the order decides whether a partial sum overflows"),
    LabelledCase("near_welford_mean_of_neg_inf", None, "compiled_closer",
                 near_welford_mean_of_neg_inf,
                 "eager Welford mean over -inf and finite values is NaN, compiled gives -inf"),
    LabelledCase("near_bf16_intermediate_flips_gt", None, "low_precision_intermediate",
                 near_bf16_intermediate_flips_gt, "bf16 product kept in float32 flips a gt"),
    LabelledCase("near_signbit_of_nan", None, "nan_sign", near_signbit_of_nan,
                 "signbit of the NaN from sqrt(negative) differs"),
    LabelledCase("near_out_of_range_cast_to_int8", None, "float_to_int_cast",
                 near_out_of_range_cast_to_int8, "out-of-range float -> int8 cast"),
    LabelledCase("near_tan_of_sum_near_pole", None, "ill_conditioned", near_tan_of_sum_near_pole,
                 "ulp differences of a row sum amplified by tan near its pole"),
    LabelledCase("near_scatter_duplicate_indices", None, "nondeterministic",
                 near_scatter_duplicate_indices,
                 "scatter with duplicate indices and no reduction (passes today)"),
]
