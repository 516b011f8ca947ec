"""Test-only fault injection: what a worker does on purpose, so covfuzz's own fault handling can
be tested (`covfuzz fuzz --inject-faults RATE`, benchmarks/fault_campaign.py).

Active only when COVFUZZ_FAULT_INJECTION=1 in the worker's environment: a case whose seed is
one of these keys misbehaves (harness/execute.py triggers it). Kept apart from execute.py,
which imports torch's compiler, so a campaign can draw fault seeds without importing it.

`FAULT_SEEDS` are the faults a campaign draws (`--inject-faults`). `METAMORPHIC_FAULT_SEEDS`
change only what a metamorphic variant's compiled calls return (issue 19's second compile of a
passing case): the comparison of the two compiled results is tested on a real disagreement
without a torch bug; campaigns do not draw them. `GPU_FAULT_SEEDS` are the
faults of a GPU worker, raised as the real exception types with CUDA's real message text, so
the classification of GPU failures is tested on any machine; campaigns do not draw them.
"""

from __future__ import annotations

import os

FAULT_SEEDS = {
    0xFA017001: "segfault",       # ctypes.string_at(0) during the compiled stage
    0xFA017002: "abort",          # os.abort() during the compiled stage
    0xFA017003: "hang",           # `while True: pass` during the compiled stage
    0xFA017004: "memory",         # allocate 256 MiB chunks until killed
    0xFA017005: "raise_compile",  # compile with a backend that raises RuntimeError
    0xFA017006: "raise_eager",    # raise RuntimeError in the eager run
}

GPU_FAULT_SEEDS = {  # all during the compiled stage
    0xFA017101: "cuda_oom",            # torch.cuda.OutOfMemoryError, as the allocator raises it
    0xFA017102: "cuda_illegal_access",  # RuntimeError "CUDA error: an illegal memory access ..."
    0xFA017103: "cuda_device_assert",  # RuntimeError "CUDA error: device-side assert triggered"
    0xFA017104: "kernel_hang",         # blocks in a native wait, as a host thread does in
                                       # cudaStreamSynchronize on a kernel that never ends
}

# The text CUDA and the caching allocator put in these exceptions (torch 2.x).
CUDA_OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139.80 GiB "
    "of which 1.20 GiB is free. Including non-PyTorch memory, this process has 138.59 GiB "
    "memory in use.")
CUDA_ILLEGAL_ACCESS_MESSAGE = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
    "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n")
CUDA_DEVICE_ASSERT_MESSAGE = (
    "CUDA error: device-side assert triggered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
    "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n")


METAMORPHIC_FAULT_SEEDS = {
    0xFA017201: "perturb_variant",  # the variant's compiled outputs: floats + 1, ints + 1
}


def fault_injection_enabled() -> bool:
    return os.environ.get("COVFUZZ_FAULT_INJECTION") == "1"


def fault_of(seed: int) -> str | None:
    """The fault a case with `seed` injects in this worker (None: none, or injection off)."""
    if not fault_injection_enabled():
        return None
    return FAULT_SEEDS.get(seed) or GPU_FAULT_SEEDS.get(seed) or METAMORPHIC_FAULT_SEEDS.get(seed)


def perturbed(values: list) -> list:
    """`values` (a compiled call's output snapshots) with every floating or integer tensor
    moved by one and every other value kept: the `perturb_variant` fault."""
    out = []
    for v in values:
        floating = getattr(v, "is_floating_point", None)
        if floating is not None and (floating() or str(v.dtype).startswith("torch.int")):
            v = v + 1
        out.append(v)
    return out


def raise_gpu_fault(kind: str) -> None:
    """Do what a GPU fault of `kind` does to the host thread (raise, or block forever)."""
    if kind == "cuda_oom":
        import torch
        raise torch.cuda.OutOfMemoryError(CUDA_OOM_MESSAGE)
    if kind == "cuda_illegal_access":
        raise RuntimeError(CUDA_ILLEGAL_ACCESS_MESSAGE)
    if kind == "cuda_device_assert":
        raise RuntimeError(CUDA_DEVICE_ASSERT_MESSAGE)
    if kind == "kernel_hang":
        import threading
        threading.Event().wait()  # a native wait that never returns (GIL released)
    raise ValueError(f"not a GPU fault: {kind!r}")
