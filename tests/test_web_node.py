"""The browser receiver's JavaScript under node's own test runner (`node --test web/test/NAME.test.mjs`).

One pytest per test file, so a failure names the file; the node output is shown on failure. The files need
no npm packages (they test the wire decoder, playout and mel code, not onnxruntime-web).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[1] / "web"
TEST_FILES = sorted((WEB / "test").glob("*.test.mjs"))
NODE = shutil.which("node")


def _node_major() -> int:
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout  # "v20.20.2"
    return int(out.strip().lstrip("v").split(".")[0])


@pytest.mark.skipif(NODE is None, reason="node is not installed (the web receiver's tests need node >= 20)")
@pytest.mark.parametrize("test_file", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_node(test_file: Path) -> None:
    if _node_major() < 20:
        pytest.skip("node >= 20 needed for node:test")
    proc = subprocess.run([NODE, "--test", str(test_file)], cwd=WEB, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"node --test {test_file.name} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"


def test_web_tests_exist() -> None:
    assert TEST_FILES, f"no web/test/*.test.mjs under {WEB}"


@pytest.mark.parametrize("module", sorted((WEB / "src").glob("*.mjs")), ids=lambda p: p.name)
def test_web_module_under_400_lines(module: Path) -> None:
    lines = module.read_text().count("\n")
    assert lines <= 400 or module.name == "mesh_edges.mjs", f"{module.name}: {lines} lines (the house limit is 400)"
