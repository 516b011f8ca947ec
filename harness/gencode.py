"""Generated-code features (issue 19, family "gencode"): what Inductor wrote for a case.

Python coverage of the compiler saturates early, while the code it generates keeps changing
with values, dtypes, sizes and settings: a vectorized body or only a scalar tail, a reduction
split across threads, a different math helper. This module captures the code of the compile
the harness already makes (no extra compile: `capture()` hooks `GraphLowering.save_output_code`,
the hook Inductor calls with every wrapper module it writes, kernels inline) and turns it into
feature texts:

- `line:<where>:<text>`  every line with names, numbers and buffer ids abstracted;
- `pair:<where>:<text>><text>`  two consecutive such lines (the generated code's "arcs": the
  same lines in a new order or next to a new neighbour, as coverage counts arcs, not lines);
- `loops:<skeleton>` and `nest:<outer>><inner>`  the loop structure of each kernel (parallel
  regions, loops with a unit or a vector step, the vectorized body / tail branches, reductions);
- `call:<name>`  vector intrinsics, math helpers and extern kernels called;
- `init:<value>`  the initial values of reduction accumulators;
- `index:<shape>`  the shape of each load/store index expression.

It reads C++ (CPU kernels, the cpp_wrapper) and Triton (GPU kernels) alike: the normalizer works
on text, and the kernel kind only picks the structural patterns. Everything but `capture()` is
pure text processing (no torch), bounded in the text it reads and the features it returns.
"""

from __future__ import annotations

import contextlib
import re

from covfuzz.features import family_id

MAX_CAPTURE = 4 << 20  # characters of generated code kept per case
MAX_LINE = 400  # characters of one normalized line or expression
MAX_FEATURES = 4096  # feature texts per case
MAX_SOURCE_LINE = 4096  # characters of one generated line that are read

# --------------------------------------------------------------------------- capture


@contextlib.contextmanager
def capture():
    """Collect the wrapper modules Inductor generates inside the block (a list of strings,
    kernels inline), chaining to any hook already installed (a test's `run_and_get_code`)."""
    from torch._inductor.graph import GraphLowering

    codes: list[str] = []
    previous = GraphLowering.save_output_code

    def save(code: str) -> None:
        if isinstance(code, str) and sum(map(len, codes)) + len(code) <= MAX_CAPTURE:
            codes.append(code)
        if previous is not None:
            previous(code)

    GraphLowering.save_output_code = save
    try:
        yield codes
    finally:
        GraphLowering.save_output_code = previous


# --------------------------------------------------------------------------- normalizing

