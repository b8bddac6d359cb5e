"""Progress on a terminal is a bar; anywhere else it is plain lines (no carriage returns)."""

from __future__ import annotations

import io
import os
import pty

from actors.lib.progress import LineProgress, StageProgress, progress


def test_a_pipe_gets_one_line_per_tenth_and_the_last():
    out = io.StringIO()
    with progress(total=40, desc="batch audio", unit="file", file=out) as bar:
        assert isinstance(bar, LineProgress)
        for i in range(40):
            bar.set_postfix_str(f"f{i}.wav 3 s", refresh=False)
            bar.update(1)
        bar.write("batch audio: f7.wav: truncated")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    steps = [line for line in lines if line.startswith("batch audio: ") and " file (" in line]
    assert len(steps) == 10 and steps[0].startswith("batch audio: 4/40 file (10%)")
    assert steps[-1].startswith("batch audio: 40/40 file (100%)") and steps[-1].endswith("f39.wav 3 s")
    assert "batch audio: f7.wav: truncated" in lines


def test_iteration_an_early_stop_and_disable():
    out = io.StringIO()
    bar = progress(range(1, 8), desc="joint", unit="epoch", file=out)
    for epoch in bar:
        bar.set_postfix(loss="0.12")
        if epoch == 5:
            break
    bar.close()
    lines = out.getvalue().splitlines()  # like tqdm: the epoch left by break is not counted
    assert lines[-1].startswith("joint: 4/7 epoch (57%)") and lines[-1].endswith("loss=0.12")
    assert len(lines) == len(set(lines)) == 4  # one per crossed tenth (1, 2, 3, 4 of 7), none twice
    quiet = io.StringIO()
    with progress(total=3, desc="x", file=quiet, disable=True) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


def test_stages_report_each_stage():
    out = io.StringIO()
    stages = StageProgress(file=out)
    for i in range(3):
        stages("outliers", i, 3)
    for f in range(2):
        stages("cross-validation", f, 2)
    stages.close()
    text = out.getvalue()
    assert "outliers: 3/3 step (100%)" in text and "cross-validation: 2/2 step (100%)" in text


def test_a_terminal_gets_the_redrawn_bar():
    main, child = pty.openpty()
    with os.fdopen(child, "w") as tty:
        bar = progress(total=2, desc="train", file=tty, mininterval=0)
        assert not isinstance(bar, LineProgress)
        bar.update(2)
        bar.close()
    assert b"\r" in os.read(main, 4096)
    os.close(main)
