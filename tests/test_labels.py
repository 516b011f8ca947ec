"""Non-bug labels at a culprit node (harness/labels.py): each label on a real-tensor case that
shows its situation, and a near-miss (a bug-like divergence) that must not be labelled."""

from __future__ import annotations

import math

import pytest
import torch

from covfuzz.ops import get_op
from harness import labels
from harness.labels import CulpritContext, label

F32_MAX = torch.finfo(torch.float32).max


def run_op(op: str, attrs: dict, args: list):
    """The catalog op, run eagerly: its template rendered with the test's literal attrs."""
    names = [f"a{i}" for i in range(len(args))]
    expr = get_op(op).render(names, attrs)
    return eval(expr, {"torch": torch}, dict(zip(names, args)))  # noqa: S307 (test literals)


def ctx(op, args, compiled, attrs=None, eager=None, rerun=None, evaluate=None, **kw):
    attrs = attrs or {}
    evaluate = evaluate or (lambda a: run_op(op, attrs, a))
    eager = evaluate(args) if eager is None else eager
    return CulpritContext(op=op, attrs=attrs, args=args, eager=eager, compiled=compiled,
                          reference=None, evaluate=evaluate, rerun=rerun, **kw)


def f32(*v):
    return torch.tensor(v, dtype=torch.float32)


def next_up(x: float) -> float:
    return torch.nextafter(f32(x), f32(math.inf)).item()


def test_label_table_matches_order():
    assert [name for name, _ in labels.ORDER] == list(labels.LABELS)
    assert all(labels.LABELS.values())


# ----------------------------------------------------------------------------- nan_sign


def test_nan_sign_only():
    x, y = f32(math.nan, 1.0, 2.0), f32(1.0, 2.0, 3.0)
    eager = torch.add(x, y)
    compiled = torch.where(eager.isnan(), -eager, eager)  # x86 neg flips the NaN sign bit
    assert not torch.equal(eager.signbit(), compiled.signbit())
    c = ctx("torch.add", [x, y], compiled, {"alpha": 1}, eager=eager)
    assert label(c)[0] == "nan_sign"


def test_nan_sign_read_by_signbit():
    x = f32(math.nan, -1.0)
    compiled = torch.tensor([not torch.signbit(x)[0].item(), True])
    c = ctx("torch.signbit", [x], compiled)
    assert label(c)[0] == "nan_sign"


def test_nan_sign_near_miss_dropped_nan():
    x, y = f32(math.nan, 1.0, 2.0), f32(1.0, 2.0, 3.0)
    eager = torch.add(x, y)
    c = ctx("torch.add", [x, y], torch.nan_to_num(eager), {"alpha": 1}, eager=eager)
    assert labels.nan_sign(c) is None
    assert label(c) is None


def test_nan_sign_near_miss_signbit_of_number():
    x = f32(2.0, -1.0)
    c = ctx("torch.signbit", [x], torch.tensor([True, True]))
    assert label(c) is None


# ----------------------------------------------------------------------------- float_to_int_cast


def test_out_of_range_cast():
    x = f32(3e9, -1.5, math.nan, 2.0, -math.inf)
    saturated = torch.tensor([2**31 - 1, -1, 0, 2, -2**31], dtype=torch.int32)
    c = ctx("Tensor.to", [x], saturated, {"dtype": "int32"})
    assert not torch.equal(c.eager, saturated)  # eager converts differently (wraps/UB)
    name, reason = label(c)
    assert name == "float_to_int_cast" and "int32" in reason


def test_out_of_range_cast_by_a_conversion_method():
    """x.short() is x.to(torch.int16): the same undefined behaviour out of range (a campaign
    reported Tensor.short of 1e10-sized floats: eager 25728, compiled 25856)."""
    x = f32(1.2e10, 7e4, 2.0)
    compiled = torch.tensor([25856, -32768, 2], dtype=torch.int16)
    c = ctx("Tensor.short", [x], compiled)
    assert not torch.equal(c.eager, compiled)
    name, reason = label(c)
    assert name == "float_to_int_cast" and "int16" in reason


