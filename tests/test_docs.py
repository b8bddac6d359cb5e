"""The docs match the tree: the README's layout table, the README's commands, no committed lock files."""

from __future__ import annotations

import re
import subprocess

from actors.registry import BUILTIN_KINDS
from tests.support import ROOT

TOP_LEVEL = ["supervisor.py", "config", "bus", "actors", "models", "tests", "bench", "docs", "examples", "setup.cfg"]
"""What the repository's top level holds (DESIGN.md, "Layout"), less files every repo has."""


def layout_rows() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\| `([^`]+)` \| (.+) \|$", line)
        if m:
            rows.append((m.group(1).rstrip("/"), m.group(2)))
    return rows


def test_layout_table_names_each_part_once_and_every_part_exists():
    rows = layout_rows()
    paths = [p for p, _ in rows]
    assert len(paths) == len(set(paths)), f"listed twice: {sorted({p for p in paths if paths.count(p) > 1})}"
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"the layout table lists paths that do not exist: {missing}"
    kinds = {f"actors/{kind}" for kind in BUILTIN_KINDS}
    unlisted = [p for p in TOP_LEVEL + sorted(kinds) + ["actors/lib", "bus/recording"] if p not in paths]
    assert not unlisted, f"the layout table leaves out: {unlisted}"
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "actors").glob("*/__init__.py")}
    assert packages - {"actors/lib"} == kinds, "every package under actors/ is a registered kind (or the library)"
    for kind in BUILTIN_KINDS:
        assert f"kind `{kind}`" in dict(rows)[f"actors/{kind}"]


def test_no_lock_files_are_committed():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert not [f for f in tracked.splitlines() if f.endswith(".lock")]


def test_readme_commands_use_the_venv():
    """Every command in the README and the docs runs the venv's tools, never a bare `python`: the command
    blocks and the inline `...` commands alike."""
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
        lines = [line for block in blocks for line in block.splitlines()]
        lines += re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.S))
        bare = [line for line in lines if re.match(r"\s*(python3?|pip3?) ", line)
                and not line.lstrip().startswith("python3 -m venv ")]
        assert not bare, f"bare python or pip in {doc.name} commands: {bare}"
