"""Packaging: one import package `avfr`, installable as a plain wheel as well as editable."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
    )
    (whl,) = out.glob("avfr_codec-*.whl")
    return whl


def test_wheel_holds_only_the_avfr_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"avfr", next(t for t in top if t.endswith(".dist-info"))}
    for sub in ("proto", "codec", "codec/nets", "codec/data", "codec/train", "codec/runtime", "sender", "receiver",
                "benchmarks", "cli"):
        assert f"avfr/{sub}/__init__.py" in names
    assert "avfr/models/avfr-small.json" in names  # the shipped weights travel with the package
    assert "avfr/proto/SPEC.md" in names
    for page in ("web/index.html", "web/package-lock.json", "web/src/app.mjs", "web/src/decoder.mjs"):
        assert f"avfr/{page}" in names  # the browser receiver's page (`avfr-codec send --web`)
    assert not any("node_modules" in n or n.startswith("avfr/web/test/") for n in names)
    assert "avfr/benchmarks/rate_quality.py" in names  # `avfr-codec bench` is part of the product
    assert not any(n.startswith("avfr/tests/") or n.startswith("avfr/docs/") for n in names)


def test_wheel_installs_and_imports(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
    )
    code = ("import avfr, avfr.proto, avfr.codec, avfr.cli, avfr.benchmarks.rate_quality, avfr.codec.runtime.sessions; "
            "print(avfr.__file__, avfr.__version__)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True)
    assert res.stdout.startswith(str(target / "avfr" / "__init__.py"))


def test_editable_install_maps_the_repository() -> None:
    import avfr

    assert Path(avfr.__file__).resolve() == ROOT / "__init__.py"