def test_outputs_downstream_of_a_conversion_method_are_not_judged_as_mismatches():
    from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
    from covfuzz.propagate import propagate
    from harness.execute import _f2i_cast_values
    x = TensorSpec.contiguous((4,), dtype="float32")
    for method in ("Tensor.short", "Tensor.int", "Tensor.long", "Tensor.byte", "Tensor.char"):
        graph = Graph((Input(x),), (Node("torch.exp", (0,), {}), Node(method, (1,), {}),
                                    Node("torch.neg", (2,), {})), (3,))
        case = propagate(TestCase(graph, CompileSettings(), seed=0))
        assert _f2i_cast_values(case) == {2, 3}, method
    plain = Graph((Input(x),), (Node("torch.exp", (0,), {}), Node("Tensor.bool", (1,), {})), (2,))
    assert _f2i_cast_values(propagate(TestCase(plain, CompileSettings(), seed=0))) == set()


def test_cast_near_miss_in_range():
    x = f32(3.7, 2.0)
    c = ctx("Tensor.to", [x], torch.tensor([4, 2], dtype=torch.int32), {"dtype": "int32"})
    assert labels.float_to_int_cast(c) is None
    assert label(c) is None
    to_half = ctx("Tensor.to", [f32(2.0, 1.0)], torch.tensor([3.0, 1.0], dtype=torch.float16),
                  {"dtype": "float16"})  # a float -> float cast that changed a value
    assert label(to_half) is None


# ----------------------------------------------------------------------------- denormal_flush


def test_denormal_input_flushed():
    x = f32(1e-39, 2.0)  # 1e-39 is subnormal in float32
    compiled = torch.log(torch.where(x.abs() < torch.finfo(torch.float32).tiny, 0 * x, x))
    c = ctx("torch.log", [x], compiled)
    assert c.eager[0].isfinite() and compiled[0] == -math.inf
    assert label(c)[0] == "denormal_flush"


def test_denormal_output_flushed():
    x = f32(1e-20, 3.0)
    eager = torch.mul(x, x)  # 1e-40: subnormal
    compiled = eager.clone()
    compiled[0] = 0.0
    c = ctx("torch.mul", [x, x], compiled, eager=eager)
    assert label(c)[0] == "denormal_flush"


def test_denormal_near_miss_normal_input():
    x = f32(1e-30, 2.0)  # normal float32
    compiled = torch.log(x)
    compiled[0] = -math.inf
    c = ctx("torch.log", [x], compiled)
    assert labels.denormal_flush(c) is None
    assert label(c) is None


def test_signed_zero_is_not_a_denormal():
    x, y = f32(0.0, 2.0), f32(-1.0, 1.0)
    eager = torch.mul(x, y)  # -0.0
    compiled = eager.abs()  # +0.0: a sign question, not a flush
    assert labels.denormal_flush(ctx("torch.mul", [x, y], compiled, eager=eager)) is None


# ----------------------------------------------------------------------------- nondeterministic


def test_scatter_duplicate_indices():
    x, index, src = torch.zeros(4), torch.tensor([0, 0, 1]), f32(1.0, 2.0, 3.0)
    c0 = ctx("torch.scatter", [x, index, src], None, {"dim": 0})
    compiled = c0.eager.clone()
    compiled[0] = 1.0 if compiled[0] != 1.0 else 2.0  # the other duplicate won
    c = ctx("torch.scatter", [x, index, src], compiled, {"dim": 0})
    assert label(c)[0] == "nondeterministic"


def test_scatter_near_miss_single_write():
    x, index, src = torch.zeros(4), torch.tensor([0, 0, 1]), f32(1.0, 2.0, 3.0)
    c0 = ctx("torch.scatter", [x, index, src], None, {"dim": 0})
    compiled = c0.eager.clone()
    compiled[1] = 7.0  # written once, by src 3.0
    c = ctx("torch.scatter", [x, index, src], compiled, {"dim": 0})
    assert labels.nondeterministic(c) is None
    assert label(c) is None


def test_two_eager_runs_differ():
    torch.manual_seed(0)
    x = torch.ones(64)

    def dropout_train(a):  # dropout in training mode: random by contract
        return torch.nn.functional.dropout(a[0], p=0.5, training=True)
    compiled = dropout_train([x])
    c = ctx("F.dropout", [x], compiled, {"p": 0.5}, evaluate=dropout_train)
    assert label(c)[0] == "nondeterministic"


def test_deterministic_near_miss():
    x = torch.ones(64)
    c = ctx("F.dropout", [x], x * 2.0, {"p": 0.5})  # eval-mode dropout: identity
    assert labels.nondeterministic(c) is None
    assert label(c) is None


# ----------------------------------------------------------------------------- rounding_flip