# Order matters: kernel names before the generic identifiers they contain.
_NAMES = [
    (re.compile(r"\btriton_(poi|red|per|tem|for)\w*"), r"K_\1"),
    (re.compile(r"\bcpp_fused\w*|\bcpp_\w*kernel\w*"), "K"),
    (re.compile(r"\btmp_acc\d+"), "tmp_acc"),
    (re.compile(r"\b_?tmp\d+"), "tmp"),
    (re.compile(r"\b(in_out_ptr|in_ptr|out_ptr)\d+"), r"\1"),
    (re.compile(r"\b(buf|arg|primals_|tangents_|getitem_?)\d+(_\d+)?\b"), r"\1"),
    (re.compile(r"\b(r\d+_)\d+\b"), r"\1"),  # Triton reduction indices r0_1
    (re.compile(r"\b([xyz])\d+\b"), r"\1"),  # loop and block indices x0, y1
    (re.compile(r"\b(ks|s|u|zuf|zu)\d+\b"), r"\1"),  # symbolic sizes
]
_NUMBER = re.compile(r"(?<![\w.])(0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                     r"[LlUuFf]*\b")
_SPACES = re.compile(r"\s+")


def abstract_names(text: str) -> str:
    """`text` with generated names (temporaries, buffers, pointers, loop indices, symbols,
    kernel names) replaced by their kind."""
    for pattern, repl in _NAMES:
        text = pattern.sub(repl, text)
    return text


def normalize(line: str) -> str:
    """A line with names and numbers abstracted and whitespace collapsed ('' for nothing)."""
    text = _SPACES.sub(" ", abstract_names(line.strip()))
    text = _NUMBER.sub("N", text)
    return text[:MAX_LINE]


# --------------------------------------------------------------------------- kernels

_TRIPLE = re.compile(r"(?:r|)('''|\"\"\")(.*?)\1", re.S)


def split_code(code: str) -> list[tuple[str, str]]:
    """(kind, text) pieces of one generated module: each kernel source ('cpp' or 'triton')
    found in a triple-quoted string, and the rest ('wrapper': Python, or C++ with cpp_wrapper)."""
    pieces, rest, last = [], [], 0
    for m in _TRIPLE.finditer(code):
        body = m.group(2)
        kind = kernel_kind(body)
        if kind is None:
            continue
        rest.append(code[last:m.start()])
        pieces.append((kind, body))
        last = m.end()
    rest.append(code[last:])
    pieces.append(("wrapper", "".join(rest)))
    return pieces


def kernel_kind(text: str) -> str | None:
    if "@triton.jit" in text or "tl.program_id" in text:
        return "triton"
    if "extern \"C\"" in text or "#include" in text or "at::vec::" in text:
        return "cpp"
    return None


# Structural lines -> loop-skeleton tokens, per kernel kind.
_CPP_STRUCTURE = [
    (re.compile(r"#pragma omp parallel"), "parallel"),
    (re.compile(r"#pragma omp for"), "omp_for"),
    (re.compile(r"#pragma omp simd"), "simd"),
    (re.compile(r"#pragma GCC ivdep"), "ivdep"),
    (re.compile(r"\bfor\s*\(.*\+=\s*static_cast<int64_t>\(1L?\)\)"), "for1"),
    (re.compile(r"\bfor\s*\("), "forV"),
    (re.compile(r"C10_LIKELY\("), "body"),
    (re.compile(r"C10_UNLIKELY\("), "tail"),
    (re.compile(r"^\s*tmp_acc\d+\w*(\[[^\]]*\])?\s*="), "reduce"),  # an update, not a declaration
    (re.compile(r"\bparallel_for\b|\bat::parallel"), "parallel_for"),
]
_TRITON_STRUCTURE = [
    (re.compile(r"^\s*for\s+\w+\s+in\s+(tl\.)?range\("), "for"),
    (re.compile(r"\btl\.(sum|max|min|argmax|argmin|reduce|cumsum|cumprod|associative_scan)\("),
     "reduce"),
    (re.compile(r"\btriton_helpers\.(max2|min2|welford\w*|prod\w*|any\w*)\("), "reduce"),
    (re.compile(r"\btl\.store\("), "store"),
    (re.compile(r"\btl\.where\("), "where"),
    (re.compile(r"\w*mask\s*="), "mask"),
]

_CALLS = {
    "cpp": [re.compile(r"\b(at::vec::\w+(?:::\w+)*)"), re.compile(r"\b(std::\w+(?:::\w+)*)"),
            re.compile(r"\b(c10::\w+(?:::\w+)*)"), re.compile(r"\.(\w+)\("),
            re.compile(r"(?<![\w:.>])([a-z_][a-z0-9_]*)\(")],
    "triton": [re.compile(r"\b(tl\.\w+(?:\.\w+)?)"), re.compile(r"\b(libdevice\.\w+)"),
               re.compile(r"\b(triton_helpers\.\w+)"), re.compile(r"\b(tl_math\.\w+)")],
    "wrapper": [re.compile(r"\b(extern_kernels\.\w+)"), re.compile(r"\b(aten\.\w+(?:\.\w+)?)"),
                re.compile(r"\b(torch\.ops\.\w+\.\w+(?:\.\w+)?)"),
                re.compile(r"\b(aoti_torch_\w+)")],
}
_NOT_CALLS = {"for", "if", "while", "switch", "return", "sizeof", "static_cast", "kernel",
              "decltype", "reinterpret_cast", "tmp", "tmp_acc", "in_ptr", "out_ptr", "in_out_ptr",
              "x", "y", "z", "def", "range", "int", "float", "bool"}

_TEMPLATE_ARGS = re.compile(r"<[^<>;]*>")  # Vectorized<float>::loadu -> Vectorized::loadu
_INIT = {
    # a declaration: `<type> tmp_accN[_vec|_arr] = <value>;`
    "cpp": re.compile(r"^\s*(?:[\w:]+(?:<[^=]*>)?\s+)+(tmp_acc\d+\w*)(?:\[[^\]]*\])?\s*=\s*(.+?);"),
    "triton": re.compile(r"^\s*(_tmp\d+\w*)\s*=\s*(tl\.full\(.+\))\s*$"),
}
_INDEX_START = re.compile(r"\b(in_out_ptr|in_ptr|out_ptr)\d+\s*(\+|\[)\s*(static_cast<int64_t>)?\s*\(?")


def _balanced(text: str, start: int) -> str:
    """The expression that starts at `start`: up to the bracket that closes one opened before
    it, or a ',' / ';' at its own depth."""
    depth = 0
    for i in range(start, min(len(text), start + MAX_LINE)):
        ch = text[i]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            if depth == 0:
                return text[start:i]
            depth -= 1
        elif ch in ",;" and depth == 0:
            return text[start:i]
    return text[start:start + MAX_LINE]


def _call_args(text: str, start: int) -> list[str]:
    """The top-level arguments of the call whose '(' is just before `start`."""
    args, depth, begin = [], 0, start
    for i in range(start, min(len(text), start + MAX_LINE * 2)):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                args.append(text[begin:i].strip())
                return args
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[begin:i].strip())
            begin = i + 1
    return args


