"""docs/wire.md's test vectors: each decodes to what the document says and re-encodes byte for byte."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bus.envelope import EnvelopeError, Encoder, decode
from tests.support import ROOT

WIRE_MD = ROOT / "docs" / "wire.md"


def vectors() -> dict[str, dict[str, str]]:
    """``wire-vector NAME`` blocks of docs/wire.md: frame name -> hex, and ``decoded`` -> JSON."""
    text = WIRE_MD.read_text(encoding="utf-8")
    found = {}
    for name, block in re.findall(r"```wire-vector (\w+)\n(.*?)```", text, flags=re.S):
        lines = dict(line.split(None, 1) for line in block.strip().splitlines())
        found[name] = lines
    return found


VECTORS = vectors()


def frames_of(vector: dict[str, str]) -> list[bytes]:
    names = ["topic", "header", "body"] + sorted((k for k in vector if k.startswith("array")), key=lambda k: int(k[5:]))
    return [bytes.fromhex(vector[n]) for n in names]


def as_json(value):
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.tolist()}
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def from_json(value):
    if isinstance(value, dict) and set(value) == {"dtype", "shape", "data"}:
        return np.array(value["data"], dtype=value["dtype"]).reshape(value["shape"])
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    return value


def test_the_document_has_the_four_vectors_it_promises():
    assert set(VECTORS) == {"small", "corr", "arrays", "sender"}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_decodes_to_the_documented_message(name):
    vector = VECTORS[name]
    msg = decode(frames_of(vector))
    expected = json.loads(vector["decoded"])
    header = {"v": msg.header.v, "src": msg.header.src, **({"host": msg.header.host} if msg.header.host else {}),
              **({"iid": msg.header.iid} if msg.header.iid else {}), "seq": msg.header.seq, "ts": msg.header.ts,
              **({"corr": msg.header.corr} if msg.header.corr is not None else {})}
    assert {"topic": msg.topic, "header": header, "body": as_json(msg.body)} == expected


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_re_encodes_byte_for_byte(name):
    vector = VECTORS[name]
    expected = json.loads(vector["decoded"])
    h = expected["header"]
    encoder = Encoder(h["src"], host=h.get("host", ""), iid=h.get("iid", ""))
    frames = encoder.encode(expected["topic"], h["seq"], h["ts"], from_json(expected["body"]), h.get("corr"))
    assert [bytes(f) for f in frames] == frames_of(vector)


def test_a_damaged_vector_is_refused():
    frames = frames_of(VECTORS["arrays"])
    with pytest.raises(EnvelopeError):
        decode(frames[:3] + [frames[3][:-1], frames[4]])