def test_comparison_flip_at_tie():
    a, b = f32(1.0, 1.0, 5.0), f32(next_up(1.0), 2.0, 3.0)
    c0 = ctx("torch.lt", [a, b], None)
    compiled = c0.eager.clone()
    compiled[0] = ~compiled[0]
    c = ctx("torch.lt", [a, b], compiled)
    assert label(c)[0] == "rounding_flip"


def test_comparison_near_miss():
    a, b = f32(1.0, 1.0, 5.0), f32(next_up(1.0), 2.0, 3.0)
    c0 = ctx("torch.lt", [a, b], None)
    compiled = c0.eager.clone()
    compiled[1] = ~compiled[1]  # 1 < 2 flipped: no noise explains that
    c = ctx("torch.lt", [a, b], compiled)
    assert labels.rounding_flip(c) is None
    assert label(c) is None


def test_comparison_strong_form_uses_compiled_args():
    a, b = f32(1.0, 3.0), f32(1.0, 2.0)
    compiled = torch.tensor([True, False])  # compiled saw a slightly smaller a[0]
    good = ctx("torch.lt", [a, b], compiled, compiled_args=[f32(1.0 - 6e-8, 3.0), b])
    bad = ctx("torch.lt", [a, b], compiled, compiled_args=[a, b])  # same inputs, other answer
    assert label(good)[0] == "rounding_flip"
    assert label(bad) is None


def test_hash_of_bits_that_differ_by_an_ulp():
    # Campaign bucket 90b633d10703: gelu compiled is 1 ulp from eager, and torch.hash_tensor
    # hashes the bits, so the hashes differ although nothing is wrong.
    eager_in, compiled_in = f32(-0.07547323405742645, 0.0), f32(-0.07547322660684586, 0.0)
    attrs = {"dim": -1, "keepdim": False}
    compiled = run_op("torch.hash_tensor", attrs, [compiled_in])
    good = ctx("torch.hash_tensor", [eager_in], compiled, attrs, compiled_args=[compiled_in])
    assert not torch.equal(good.eager, compiled)
    assert label(good)[0] == "rounding_flip"
    # Near-misses: no compiled inputs to show it; compiled inputs that do not give the compiled
    # hash; compiled inputs far outside rounding noise.
    assert label(ctx("torch.hash_tensor", [eager_in], compiled, attrs)) is None
    assert label(ctx("torch.hash_tensor", [eager_in], compiled, attrs,
                     compiled_args=[eager_in])) is None
    far = f32(-0.5, 0.0)
    assert label(ctx("torch.hash_tensor", [eager_in], run_op("torch.hash_tensor", attrs, [far]),
                     attrs, compiled_args=[far])) is None


def test_argmax_tie():
    x = f32(1.0, next_up(1.0), 0.5).reshape(1, 3)
    attrs = {"dim": 1, "keepdim": False}
    c = ctx("torch.argmax", [x], torch.tensor([0]), attrs)
    assert c.eager.item() == 1
    assert label(c)[0] == "rounding_flip"
    near_miss = ctx("torch.argmax", [x], torch.tensor([2]), attrs)
    assert label(near_miss) is None


def test_ceil_flip_and_near_miss():
    x = f32(next_up(2.0), 2.5)
    compiled = f32(2.0, 3.0)  # ceil of a value noise could have put exactly at 2
    c = ctx("torch.ceil", [x], compiled)
    assert c.eager[0] == 3.0
    assert label(c)[0] == "rounding_flip"
    miss = ctx("torch.ceil", [x], f32(3.0, 2.0))  # ceil(2.5) = 2: not noise
    assert label(miss) is None


# ----------------------------------------------------------------------------- reduction bound


def _sequential_sum(values: list[float]) -> torch.Tensor:
    acc = torch.zeros((), dtype=torch.float32)
    for v in values:
        acc = acc + torch.tensor(v, dtype=torch.float32)
    return acc


def test_sum_cancellation_within_bound():
    x = f32(1e8, 1.0, -1e8)
    attrs = {"dim": (0,), "keepdim": False}
    eager = run_op("torch.sum", attrs, [x])
    compiled = _sequential_sum([1e8, -1e8, 1.0])  # another summation order
    assert abs(compiled.item() - eager.item()) >= 1.0
    c = ctx("torch.sum", [x], compiled, attrs)
    assert label(c)[0] == "reduction_error_bound"


