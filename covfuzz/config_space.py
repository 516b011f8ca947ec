"""The inductor / dynamo config flags a test case may override, and their value domains.

Only flags listed here may appear in a test case (anything else is rejected at load time), and
only those present in the installed torch are offered to the mutators. Cache flags are not
listed: the harness owns them. Values are literals: bool, int in a range, one of a few strings,
or (for the fusion-pass options) a sorted list of pass names, which `torch_value` turns into
the {name: {}} dict Inductor reads.
"""

from __future__ import annotations

import random

# The pattern passes and batch fusions of torch/_inductor/fx_passes (split_cat.py,
# group_batch_fusion.py) that only run when named in pre/post_grad_fusion_options. The CUDA-only
# group_linear (fbgemm) is left out.
PRE_GRAD_PASSES = (
    "normalization_pass", "remove_split_with_size_one_pass", "merge_getitem_cat_pass",
    "merge_stack_tahn_unbind_pass", "merge_splits_pass", "mutate_cat_pass", "split_cat_pass",
    "unbind_stack_pass", "split_cat_to_slices_pass", "unbind_cat_to_view_pass",
    "split_stack_to_cats_pass", "unbind_stack_to_slices_pass",
    "move_reshape_out_of_split_stack_pass", "einsum_to_pointwise_pass",
    "batch_linear", "batch_linear_lhs", "batch_layernorm", "batch_tanh", "batch_sigmoid",
    "batch_relu", "batch_detach", "batch_nan_to_num", "batch_clamp", "batch_dropout",
)
POST_GRAD_PASSES = (
    "normalization_aten_pass", "decompose_mm_pass", "unbind_stack_aten_pass",
    "shape_padding_multiplier", "pad_aten_mm_pass", "split_cat_aten_pass", "select_cat_aten_pass",
    "move_view_after_cat_aten_pass", "batch_linear_post_grad", "batch_aten_tanh",
    "batch_aten_sigmoid", "batch_aten_relu", "batch_aten_add", "batch_aten_sub",
    "batch_aten_div", "batch_aten_mul",
)

