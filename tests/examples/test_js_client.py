"""The JavaScript reference client (examples/js, written from docs/wire.md) against a live bus.

Needs node and npm, and the npm registry for ``npm install`` (zeromq, @msgpack/msgpack) into a
temporary copy; skipped with a message when any of them is missing. Costs ~5 s plus the install.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from bus.pubsub import Publisher, Subscriber
from bus.senders import origin_host, pid_of_iid
from tests.support import ROOT

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "js"
TIMEOUT_S = 120


@pytest.fixture(scope="session")
def js_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are not installed: the JavaScript client test needs them")
    folder = tmp_path_factory.mktemp("js") / "client"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("node_modules", "package-lock.json"))
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install took over 300 s (no network to the npm registry?)")
    if done.returncode != 0:
        pytest.skip(f"npm install failed (no network to the npm registry?): {done.stderr.strip()[-500:]}")
    yield folder


def node(folder: Path, script: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(["node", script, *args], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def test_the_js_client_decodes_and_re_encodes_the_wire_vectors_byte_for_byte(js_client):
    done = subprocess.run(["node", "check_vectors.js", str(ROOT / "docs" / "wire.md")], cwd=js_client,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(results) == 4, done.stderr
    assert all(r["reencoded_equal"] for r in results)
    arrays = next(r for r in results if r["name"] == "arrays")["decoded"]["body"]
    assert arrays["xy"] == {"dtype": "<f4", "shape": [2, 2], "data": [[0.5, -1], [2, 1024]]}


def test_a_js_publisher_is_received_by_a_python_subscriber(js_client, broker):
    sub = Subscriber(broker.ctx, broker.backend, ["test.js"])
    assert sub.wait_subscribed(broker.frontend, 30)
    proc = node(js_client, "publisher.js", "--frontend", broker.frontend, "--topic", "test.js", "--count", "3")
    try:
        got = [sub.recv(TIMEOUT_S * 1000) for _ in range(3)]
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
        sub.close()
    assert proc.returncode == 0, err
    assert all(m is not None for m in got), f"missing messages; publisher said: {out} {err}"
    assert [m.header.seq for m in got] == [0, 1, 2] and sub.stats.gaps == 0 and sub.stats.malformed == 0
    header = got[0].header
    assert header.src == "js-client" and header.host == origin_host() and pid_of_iid(header.iid) == proc.pid
    body = got[2].body
    assert body["n"] == 2 and body["text"] == "hello from js"
    np.testing.assert_array_equal(body["samples"], np.array([[0.5, 1, 1.5], [2, 2.5, 2]], np.float32))
    assert body["samples"].dtype == np.float32
    np.testing.assert_array_equal(body["pcm"], np.array([1, -2, 300, -32768], np.int16))


def test_a_js_publisher_answers_a_local_form_subscription_as_a_bridge_needs(js_client, broker):
    """A bridge (and a shared-memory subscriber) asks for the local form only: the JS publisher sends it too,
    arrays inline, each message once per form."""
    plain = Subscriber(broker.ctx, broker.backend, ["test.js"])
    local = Subscriber(broker.ctx, broker.backend, ["test.js"], shm=True)
    assert plain.wait_subscribed(broker.frontend, 30) and local.wait_subscribed(broker.frontend, 30)
    proc = node(js_client, "publisher.js", "--frontend", broker.frontend, "--topic", "test.js", "--count", "3")
    try:
        got = {name: [sub.recv(TIMEOUT_S * 1000) for _ in range(3)] for name, sub in (("plain", plain),
                                                                                       ("local", local))}
        out, err = proc.communicate(timeout=TIMEOUT_S)
        extra = [sub.recv(500) for sub in (plain, local)]
    finally:
        proc.kill()
        plain.close()
        local.close()
    assert proc.returncode == 0, err
    for name, msgs in got.items():
        assert all(m is not None for m in msgs), f"{name}: missing messages; publisher said: {out} {err}"
        assert [m.header.seq for m in msgs] == [0, 1, 2], name
        np.testing.assert_array_equal(msgs[2].body["pcm"], np.array([1, -2, 300, -32768], np.int16))
    assert extra == [None, None], "each form once"
    assert local.stats.local_skipped == 0 and plain.stats.malformed == local.stats.malformed == 0


def test_a_js_subscriber_prints_what_a_python_publisher_sent_arrays_included(js_client, broker):
    proc = node(js_client, "subscriber.js", "--backend", broker.backend, "--count", "2", "test.py")
    pub = Publisher(broker.ctx, broker.frontend, "py-sender")
    try:
        assert pub.wait_for_subscriber("test.py", TIMEOUT_S), "the JS subscriber's subscription never arrived"
        image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
        pub.publish("test.py", {"image": image, "t": np.array([1.5, -2.25]), "big": np.array([1, -300], ">i4"),
                                "name": "x", "nested": {"k": [1, 2.5]}})
        pub.publish("test.py", {"n": 2}, corr="c-1")
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
        pub.close()
    assert proc.returncode == 0, err
    first, second = [json.loads(line) for line in out.splitlines()]
    assert (first["topic"], first["src"], first["iid"], first["host"]) == ("test.py", "py-sender", pub.iid, pub.host)
    assert first["seq"] == "0" and int(first["ts"]) > 0 and first["gaps"] == 0
    body = first["body"]
    assert body["image"] == {"dtype": "|u1", "shape": [2, 2, 3], "data": image.tolist()}
    assert body["t"] == {"dtype": "<f8", "shape": [2], "data": [1.5, -2.25]}
    assert body["big"] == {"dtype": ">i4", "shape": [2], "data": [1, -300]}
    assert body["name"] == "x" and body["nested"] == {"k": [1, 2.5]}
    assert second["body"] == {"n": 2} and second["corr"] == "c-1" and second["seq"] == "1"