def test_sum_overflow_decided_by_order():
    vals = [F32_MAX, F32_MAX, -F32_MAX, -F32_MAX]
    x = f32(*vals)
    attrs = {"dim": (0,), "keepdim": False}
    eager = run_op("torch.sum", attrs, [x])
    other = _sequential_sum([F32_MAX, -F32_MAX, F32_MAX, -F32_MAX])
    inf = _sequential_sum(vals)
    compiled = other if eager.isinf() else inf
    assert eager.isinf() != compiled.isinf()
    name, reason = label(ctx("torch.sum", [x], compiled, attrs))
    assert name == "reduction_error_bound" and "overflow" in reason


def test_mm_cancellation_within_bound():
    a = f32(1e8, 1.0, -1e8).reshape(1, 3)
    b = torch.ones(3, 1)
    eager = torch.mm(a, b)
    compiled = _sequential_sum([1e8, -1e8, 1.0]).reshape(1, 1)
    if torch.equal(eager, compiled):
        compiled = _sequential_sum([1e8, 1.0, -1e8]).reshape(1, 1)
    assert not torch.equal(eager, compiled)
    assert label(ctx("torch.mm", [a, b], compiled))[0] == "reduction_error_bound"


@pytest.mark.parametrize("op,attrs,shapes", [
    ("torch.sum", {"dim": (0,), "keepdim": False}, [(16, 3)]),
    ("torch.mean", {"dim": (1,), "keepdim": True}, [(4, 16)]),
    ("torch.mm", {}, [(4, 16), (16, 3)]),
    ("torch.var", {"dim": (0,), "keepdim": False, "correction": 1}, [(16, 3)]),
    ("torch.linalg.vector_norm", {"ord": 2, "dim": (0,), "keepdim": False}, [(16,)]),
    ("torch.logsumexp", {"dim": (0,), "keepdim": False}, [(16,)]),
    ("torch.exp", {}, [(8,)]),
    ("torch.add", {"alpha": 1}, [(8,), (8,)]),
])
def test_ordinary_values_plus_one_is_never_labelled(op, attrs, shapes):
    gen = torch.Generator().manual_seed(1)
    args = [torch.randn(s, generator=gen) for s in shapes]
    eager = run_op(op, attrs, args)
    c = ctx(op, args, eager + 1.0, attrs, eager=eager)
    assert label(c) is None


def test_reduction_near_miss_nan():
    x = torch.randn(8, generator=torch.Generator().manual_seed(2))
    attrs = {"dim": (0,), "keepdim": False}
    c = ctx("torch.sum", [x], torch.tensor(math.nan), attrs)
    assert label(c) is None


# ----------------------------------------------------------------------------- compiled_closer


def test_welford_mean_nan_compiled_exact():
    x = f32(-math.inf, F32_MAX)
    attrs = {"dim": (0,), "keepdim": False, "correction": 1}
    c = ctx("torch.var_mean", [x], torch.tensor(-math.inf), attrs)
    assert c.eager.isnan()  # eager's Welford mean: NaN; its float64 run shares it
    assert run_op("torch.var_mean", attrs, [x.double()]).isnan()
    name, reason = label(c)
    assert name == "compiled_closer" and "numpy" in reason


def test_compiled_closer_near_misses():
    x = f32(-1.0, 2.0)
    dropped = torch.log(x)
    dropped[0] = 0.0  # compiled drops the NaN that eager and numpy both have
    assert label(ctx("torch.log", [x], dropped)) is None
    worse = ctx("torch.log", [f32(0.5, 2.0)], torch.log(f32(0.5, 2.0)) * 1.5)
    assert labels.compiled_closer(worse) is None


# ----------------------------------------------------------------------------- eager_not_ieee


def test_eager_not_ieee_on_signed_zero():
    y, x = f32(-0.0, 1.0), f32(-1.0, 1.0)
    ieee = torch.atan2(y, x)  # C99: atan2(-0, -1) = -pi
    broken_eager = ieee.clone()
    broken_eager[0] = math.pi  # an eager kernel that loses the sign of zero
    c = ctx("torch.atan2", [y, x], ieee, eager=broken_eager)
    name, reason = label(c)
    assert name == "eager_not_ieee" and "C99" in reason


def test_eager_not_ieee_near_misses():
    y, x = f32(-0.0, 1.0), f32(-1.0, 1.0)
    ieee = torch.atan2(y, x)
    nan = ieee.clone()
    nan[0] = math.nan  # compiled departs from both eager and C99
    assert label(ctx("torch.atan2", [y, x], nan, eager=ieee)) is None
    y2 = f32(0.5, 1.0)  # no special value: not this label even if compiled were exact
    e2 = torch.atan2(y2, x) + 1.0
    assert labels.eager_not_ieee(ctx("torch.atan2", [y2, x], torch.atan2(y2, x), eager=e2)) is None