# name -> domain: ("bool",) | ("int", lo, hi) | ("enum", choice, ...) | ("passes", name, ...)
INDUCTOR_FLAGS: dict[str, tuple] = {
    "fallback_random": ("bool",),
    "emulate_precision_casts": ("bool",),
    "freezing": ("bool",),
    "epilogue_fusion": ("bool",),
    "pattern_matcher": ("bool",),
    "split_reductions": ("bool",),
    "aggressive_fusion": ("bool",),
    "size_asserts": ("bool",),
    "unroll_reductions_threshold": ("int", 1, 64),
    "comprehensive_padding": ("bool",),
    "force_shape_pad": ("bool",),
    "permute_fusion": ("bool",),
    "max_fusion_size": ("int", 1, 256),
    "realize_reads_threshold": ("int", 1, 16),
    "realize_opcount_threshold": ("int", 1, 64),
    "loop_ordering_after_fusion": ("bool",),
    "reorder_for_locality": ("bool",),
    "combo_kernels": ("bool",),
    "layout_optimization": ("bool",),
    "keep_output_stride": ("bool",),
    "joint_graph_constant_folding": ("bool",),
    "group_fusion": ("bool",),
    "batch_fusion": ("bool",),
    "online_softmax": ("bool",),
    "score_fusion_memory_threshold": ("int", 1, 64),
    "inplace_buffers": ("bool",),
    "allow_buffer_reuse": ("bool",),
    "debug_index_asserts": ("bool",),
    "shape_padding": ("bool",),
    "decompose_mem_bound_mm": ("bool",),
    "cpp_wrapper": ("bool",),
    "cpp.simdlen": ("int", 0, 512),
    "cpp.min_chunk_size": ("int", 1, 4096),
    "cpp.dynamic_threads": ("bool",),
    "cpp.fallback_scatter_reduce_sum": ("bool",),
    "cpp.enable_loop_tail_vec": ("bool",),
    "cpp.enable_unsafe_math_opt_flag": ("bool",),
    "cpp.enable_floating_point_contract_flag": ("enum", "off", "on", "fast"),
    "cpp.max_horizontal_fusion_size": ("int", 0, 64),
    "cpp.descriptive_names": ("enum", "original_aten", "torch", "inductor_node"),
    "cpp.enable_kernel_profile": ("bool",),
    "cpp.vec_isa_ok": ("bool",),  # False: scalar C++ kernels instead of the vectorized ones
    "cpp.enable_tiling_heuristics": ("bool",),
    "cpp.gemm_max_k_slices": ("int", 1, 4),
    "cpp.use_decompose_tanh": ("bool",),
    "max_autotune": ("bool",),
    "max_autotune_gemm_backends": ("enum", "ATEN", "CPP", "ATEN,CPP"),
    "nan_asserts": ("bool",),  # loadable, never sampled: see NOT_SAMPLED
    "scalar_asserts": ("bool",),
    "alignment_asserts": ("bool",),
    "assert_indirect_indexing": ("bool",),
    "benchmark_kernel": ("bool",),
    "profiler_mark_wrapper_call": ("bool",),
    "conv_1x1_as_mm": ("bool",),
    "optimize_scatter_upon_const_tensor": ("bool",),
    "compute_all_bounds": ("bool",),
    "constant_and_index_propagation": ("bool",),
    "dce": ("bool",),
    "split_cat_fx_passes": ("bool",),
    "efficient_conv_bn_eval_fx_passes": ("bool",),
    "enable_linear_binary_folding": ("bool",),
    "expand_dimension_for_pointwise_nodes": ("bool",),
    "emulate_division_rounding": ("bool",),
    "triton.persistent_reductions": ("bool",),
    "triton.prefer_nd_tiling": ("bool",),
    "triton.tile_reductions": ("bool",),
    "triton.divisible_by_16": ("bool",),
    "triton.multi_kernel": ("int", 0, 3),
    # GPU code generation (Triton) and CUDA graphs: offered only to cases on cuda (flag_device).
    "triton.cudagraphs": ("bool",),
    "triton.cudagraph_trees": ("bool",),
    "triton.cudagraph_support_input_mutation": ("bool",),
    "triton.unique_kernel_names": ("bool",),
    "triton.autotune_pointwise": ("bool",),
    "triton.max_tiles": ("int", 1, 3),
    "triton.use_block_ptr": ("bool",),
    "triton.use_tensor_descriptor": ("bool",),
    "triton.cooperative_reductions": ("bool",),
    "triton.force_cooperative_reductions": ("bool",),
    "triton.dense_indexing": ("bool",),
    "triton.codegen_upcast_to_fp32": ("bool",),
    "triton.mix_order_reduction": ("bool",),
    "coordinate_descent_tuning": ("bool",),
    "max_autotune_pointwise": ("bool",),
    "benchmark_epilogue_fusion": ("bool",),
    "pre_grad_fusion_options": ("passes",) + PRE_GRAD_PASSES,
    "post_grad_fusion_options": ("passes",) + POST_GRAD_PASSES,
}

DYNAMO_FLAGS: dict[str, tuple] = {
    "capture_scalar_outputs": ("bool",),
    "capture_dynamic_output_shape_ops": ("bool",),
    "assume_static_by_default": ("bool",),
    "automatic_dynamic_shapes": ("bool",),
    "specialize_int": ("bool",),
    "specialize_float": ("bool",),
    "prefer_deferred_runtime_asserts_over_guards": ("bool",),
}

SECTIONS = {"inductor_config": INDUCTOR_FLAGS, "dynamo_config": DYNAMO_FLAGS}


