"""The native hot paths (bus/_speedups.c) against the Python code they stand in for: the same bytes out of
the packer, the same Messages (or the same error) out of the batch decoder, for generated values at every
msgpack size boundary and for mutated batches. The Python code is the reference: each test runs it too."""

from __future__ import annotations

import gc
import os
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import msgpack
import numpy as np
import pytest

from bus import batched, envelope
from bus.batched import batch_frames, decode_batch
from bus.envelope import Encoder, EnvelopeError
from bus.speedups import PURE_ENV, native, why_not

needs_native = pytest.mark.skipif(native is None, reason=f"no native module: {why_not}")

ROOT = Path(__file__).resolve().parents[2]

# Values at each boundary where msgpack changes its encoding.
INTS = [0, 1, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
        -1, -32, -33, -128, -129, -32_768, -32_769, -2**31, -2**31 - 1, -2**63]
LENGTHS = [0, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536]


def _value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(11 if depth < 4 else 7)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice(INTS)
    if kind == 2:
        return rng.randint(-2**63, 2**64 - 1)
    if kind == 3:
        return rng.choice([0.0, -0.0, 1.5, -2.25e300, float("inf"), rng.random()])
    if kind == 4:
        return "".join(rng.choice("aé€😀") for _ in range(rng.choice(LENGTHS[:8])))
    if kind == 5:
        return rng.randbytes(rng.choice(LENGTHS[:8]))
    if kind == 6:
        return rng.choice(["x", "", "label"])
    if kind == 7:
        return [_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 3, 15, 16]))]
    if kind == 8:
        return tuple(_value(rng, depth + 1) for _ in range(rng.choice([0, 2])))
    return {rng.choice(["a", "bb", "é", f"k{i}"]) if rng.random() < 0.9 else rng.randbytes(3): _value(rng, depth + 1)
            for i in range(rng.choice([0, 1, 2, 15, 16, 17]))}


@needs_native
def test_the_packer_writes_what_msgpack_writes_at_every_size_boundary():
    for v in [*INTS, *(("s" * n) for n in LENGTHS), *(b"b" * n for n in LENGTHS), *([0] * n for n in LENGTHS),
              *({f"k{i}": i for i in range(n)} for n in (0, 15, 16, 65_536)), 0.1, -0.0, float("nan")]:
        assert native.pack(v) == msgpack.packb(v, use_bin_type=True), repr(v)[:80]


@needs_native
def test_the_packer_writes_what_msgpack_writes_for_generated_bodies():
    rng = random.Random(7)
    for _ in range(3_000):
        body = {f"f{i}": _value(rng) for i in range(rng.randrange(6))}
        assert native.pack(body) == msgpack.packb(body, use_bin_type=True), body


class _Dict(dict):
    pass


def _nested(depth: int) -> list:
    v: list = [0]
    for _ in range(depth):
        v = [v]
    return v


@needs_native
@pytest.mark.parametrize("value", [np.zeros(3), np.float32(1.0), _Dict(a=1), 2**64, -2**63 - 1, "\ud800",
                                   bytearray(b"x"), _nested(80)])
def test_what_msgpack_needs_its_default_or_its_own_error_for_is_left_to_it(value):
    assert native.pack({"v": value}) is None


@needs_native
def test_a_record_is_the_same_bytes_either_way(monkeypatch):
    enc = Encoder("imu", host="h1", iid="7-ab")
    rng = random.Random(3)
    bodies = [{"x": 1.0, "label": "a" * 40}, {}, {"n": [1, 2, {"k": None}], "b": b"\x00" * 300},
              *({f"f{i}": _value(rng) for i in range(4)} for _ in range(300))]
    native_recs = [enc.record("imu.raw", 1_700_000_000_000_000_000 + i, b) for i, b in enumerate(bodies)]
    monkeypatch.setattr(envelope, "_native_record", None)
    python_recs = [enc.record("imu.raw", 1_700_000_000_000_000_000 + i, b) for i, b in enumerate(bodies)]
    assert native_recs == python_recs


@needs_native
def test_a_body_with_an_array_still_goes_through_the_encoder():
    enc = Encoder("cam")
    _, rec, arrays, _ = enc.record("cam.frame", 5, {"frame": np.arange(6, dtype=np.uint8)})
    assert len(arrays) == 1 and bytes(arrays[0]) == bytes(range(6))
    assert msgpack.unpackb(rec, ext_hook=lambda code, data: code)[1] == {"frame": envelope.ARRAY_EXT}


def _batches(rng: random.Random) -> list[list]:
    enc = Encoder("imu", host="h1", iid="7-ab")
    out = []
    for k in range(60):
        bodies = [{f"f{i}": _value(rng) for i in range(rng.randrange(5))} for _ in range(rng.choice([1, 2, 7]))]
        records = [enc.record("imu.raw", 1_000 + i, b, "c-1" if k % 3 == 0 else None)[1]
                   for i, b in enumerate(bodies)]
        out.append(batch_frames(b"imu.raw", enc.batch_head(rng.choice([0, 41, 2**64 - 8])), records))
    return out


