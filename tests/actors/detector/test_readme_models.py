"""The README's vision commands, as printed, on a fresh install: dataset, train, promote, rollback,
cleanup, verify; afterwards the checkout is unchanged and everything went to the user store."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from actors.lib.modelstore import ModelStore, user_models_dir
from tests.support import ROOT, clean_env

pytestmark = pytest.mark.slow

SMALLER = {"--n": "60"}
"""Training on two shared cores is slow: a smaller dataset than printed..."""
TRAIN_FLAGS = ["--epochs", "2", "--patience", "1", "--no-progress"]
"""...and few epochs; every other word runs as printed."""


def vision_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Vision", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == [".venv/bin/sensorium", "models"] and words[2] != "extract" or \
                words[:3] == [".venv/bin/python", "-m", "actors.lib.scenes"]:
            commands.append(words)
    return commands


def git_status(*paths: str) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def test_the_readme_model_commands_work_on_a_fresh_install_and_leave_the_checkout_alone(tmp_path, user_data_dir):
    commands = vision_commands()
    assert [w[2] for w in commands if w[1] == "models"] == ["list", "history", "train", "train", "promote",
                                                             "rollback", "cleanup", "verify"], commands
    before = git_status()
    data = tmp_path / "crosses"
    outputs = []
    for words in commands:
        argv = [str(data) if w == "/tmp/crosses" else w for w in words]
        argv = [SMALLER.get(argv[i - 1], w) if i else w for i, w in enumerate(argv)]
        if argv[0] == ".venv/bin/sensorium":
            argv = [sys.executable, str(ROOT / "supervisor.py"), *argv[1:]]
            if argv[3] == "train":
                argv += TRAIN_FLAGS
        else:
            argv = [sys.executable, *argv[1:]]
        done = subprocess.run(argv, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(words)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    assert "circle: u1 active" in "".join(outputs) or "already active" in "".join(outputs)
    assert any("circle: v1 active (rolled back from u1 to v1)" in out for out in outputs), outputs

    store = ModelStore.layered(user=user_models_dir())
    assert store.root == user_data_dir / "sensorium" / "models"
    assert store.active("cross") == "u1" and store.active("circle") == "1"
    assert sorted(store.entry("circle")["versions"]) == ["1", "u1"]
    assert git_status() == before  # nothing written into the checkout (models/ included)
