"""The detector actor under a real supervisor, fed through the bus.

Frames go publisher -> broker -> detector process -> broker -> collector;
nothing is called in-process.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import zmq

from actors.detector import metrics as M
from actors.detector.make_weights import HELD_OUT_SEED0
from actors.lib.scenes import SHIPPED_KINDS, random_scene
from bus.pubsub import Publisher
from tests.actors.detector.conftest import SIGNALS, detections_for, detector_toml
from tests.support import WAIT_S, wait_until

pytestmark = pytest.mark.slow

N_HELD_OUT = 60


def ctl(where, replies, cmd: str, **args):
    """Send a command to the detector and return its reply body."""
    corr = uuid.uuid4().hex
    pub = Publisher(zmq.Context.instance(), where.frontend, "test@ctl")
    try:
        assert pub.wait_for_subscriber("ctl.detector", WAIT_S)
        pub.publish("ctl.detector", {"cmd": cmd, "args": args}, corr=corr)
        return replies.wait_for(lambda m: m.topic == "ctl.reply" and m.header.corr == corr, what=f"reply to {cmd}").body
    finally:
        pub.close()


def test_shipped_heads_find_held_out_objects_through_the_bus(supervisor_factory, collector_factory, feeder_factory,
                                                            shipped_store):
    sup = supervisor_factory(detector_toml(shipped_store.root))
    sup.wait_running("detector", timeout_s=120)
    out = collector_factory(sup, ["detect."])
    feeder = feeder_factory(sup)
    per_signal: dict[str, list] = {s: [] for s in SIGNALS}
    for i in range(N_HELD_OUT):
        scene = random_scene(HELD_OUT_SEED0 + i, SHIPPED_KINDS)
        feeder.send(scene.image, frame_id=i)  # one at a time: the detector keeps only the newest frame
        for s in SIGNALS:
            body = detections_for(out, s, i).body
            assert body["boxes"].dtype == np.float32 and body["boxes"].shape[1] == 4
            assert body["scores"].shape == (body["boxes"].shape[0],) and body["latency_ms"] > 0
            assert body["head_version"] == shipped_store.active(s) == "1" and body["backbone_version"] == "1"
            per_signal[s].append((np.array(body["boxes"]), np.array(body["scores"]), scene.boxes_of(s)))
    for s in SIGNALS:
        m = M.score(per_signal[s])
        assert m.tp + m.fn > 30, f"{s}: too few objects in the held-out scenes to judge"
        assert m.f1 >= 0.9, f"{s}: {m}"


def test_bad_frames_are_counted_and_dropped_and_stale_frames_skipped(supervisor_factory, collector_factory,
                                                                    feeder_factory, shipped_store):
    sup = supervisor_factory(detector_toml(shipped_store.root, ["circle"]))
    sup.wait_running("detector", timeout_s=120)
    out = collector_factory(sup, ["detect.", "sys.heartbeat"])
    feeder = feeder_factory(sup)
    good = random_scene(HELD_OUT_SEED0).image
    feeder.send_body({"image": good.astype(np.float32), "frame_id": 1, "fps": 5.0})   # wrong dtype
    feeder.send_body({"image": good[:, :, 0].copy(), "frame_id": 2, "fps": 5.0})     # wrong shape
    feeder.send_body({"frame_id": 3, "fps": 5.0})                                    # no image
    feeder.send(good, frame_id=4)
    detections_for(out, "circle", 4)
    # A burst: the detector works on the newest frame and skips the ones behind it.
    for fid in range(100, 160):
        feeder.send(good, frame_id=fid)
    detections_for(out, "circle", 159)
    done = {m.body["frame_id"] for m in out.messages if m.topic == "detect.circle"}
    assert not done & {1, 2, 3}

    def settled(m):
        extra = m.body.get("extra", {})
        return m.header.src == "detector" and extra.get("frames", 0) >= len(done) and extra.get("rejected") == 3
    hb = out.wait_for(lambda m: m.topic == "sys.heartbeat" and settled(m), what="detector heartbeat").body
    extra = hb["extra"]
    assert hb["counters"]["dropped"] >= 3 and extra["rejected"] == 3 and extra["detect_ms"]["p50"] > 0
    assert extra["skipped_stale"] >= 1 and extra["skipped_stale"] + extra["frames"] == 61
    assert len(done & set(range(100, 160))) < 60


def test_heads_load_unload_promote_rollback_at_run_time(supervisor_factory, collector_factory, feeder_factory,
                                                       user_store):
    # circle u1: the shipped weights again, registered with a lower F1, so it waits for a manual promote.
    data = user_store.read_verified("circle", 1)
    reg = user_store.add_head("circle", data, backbone=1, metrics={"f1": 0.1}, notes="test copy")
    assert reg.version == "u1" and not reg.promoted
    sup = supervisor_factory(detector_toml(user_store.base.root, user_dir=user_store.root))
    sup.wait_running("detector", timeout_s=120)
    out = collector_factory(sup, ["detect.", "ctl.reply", "sys.model"])
    feeder = feeder_factory(sup)
    image = random_scene(HELD_OUT_SEED0 + 1).image
    fid = iter(range(1000))

    def frame_topics() -> dict[str, str]:
        """Signal -> head version of the detections of one frame. A second frame
        follows it: once that one's answer is in, every answer to the first is too."""
        n = next(fid)
        feeder.send(image, n)
        detections_for(out, "triangle", n)
        feeder.send(image, n + 1000)
        detections_for(out, "triangle", n + 1000)
        latest = {}
        for s in SIGNALS:
            found = [m for m in out.messages if m.topic == f"detect.{s}" and m.body["frame_id"] == n]
            if found:
                latest[s] = found[0].body["head_version"]
        return latest

    shipped = {"circle": "1", "square": "1", "triangle": "1"}
    assert ctl(sup, out, "heads")["result"] == shipped
    assert frame_topics() == shipped
    reply = ctl(sup, out, "unload_head", signal="circle")
    assert reply["ok"] and reply["result"]["heads"] == {"square": "1", "triangle": "1"}
    assert frame_topics() == {"square": "1", "triangle": "1"}
    assert ctl(sup, out, "load_head", signal="circle")["result"]["version"] == "1"
    assert frame_topics() == shipped
    reply = ctl(sup, out, "promote", signal="circle", version="u1")
    assert reply["ok"] and reply["result"]["loaded"] == "u1" and user_store.active("circle") == "u1"
    assert frame_topics()["circle"] == "u1"
    switch = out.wait_for(lambda m: m.topic == "sys.model" and m.body["new_version"] == "u1", what="sys.model").body
    assert switch == {"actor": "detector", "model": "circle", "old_version": "1", "new_version": "u1",
                      "reason": "ctl promote"}
    reply = ctl(sup, out, "rollback", signal="circle")
    assert reply["ok"] and reply["result"]["loaded"] == "1" and user_store.active("circle") == "1"
    assert frame_topics()["circle"] == "1"
    bad = ctl(sup, out, "load_head", signal="nosuch")
    assert not bad["ok"] and "nosuch" in bad["error"]
    assert ctl(sup, out, "heads")["result"] == shipped


