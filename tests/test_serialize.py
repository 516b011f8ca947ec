"""Serialization: canonical bytes, round trips, ids, and rejection of malformed input."""

import json
import random
import zlib

import pytest

from covfuzz import serialize
from covfuzz.errors import TestCaseFormatError
from covfuzz.generator import GenOptions, generate

CASES = [generate(seed) for seed in range(50)]


def test_round_trip_is_byte_identical_for_2k_generated_cases():
    opts = GenOptions(max_nodes=8)
    for seed in range(2_000):  # 10k ran here once; 2k covers the generator's variety in 1/5 the time
        case = generate(seed, opts) if seed >= 50 else CASES[seed]
        data = serialize.encode(case)
        again = serialize.encode(serialize.decode(data))
        assert again == data, seed
        # The JSON form carries the same content.
        assert serialize.encode(serialize.decode(serialize.to_json(case).encode())) == data


def test_id_is_stable_and_ignores_derived_specs():
    case = CASES[1]
    stripped = case.replace(graph=case.graph.__class__(
        case.graph.inputs, tuple(n.__class__(n.op, n.args, n.attrs, None) for n in case.graph.nodes),
        case.graph.outputs))
    assert serialize.case_id(case) == serialize.case_id(stripped)
    assert serialize.case_id(case) == serialize.case_id(serialize.decode(serialize.encode(case)))
    assert len({serialize.case_id(c) for c in CASES}) == len(CASES)


def _json(case=CASES[2]):
    return json.loads(serialize.to_json(case))


def _reject(obj_or_bytes, fragment):
    data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    with pytest.raises(TestCaseFormatError) as info:
        serialize.decode(data)
    assert fragment in str(info.value), str(info.value)


def test_truncated_stored_form():
    data = serialize.encode(CASES[3])
    for cut in (1, 4, 5, len(data) // 2, len(data) - 1):
        with pytest.raises(TestCaseFormatError):
            serialize.decode(data[:cut])


def test_truncated_json():
    text = serialize.to_json(CASES[3]).encode()
    for cut in (1, len(text) // 3, len(text) - 2):
        with pytest.raises(TestCaseFormatError):
            serialize.decode(text[:cut])


def test_wrong_version():
    data = serialize.encode(CASES[4])
    _reject(serialize.MAGIC + bytes([99]) + data[5:], "schema version 99")
    obj = _json()
    obj["version"] = 2
    _reject(obj, "schema version 2")


def test_unknown_op_and_code_in_fields():
    for bad in ("torch.nonexistent", "__import__('os').system('echo pwned')", "torch.add; import os"):
        obj = _json()
        obj["nodes"][0]["op"] = bad
        _reject(obj, "unknown op")
    obj = _json()
    obj["inputs"][0]["dtype"] = "float32); import os; os.system('x') #"
    _reject(obj, "dtype")
    obj = _json()
    obj["settings"]["device"] = "cuda:0'); print('x"
    _reject(obj, "device")
    obj = _json()
    obj["inputs"][0]["fill"] = "normal'); print(1) #"
    _reject(obj, "fill")


WITH_ATTRS = next(c for c in CASES if any(n.attrs for n in c.graph.nodes))


def test_attribute_domains_are_enforced():
    obj = _json(WITH_ATTRS)
    node = next(n for n in obj["nodes"] if n["attrs"])
    key = sorted(node["attrs"])[0]
    node["attrs"][key] = "__import__('os')"
    _reject(obj, "attribute")
    obj = _json(WITH_ATTRS)
    node = next(n for n in obj["nodes"] if n["attrs"])
    node["attrs"]["evil"] = 1
    _reject(obj, "unexpected attribute")
    obj = _json()
    obj["settings"]["inductor_config"] = {"cpp.cxx": "gcc; rm -rf /"}
    _reject(obj, "not a config flag")


def test_bare_name_attributes_only_take_listed_identifiers():
    """Method and helper names render without quotes (`t.sin()`), so their domain is a closed
    list: anything else is refused at load, before codegen could paste it."""
    case = next(c for c in (generate(s) for s in range(500))
                if any(n.op == "hop.cond" for n in c.graph.nodes))
    obj = json.loads(serialize.to_json(case))
    node = next(n for n in obj["nodes"] if n["op"] == "hop.cond")
    node["attrs"]["f"] = "sin() or __import__('os').system('x') or t.cos"
    _reject(obj, "attribute 'f'")


def test_wrong_types():
    cases = [
        (lambda o: o.__setitem__("seed", "7"), "seed"),
        (lambda o: o["inputs"][0].__setitem__("shape", "big"), "shape"),
        (lambda o: o["inputs"][0].__setitem__("shape", [True, 2]), "shape"),
        (lambda o: o["nodes"][0].__setitem__("args", [-1]), "args"),
        (lambda o: o["nodes"][0].__setitem__("args", [10_000]), "args"),
        (lambda o: o.__setitem__("outputs", []), "output"),
        (lambda o: o.__setitem__("nodes", {"a": 1}), "nodes"),
        (lambda o: o["settings"].__setitem__("fullgraph", "yes"), "fullgraph"),
        (lambda o: o.__setitem__("extra", 1), "unexpected field"),
        (lambda o: o["settings"].__setitem__("mark_dynamic", [[0, 7]]), "mark_dynamic"),
    ]
    for change, fragment in cases:
        obj = _json()
        change(obj)
        _reject(obj, fragment)
    _reject([1, 2, 3], "expected an object")
    _reject(b"\x00\x01garbage", "not a covfuzz test case")


def test_huge_sizes_are_refused_before_allocation():
    obj = _json()
    obj["inputs"][0].update(shape=[65536, 65536], stride=[65536, 1])
    _reject(obj, "too large")
    obj = _json()
    obj["nodes"] = (obj["nodes"] * 600)[:600]
    _reject(obj, "at most")
    bomb = serialize.MAGIC + bytes([1]) + zlib.compress(b" " * (64 << 20))
    _reject(bomb, "expands beyond")
    _reject(b"{" * 100_000, "nested more than")


def test_random_bytes_only_raise_the_documented_error():
    rng = random.Random(0)
    good = serialize.encode(CASES[5])
    for _ in range(2000):
        kind = rng.random()
        if kind < 0.4:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        elif kind < 0.7:
            data = bytearray(good)
            for _ in range(rng.randint(1, 5)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        else:
            text = bytearray(serialize.to_json(CASES[5]).encode())
            for _ in range(rng.randint(1, 5)):
                text[rng.randrange(len(text))] = rng.choice(b'{}[]",:0123456789ez-')
            data = bytes(text)
        try:
            serialize.decode(data)
        except TestCaseFormatError:
            pass
