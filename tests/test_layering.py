"""The import contract (DESIGN.md, "Layout"), read from the source with ``ast``, never by importing.

* ``config`` imports nothing of the project;
* ``bus`` imports only ``config``;
* the shared library (``actors/lib``) imports ``bus`` and ``config``;
* the actor runtime (``actors/__init__``, ``base``, ``spec``, ``registry``, ``preflight``,
  ``__main__``) imports the library, ``bus`` and ``config``;
* a kind (``actors/<kind>/``) imports the runtime, the library, ``bus``, ``config`` and itself,
  never another kind;
* ``supervisor.py`` reaches kinds only through the registry, and nothing imports it.

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT

RUNTIME = {"actors", "actors.base", "actors.spec", "actors.registry", "actors.preflight", "actors.__main__"}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.imported}: {self.rule}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of a project module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            # `from actors import base` imports actors.base: count the submodule when there is one.
            folder = root / module.replace(".", "/")
            names = [f"{module}.{alias.name}" if (folder / f"{alias.name}.py").exists()
                     or (folder / alias.name / "__init__.py").exists() else module
                     for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("actors", "bus", "config", "supervisor"):
                found.append((node.lineno, name))
    return found


def kind_of(module: str) -> str | None:
    """The kind package a module belongs to, or None for the runtime and the library."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "actors" and module not in RUNTIME and parts[1] != "lib":
        return parts[1]
    return None


def layer(module: str) -> str:
    top = module.split(".")[0]
    if top in ("config", "bus", "supervisor"):
        return top
    if module == "actors.lib" or module.startswith("actors.lib."):
        return "lib"
    if module in RUNTIME:
        return "runtime"
    return "kind"


ALLOWED = {
    "config": {"config"},
    "bus": {"bus", "config"},
    "lib": {"lib", "bus", "config"},
    "runtime": {"runtime", "lib", "bus", "config"},
    "kind": {"kind", "runtime", "lib", "bus", "config"},
    "supervisor": {"runtime", "lib", "bus", "config"},
}


def violations(root: Path = ROOT) -> list[Violation]:
    found = []
    files = [root / "supervisor.py", *sorted((root / "config").rglob("*.py")), *sorted((root / "bus").rglob("*.py")),
             *sorted((root / "actors").rglob("*.py"))]
    for path in files:
        me = module_name(path, root)
        mine = layer(me)
        for line, imported in sorted(set(project_imports(path, root))):
            theirs = layer(imported)
            rel = str(path.relative_to(root))
            if imported.split(".")[0] == "supervisor":
                found.append(Violation(rel, line, imported, "nothing imports supervisor.py"))
            elif theirs not in ALLOWED[mine]:
                found.append(Violation(rel, line, imported, f"{mine} may import only {sorted(ALLOWED[mine])}"))
            elif theirs == "kind" and mine == "kind" and kind_of(imported) != kind_of(me):
                found.append(Violation(rel, line, imported, "kinds never import another kind (talk over the bus)"))
    return found


def test_every_import_follows_the_layering():
    problems = violations()
    assert not problems, "import contract broken:\n" + "\n".join(map(str, problems))


def test_the_check_catches_what_it_is_for(tmp_path):
    """The rule reader itself: a planted bad import in each layer is named with its file, line and rule."""
    assert layer("actors.vad.actor") == "kind" and kind_of("actors.vad.actor") == "vad"
    assert layer("actors.lib.audio.decode") == "lib" and layer("actors.registry") == "runtime"
    planted = {
        "config/x.py": "import bus.envelope\n",
        "bus/y.py": "\n\nfrom actors.base import Actor\n",
        "actors/lib/z.py": "def f():\n    from actors.vad import SPEC\n",
        "actors/vad/w.py": "from ..speech.settings import SpeechSettings\n",
        "supervisor.py": "from actors.detector.actor import DetectorActor\n",
        "actors/registry.py": "import supervisor\n",
    }
    for rel, text in planted.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = {(v.path, v.line): v for v in violations(tmp_path)}
    assert set(found) == {("config/x.py", 1), ("bus/y.py", 3), ("actors/lib/z.py", 2), ("actors/vad/w.py", 1),
                          ("supervisor.py", 1), ("actors/registry.py", 1)}, found
    assert "another kind" in found[("actors/vad/w.py", 1)].rule
    assert "nothing imports supervisor.py" in found[("actors/registry.py", 1)].rule
    assert found[("config/x.py", 1)].imported == "bus.envelope"
