"""The kind registry: an outside kind registered by config runs under the supervisor; listing stays lazy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT, WAIT_S, clean_env

TOY = '[kinds]\ntoy = "tests.toykind:SPEC"\n\n[actors."toy@one"]\nsettings = { factor = 3 }\n'


@pytest.mark.slow
def test_a_kind_defined_in_tests_runs_under_the_supervisor(supervisor_factory, collector_factory):
    sup = supervisor_factory(TOY)
    status = sup.wait_running("toy@one")
    assert next(a for a in status["actors"] if a["name"] == "toy@one")["kind"] == "toy"
    out = collector_factory(sup, ["toy.out"])
    done = sup.cli("inject", "toy.in", '{"n": 7}')
    assert done.returncode == 0, done.stderr
    msg = out.wait_for(lambda m: m.topic == "toy.out", what="the toy's answer")
    assert msg.body == {"n": 21, "by": "toy@one"}
    # validate runs the toy's own preflight and imports its actor in a fresh process
    done = sup.cli("validate")
    assert "toy@one factor" in done.stdout and "x3" in done.stdout
    assert any(line.startswith("OK") and "actor kind toy" in line for line in done.stdout.splitlines()), done.stdout


def test_an_outside_kind_has_its_settings_validated(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("replace_default_actors = true\n" + TOY.replace("factor = 3", 'factor = 0, colour = "red"'))
    done = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "config", "show", "-c", str(path)],
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 2
    assert "actors.\"toy@one\".settings.factor" in done.stderr and "actors.\"toy@one\".settings.colour" in done.stderr
    path.write_text('[kinds]\ntoy = "tests.nosuchmodule:SPEC"\n')
    done = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "config", "show", "-c", str(path)],
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 2 and "kinds.toy" in done.stderr and "tests.nosuchmodule" in done.stderr


def test_listing_kinds_and_status_never_import_torch_or_tensorflow():
    code = ("import json, sys\n"
            "from actors.registry import Registry, load_config\n"
            "config = load_config(None, environ={})\n"
            "registry = Registry.for_config(config)\n"
            "specs = registry.specs(); commands = registry.commands()\n"
            "heavy = [m for m in ('torch', 'tensorflow', 'cv2', 'faster_whisper', 'ctranslate2') if m in sys.modules]\n"
            "print(json.dumps({'kinds': [s.name for s in specs], 'heavy': heavy}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                          timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["kinds"]) == 12 and result["heavy"] == []
