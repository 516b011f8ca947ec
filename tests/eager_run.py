"""Running a generated case's program eagerly in this process, as the harness's eager run does
(backward included): for tests that check generated cases without a worker."""

from __future__ import annotations

import warnings

from covfuzz import codegen
from covfuzz.propagate import backward_loss


def run_eagerly(case):
    """(the program's namespace, the outputs of `fn`); raises what eager raises."""
    namespace: dict = {}
    exec(compile(codegen.program(case), "<case>", "exec"), namespace)  # noqa: S102 - our codegen
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outputs = namespace["fn"](*namespace["make_inputs"]("cpu"))
        if case.settings.backward:
            loss = backward_loss(outputs)
            if loss is not None:
                loss.backward()
    return namespace, outputs