def test_the_running_detector_follows_promote_and_rollback_from_the_cli(supervisor_factory, collector_factory,
                                                                       feeder_factory, user_store):
    """`sensorium models promote/rollback` in another terminal: the detector switches without a restart."""
    data = user_store.read_verified("circle", 1)
    assert not user_store.add_head("circle", data, backbone=1, metrics={"f1": 0.1}).promoted  # u1 waits
    sup = supervisor_factory(detector_toml(user_store.base.root, ["circle"], user_dir=user_store.root))
    sup.wait_running("detector", timeout_s=120)
    out = collector_factory(sup, ["detect.", "sys.model"])
    feeder = feeder_factory(sup)
    image = random_scene(HELD_OUT_SEED0 + 2).image
    frame_ids = iter(range(100_000))

    def runs(version: str) -> None:
        """Frames go on until the detections come from ``version`` (generous: the benchmark times it)."""
        def seen():
            n = next(frame_ids)
            feeder.send(image, n)
            return detections_for(out, "circle", n).body["head_version"] == version
        wait_until(seen, 60, f"detect.circle from {version}")

    runs("1")
    sup.cli("models", "promote", "circle", "u1", check=True)
    runs("u1")
    switch = out.wait_for(lambda m: m.topic == "sys.model" and m.body["new_version"] == "u1", what="switch").body
    assert (switch["model"], switch["old_version"], switch["reason"]) == ("circle", "1", "registry changed")
    sup.cli("models", "rollback", "circle", check=True)
    runs("1")
    assert out.wait_for(lambda m: m.topic == "sys.model" and m.body["old_version"] == "u1", what="switch back")
    assert "head_switched" in (sup.folder / "logs" / "detector.log").read_text()