def check_config_override(section: str, key: str, value) -> str | None:
    """None when `key = value` is an allowed override in `section`, else why not."""
    flags = SECTIONS.get(section)
    if flags is None:
        return f"unknown config section {section!r}"
    domain = flags.get(key)
    if domain is None:
        return f"{key[:64]!r} is not a config flag covfuzz may override"
    kind = domain[0]
    if kind == "bool":
        return None if isinstance(value, bool) else "expected a bool"
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and domain[1] <= value <= domain[2]
        return None if ok else f"expected an int in [{domain[1]}, {domain[2]}]"
    if kind == "enum":
        return None if value in domain[1:] and isinstance(value, str) else f"expected one of {domain[1:]}"
    if kind == "passes":
        ok = (isinstance(value, tuple) and 1 <= len(value) <= 8 and list(value) == sorted(set(value))
              and all(isinstance(v, str) and v in domain[1:] for v in value))
        return None if ok else "expected a sorted list of 1 to 8 distinct pass names"
    return "bad domain"


def _config_module(section: str):
    import torch._dynamo.config
    import torch._inductor.config
    return torch._inductor.config if section == "inductor_config" else torch._dynamo.config


# Flags older campaigns may hold but that mutators and the generator no longer set:
# nan_asserts makes compiled code raise wherever an output holds a NaN, which eager produces
# just as legitimately (a false runtime_crash, seen in a campaign).
NOT_SAMPLED = {"inductor_config": {"nan_asserts"}, "dynamo_config": set()}


_MISSING = object()


def current_value(section: str, key: str):
    """The installed torch's current value of flag `key` (a dotted path), or _MISSING."""
    obj = _config_module(section)
    for part in key.split("."):
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            break
    return obj


# Flags that act on one device's code generation only (C++ kernels on the CPU, Triton kernels
# and CUDA graphs on the GPU): offered only to cases on that device, where they change something.
CUDA_ONLY_FLAGS = frozenset({"coordinate_descent_tuning", "max_autotune_pointwise",
                             "benchmark_epilogue_fusion"})


def flag_device(key: str) -> str | None:
    """The device whose code flag `key` acts on: "cpu", "cuda", or None (both)."""
    if key.startswith("cpp."):
        return "cpu"
    if key.startswith("triton.") or key in CUDA_ONLY_FLAGS:
        return "cuda"
    return None


def available_flags(section: str, device: str = "cpu") -> list[str]:
    """Flags of `section` that exist in the installed torch and may be sampled for a case on
    `device` (sorted, so sampling is stable). Flags missing from the installed torch are
    skipped here."""
    return [key for key in sorted(SECTIONS[section])
            if key not in NOT_SAMPLED[section] and flag_device(key) in (None, device)
            and current_value(section, key) is not _MISSING]


def _available_passes(key: str) -> list[str]:
    """The passes of `key`'s domain that the installed torch registers (an unknown name would
    make Inductor raise KeyError: a false compile crash)."""
    try:
        from torch._inductor.fx_passes import group_batch_fusion, split_cat
    except ImportError:
        return []
    if key == "pre_grad_fusion_options":
        known = set(split_cat.pre_grad_pass_names) | set(group_batch_fusion.PRE_GRAD_FUSIONS)
    else:
        known = set(split_cat.post_grad_pass_names) | set(group_batch_fusion.POST_GRAD_FUSIONS)
    return [name for name in INDUCTOR_FLAGS[key][1:] if name in known]


def sample_value(rng: random.Random, section: str, key: str):
    domain = SECTIONS[section][key]
    if domain[0] == "bool":
        # The opposite of torch's value: overriding a flag with the value it has changes nothing.
        default = current_value(section, key)
        return (not default) if isinstance(default, bool) else rng.random() < 0.5
    if domain[0] == "int":
        return rng.randint(domain[1], domain[2])
    if domain[0] == "passes":
        names = _available_passes(key)
        return tuple(sorted(rng.sample(names, min(len(names), rng.randint(1, 4)))))
    return rng.choice(domain[1:])


def torch_value(section: str, key: str, value):
    """The value torch's config takes for a covfuzz config value (they differ for pass lists)."""
    if SECTIONS[section][key][0] == "passes":
        return {name: {} for name in value}
    return value