def _decoded(frames: list) -> object:
    try:
        # Compared as msgpack bytes: a changed float can be a NaN, which equals nothing.
        return [msgpack.packb((m.topic, tuple(m.header), m.body, m.nbytes, m.frames, m.shm_taken), use_bin_type=True)
                for m in decode_batch(frames[0][len(envelope.BATCH_MARKER):], frames[1], [])]
    except EnvelopeError as exc:
        return ("error", exc.reason, exc.topic)


@needs_native
def test_the_decoder_builds_the_same_messages_and_refuses_the_same_batches(monkeypatch):
    """Good batches, and the same batches with bytes changed, cut or added: every one decodes to equal
    Messages both ways, or is refused both ways with the same reason."""
    rng = random.Random(11)
    cases = []
    for frames in _batches(rng):
        cases.append(frames)
        raw = bytearray(frames[1])
        for _ in range(25):
            bad = bytearray(raw)
            how = rng.randrange(3)
            if how == 0:
                bad[rng.randrange(len(bad))] = rng.randrange(256)
            elif how == 1:
                del bad[rng.randrange(len(bad)):]
            else:
                bad += bytes([rng.randrange(256)])
            cases.append([frames[0], bytes(bad)])
    cases.append([b"@b/imu.raw", msgpack.packb([{"v": 2, "src": "s", "seq": 0}, [5, {1: 2}]])])  # int key
    cases.append([b"@b/imu.raw", msgpack.packb([{"v": 2, "src": "s", "seq": 0}, [-5, {}]])])  # negative ts
    cases.append([b"@b/imu.raw", msgpack.packb([{"v": 2, "src": "s", "seq": 0}, [5, {}, 7]])])  # corr not a str
    cases.append([b"@b/imu.raw", msgpack.packb([{"v": 2, "src": "s", "seq": 0}, [5, {"a": msgpack.ExtType(1, b"")}],
                                                [6, {}]])])
    native_out = [_decoded(c) for c in cases]
    monkeypatch.setattr(batched, "_native", None)
    python_out = [_decoded(c) for c in cases]
    assert sum(1 for o in python_out if isinstance(o, list)) > 60  # the good ones, and some changed ones
    assert sum(1 for o in python_out if isinstance(o, tuple)) > 500
    for c, n, p in zip(cases, native_out, python_out):
        assert n == p, c[1]


@needs_native
def test_decoded_headers_and_flat_messages_are_left_out_of_the_cycle_collector():
    """The native decoder's Messages make no work for the collector when their body is atoms only (as
    CPython does for such dicts and tuples); a body with a container keeps its Message tracked."""
    enc = Encoder("imu")
    recs = [enc.record("imu.raw", 1, {"x": 1.0, "s": "a"})[1], enc.record("imu.raw", 2, {"xs": [1, 2]})[1]]
    flat, nested = decode_batch(b"imu.raw", batch_frames(b"imu.raw", enc.batch_head(0), recs)[1], [])
    assert not gc.is_tracked(flat.header) and not gc.is_tracked(flat)
    assert gc.is_tracked(nested)
    assert flat.header.seq == 0 and nested.header.seq == 1 and nested.body == {"xs": [1, 2]}


def test_the_native_module_is_built_wherever_a_c_compiler_and_pythons_headers_are():
    """setup.py builds it as optional (a machine without a compiler still installs): this is where a build
    that failed on a machine that has both shows."""
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if os.environ.get(PURE_ENV) or not (shutil.which("cc") or shutil.which("gcc")) or not headers.exists():
        pytest.skip("pure Python asked for, or no C compiler or Python.h here")
    assert native is not None, why_not


@needs_native
def test_pure_python_is_one_environment_variable_away():
    code = "from bus import speedups, batched; print(speedups.describe(), type(batched.new_gatherer()).__module__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, PURE_ENV: "1"},
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["Python", f"({PURE_ENV}", "is", "set)", "bus.batched"]


@needs_native
def test_add_body_gathers_what_add_would_and_holds_a_batch_to_the_limit_it_is_given():
    enc = Encoder("imu")
    g = native.Gatherer(10**12, 1000, 10**6)
    assert g.add_body(b"imu.raw", 0, 7, {"x": 1.0}) == [(b"imu.raw", 0, [enc.record("imu.raw", 7, {"x": 1.0})[1]])]
    assert g.add_body(b"imu.raw", 1, 8, {"frame": np.zeros(2)}) is False  # only the encoder packs arrays
    sizes = []
    for seq in range(1, 200):
        out = g.add_body(b"imu.raw", seq, 9, {"label": "a" * 40}, 500)
        sizes += [sum(map(len, records)) for _, _, records in out or ()]
    assert sizes and max(sizes) <= 500 and min(sizes) > 400  # full batches of the limit, not the gatherer's 10**6
    assert sum(sizes) + sum(p[2] for p in g.pending.values()) == 199 * len(enc.record("imu.raw", 9, {"label": "a" * 40})[1])