# ----------------------------------------------------------------------------- ill_conditioned


def test_input_noise_within_tolerance_amplified_shown_by_compiled_inputs():
    # As campaign buckets of cos after a special polynomial: the compiled program's input to
    # cos is 5e-5 (relative) from eager's, within float32's tolerance but far beyond the few ulps
    # the condition-number bound allows; eager's cos on that input gives the compiled output.
    x, x_compiled = f32(1000.0, 0.5), f32(1000.05, 0.5)
    compiled = torch.cos(x_compiled)
    c = ctx("torch.cos", [x], compiled, compiled_args=[x_compiled])
    assert abs(compiled[0] - c.eager[0]) > 0.01
    name, reason = label(c)
    assert name == "ill_conditioned" and "amplifies input noise" in reason
    # Near-misses: the op itself is off on the compiled inputs; the compiled input is beyond
    # tolerance; the compiled inputs are eager's own (the op diverges by itself); no inputs.
    assert label(ctx("torch.cos", [x], compiled + 0.1, compiled_args=[x_compiled])) is None
    far = f32(1000.5, 0.5)
    assert label(ctx("torch.cos", [x], torch.cos(far), compiled_args=[far])) is None
    assert label(ctx("torch.cos", [x], compiled, compiled_args=[x])) is None
    assert label(ctx("torch.cos", [x], compiled)) is None


def test_tan_near_pole():
    x = f32(math.pi / 2, 0.5)
    eager = torch.tan(x)
    nudged = torch.nextafter(x, torch.zeros_like(x))  # one ulp of input noise
    compiled = torch.tan(nudged.double()).float()
    compiled[1] = eager[1]
    assert abs(compiled[0] - eager[0]) > 1e6
    name, reason = label(ctx("torch.tan", [x], compiled, eager=eager))
    assert name == "ill_conditioned" and "condition" in reason


def test_ill_conditioned_near_miss():
    x = f32(0.5, 1.0, 2.0)
    compiled = torch.exp(x) * 1.01  # 1% error where exp is well conditioned
    c = ctx("torch.exp", [x], compiled)
    assert labels.ill_conditioned(c) is None
    assert label(c) is None


# ----------------------------------------------------------------------------- low precision


def _fp16_program(x):
    return (x + 1000.0) - 1000.0  # fp16 rounds the intermediate 1000.x to 0.5 steps


def test_low_precision_intermediate_real_compile():
    """A real compile: Inductor keeps the fp16 intermediate in float32 unless
    emulate_precision_casts=True; the rerun under that flag agrees with eager."""
    x = torch.tensor([0.3, 0.7, 1.1, 2.2], dtype=torch.float16)
    inter = x + 1000.0
    eager = _fp16_program(x)

    def compiled_with(config: dict):
        torch._dynamo.reset()
        with torch._inductor.config.patch(config):
            return torch.compile(_fp16_program, fullgraph=True)(x)
    compiled = compiled_with({})
    attrs = {"alpha": 1}
    c = ctx("torch.sub", [inter, 1000.0], compiled, attrs, eager=eager, rerun=compiled_with)
    assert labels.low_precision_intermediate(c) is not None
    assert label(c)[0] == "low_precision_intermediate"
    stuck = ctx("torch.sub", [inter, 1000.0], compiled, attrs, eager=eager,
                rerun=lambda cfg: compiled)  # the flag does not remove the divergence
    assert labels.low_precision_intermediate(stuck) is None


def test_low_precision_near_miss_float32():
    x = f32(0.3, 0.7)
    eager = torch.exp(x)
    c = ctx("torch.exp", [x], eager + 1.0, eager=eager, rerun=lambda cfg: eager)
    assert labels.low_precision_intermediate(c) is None  # no fp16/bf16 involved
    assert label(c) is None


def test_overflow_of_finite_terms_meeting_a_true_infinity():
    """Found by a campaign (F.adaptive_avg_pool2d over edge values): the finite terms of one
    window sum past FLT_MAX in the vector lanes' order (-max + -max = -inf) and meet the +inf
    term: compiled NaN, eager and the exact sum +inf. Summation order decides it."""
    m = torch.finfo(torch.float32).max
    x = f32(-m, m, -m, math.inf, 1.0, -m, 0.5, 2.0).reshape(1, 1, 8, 1)
    c = ctx("F.adaptive_avg_pool2d", [x], torch.full((1, 1, 1, 1), math.nan),
            {"output_size": 1})
    assert c.eager.isinf().all()
    assert label(c) is not None and label(c)[0] == "reduction_error_bound"