def test_corrupted_weights_are_refused_with_an_alert_and_the_previous_version_used(
        supervisor_factory, collector_factory, feeder_factory, user_store):
    data = user_store.read_verified("square", 1)
    user_store.add_head("square", data, backbone=1, metrics={"f1": 1.0})
    user_store.promote("square", "u1")
    assert user_store.active("square") == "u1"
    path = user_store.path("square", "u1")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    sup = supervisor_factory(detector_toml(user_store.base.root, ["square"], user_dir=user_store.root))
    alerts = collector_factory(sup, ["monitor.alert", "detect.", "ctl.reply"])
    sup.wait_running("detector", timeout_s=120)
    alert = alerts.wait_for(lambda m: m.topic == "monitor.alert" and m.body["metric"] == "model.sha256",
                            what="sha256 alert").body
    assert "square u1" in alert["message"] and alert["actor"] == "detector"
    feeder = feeder_factory(sup)
    feeder.send(random_scene(HELD_OUT_SEED0).image, 7)
    assert detections_for(alerts, "square", 7).body["head_version"] == "1"
    # Asking for the corrupt version at run time: refused, the loaded v1 stays.
    reply = ctl(sup, alerts, "load_head", signal="square", version="u1")
    assert reply["ok"] and reply["result"]["version"] == "1"
    assert len([m for m in alerts.messages if m.topic == "monitor.alert" and m.body["metric"] == "model.sha256"]) >= 2


def test_synthetic_camera_to_detector_pipeline(supervisor_factory, collector_factory, shipped_store):
    """The default pipeline's vision part: what `sensorium tap detect.` shows."""
    sup = supervisor_factory(f"""
[actors.camera]
settings = {{ source = "synthetic", width = 320, height = 240, min_fps = 1.0, max_fps = 5.0, objects = 6 }}
{detector_toml(shipped_store.root)}
after = ["camera"]
""")  # 320x240x3 = 230,400 bytes: above the shared-memory threshold, so the camera draws on loan
    sup.wait_running("camera", "detector", timeout_s=120)
    out = collector_factory(sup, ["detect.", "sys.heartbeat"])
    for s in SIGNALS:
        out.wait_for(lambda m, s=s: m.topic == f"detect.{s}" and len(m.body["boxes"]) > 0
                     and float(m.body["scores"].max()) > 0.5, what=f"a confident {s} detection")
    # The camera hears the detector's latency; a fast detector keeps it at max_fps.
    hb = out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "camera"
                      and m.body["extra"]["detector_latency_ms"], what="camera hearing the detector latency").body
    assert hb["extra"]["fps"] == 5.0 and hb["extra"]["frames"] > 0
    # Frames drawn on loan went to the detector as references through its pipe, not through the broker.
    assert hb["extra"]["frames_on_loan"] > 0 and hb["extra"]["pipe_writes"] > 0


def test_detector_without_a_model_store_exits_with_the_reason(ipc_dir, tmp_path):
    import subprocess
    import sys

    from tests.support import ROOT, clean_env, write_config

    config = write_config(ipc_dir, detector_toml(tmp_path / "nothing-here"))
    done = subprocess.run([sys.executable, "-m", "actors", "detector", "--name", "detector", "-c", str(config)],
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "nothing-here" in done.stdout + done.stderr and "setup_failed" in done.stdout + done.stderr