_VEC_STEP = re.compile(r"\bfor\s*\(.*\+=\s*static_cast<int64_t>\((\w+?)L?\)\)")
_VEC_ACCESS = re.compile(r"::loadu\(|\.store\(|::masked_load\(|masked_store\(")
_COUNT = re.compile(r"^static_cast<int64_t>\((\w+?)L?\)$")


def _vector_accesses(line: str, step: str | None) -> list[str]:
    """`load_full`, `load_partial`, `store_...` (or `_dyn` for a symbolic count) for each
    vector load or store of a C++ line: a count below the loop's vector step is a partial
    vector (the scalar tail, done with masked loads)."""
    out = []
    for m in _VEC_ACCESS.finditer(line):
        what = "store" if "store" in m.group(0) else "load"
        args = _call_args(line, m.end())
        count = _COUNT.match(args[1]) if len(args) > 1 else None
        if len(args) <= 1:
            kind = "full"
        elif count is None or not count.group(1).isdigit():
            kind = "dyn"
        else:
            kind = "full" if step is not None and count.group(1) == step else "partial"
        out.append(f"{what}_{kind}")
    return out


def _index_shapes(line: str) -> list[str]:
    out = []
    for m in _INDEX_START.finditer(line):
        expr = _balanced(line, m.end())
        shape = _NUMBER.sub("N", _SPACES.sub("", abstract_names(expr)))
        if shape:
            out.append(shape[:MAX_LINE])
    return out


def _cpp_depths(lines: list[str]) -> list[int]:
    depth, out = 0, []
    for line in lines:
        out.append(depth)
        depth += line.count("{") - line.count("}")
    return out


def _indent_depths(lines: list[str]) -> list[int]:
    return [(len(line) - len(line.lstrip(" "))) // 4 for line in lines]


def kernel_texts(kind: str, text: str) -> set[str]:
    """The feature texts of one kernel or wrapper piece (`split_code`)."""
    lines = text.splitlines()
    out: set[str] = set()
    structure = _CPP_STRUCTURE if kind == "cpp" else _TRITON_STRUCTURE if kind == "triton" else []
    depths = _cpp_depths(lines) if kind == "cpp" else _indent_depths(lines)
    skeleton: list[str] = []
    stack: list[tuple[int, str]] = []  # open structural tokens: (depth, token)
    step = None  # the vector step of the innermost C++ loop seen so far
    previous = None  # the last normalized line: consecutive pairs are this family's "arcs"
    for line, depth in zip(lines, depths):
        line = line[:MAX_SOURCE_LINE]
        stripped = line.strip()
        if not stripped or stripped in ("{", "}", "};") or stripped.startswith(("//", "# ")):
            continue
        norm = normalize(stripped)
        if norm:
            out.add(f"line:{kind}:{norm}")
            if previous is not None:  # the same lines in a new order or neighbourhood
                out.add(f"pair:{kind}:{previous}>{norm}")
            previous = norm
        for pattern in structure:
            if pattern[0].search(line):
                token = pattern[1]
                while stack and stack[-1][0] >= depth:
                    stack.pop()
                if stack:
                    out.add(f"nest:{kind}:{stack[-1][1]}>{token}")
                stack.append((depth, token))
                skeleton.append(f"{depth}{token}")
                break
        if kind == "cpp":
            m = _VEC_STEP.search(line)
            if m:
                step = m.group(1)
            where = stack[-1][1] if stack else "top"
            for access in _vector_accesses(line, step):
                out.add(f"vec:{kind}:{where}:{access}")
        plain = _TEMPLATE_ARGS.sub("", _TEMPLATE_ARGS.sub("", line))
        for pattern in _CALLS.get(kind, ()):
            for name in pattern.findall(plain):
                name = abstract_names(name)
                if name not in _NOT_CALLS:
                    out.add(f"call:{kind}:{name}")
        init = _INIT.get(kind)
        m = init.match(line) if init and "tmp" in line else None
        if m:
            out.add(f"init:{kind}:{_SPACES.sub(' ', abstract_names(m.group(2)))[:MAX_LINE]}")
        for shape in _index_shapes(line):
            out.add(f"index:{kind}:{shape}")
    if skeleton:
        out.add(f"loops:{kind}:{' '.join(skeleton)[:MAX_LINE * 4]}")
    return out


def feature_texts(codes: list[str]) -> set[str]:
    """Every feature text of the generated modules of one case (at most MAX_FEATURES)."""
    out: set[str] = set()
    for code in codes:
        for kind, text in split_code(code[:MAX_CAPTURE]):
            out |= kernel_texts(kind, text)
    if len(out) > MAX_FEATURES:
        out = set(sorted(out)[:MAX_FEATURES])
    return out


def features(codes: list[str]) -> list[int]:
    """The "gencode" feature ids of the generated modules of one case."""
    return sorted({family_id("gencode", text) for text in feature_texts(codes)})