def test_nan_from_an_infinity_without_overflowing_terms_is_reported():
    """The near-miss: the finite terms cannot overflow, so NaN where the exact result is +inf
    is the compiled code's own doing (a real bug), not summation order."""
    x = f32(1.0, 2.0, math.inf, 0.5, -3.0, 4.0, 1.5, 2.5).reshape(1, 1, 8, 1)
    c = ctx("F.adaptive_avg_pool2d", [x], torch.full((1, 1, 1, 1), math.nan),
            {"output_size": 1})
    assert label(c) is None


# ----------------------------------------------------------------------------- resampling_special


def _bicubic_case(special: float):
    """A 5x6 float64 image with one special value, upsampled 3x bicubic: on grid points some
    cubic weights are exactly 0 (found by a campaign, bucket d5f7b9e4384a)."""
    x = torch.linspace(-2.0, 3.0, 30, dtype=torch.float64).reshape(1, 1, 5, 6)
    x[0, 0, 2, 3] = special
    return x, {"scale_factor": 3.0, "mode": "bicubic"}


@pytest.mark.parametrize("special", [math.nan, math.inf])
def test_zero_weight_tap_real_compile(special):
    x, attrs = _bicubic_case(special)
    # the op itself, not run_op: Dynamo does not trace through eval()
    compiled = torch.compile(lambda t: torch.nn.functional.interpolate(t, **attrs))(x)
    c = ctx("F.interpolate", [x], compiled, attrs)
    assert bool((c.eager.isfinite() & ~compiled.isfinite()).any())  # the divergence is real
    name, reason = label(c)
    assert name == "resampling_special" and "does not depend" in reason


def test_zero_weight_near_miss_nan_far_from_the_special():
    """Compiled NaN at an output none of whose taps is the special input (a wrong index, an
    uninitialised read): eager's value does not depend on the special there either, but no
    zero-weight tap explains it, so it is reported."""
    x, attrs = _bicubic_case(math.nan)
    eager = run_op("F.interpolate", attrs, [x])
    compiled = eager.clone()
    compiled[0, 0, 0, 0] = math.nan  # reads input rows/cols 0-1, the NaN is at (2, 3)
    c = ctx("F.interpolate", [x], compiled, attrs, eager=eager)
    assert labels.resampling_special(c) is None
    assert label(c) is None


def test_zero_weight_near_miss_no_special_input():
    x, attrs = _bicubic_case(1.0)
    eager = run_op("F.interpolate", attrs, [x])
    compiled = eager.clone()
    compiled[0, 0, 0, 0] = math.nan
    assert label(ctx("F.interpolate", [x], compiled, attrs)) is None


def test_lerp_form_real_compile():
    """Found by a campaign (bucket 8b25adb3ce18): linear interpolation between -inf and 0 at
    t = 0.5: eager's weighted sum gives -inf, Inductor's lerp a + t*(b - a) gives NaN."""
    x = torch.tensor([-math.inf, 0.0], dtype=torch.bfloat16).reshape(1, 1, 2)
    attrs = {"scale_factor": 0.5, "mode": "linear"}
    compiled = torch.compile(lambda t: torch.nn.functional.interpolate(t, **attrs))(x)
    c = ctx("F.interpolate", [x], compiled, attrs)
    assert c.eager.isinf().all() and compiled.isnan().all()
    name, reason = label(c)
    assert name == "resampling_special" and "lerp" in reason


def test_lerp_near_miss_nan_without_an_infinite_tap():
    """Compiled NaN where eager is inf but no infinity is among the position's taps."""
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, -math.inf, 0.0], dtype=torch.float32).reshape(1, 1, 6)
    attrs = {"scale_factor": 0.5, "mode": "linear"}
    eager = run_op("F.interpolate", attrs, [x])  # [1.5, 3.5, -inf]
    compiled = eager.clone()
    compiled[0, 0, 0] = math.nan
    compiled[0, 0, 2] = math.nan  # this one has the -inf among its taps, the first does not
    assert label(ctx("F.interpolate", [x], compiled, attrs, eager=eager)) is None
