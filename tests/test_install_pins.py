"""Installing: pyproject.toml bounds the packages pip would otherwise backtrack through (jax/jaxlib releases
that need numpy 2, ~85 MB a jaxlib wheel), and the README's quick test subset names real tests."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _dependencies() -> dict[str, Requirement]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {Requirement(d).name.lower(): Requirement(d) for d in deps}


@pytest.mark.parametrize("name", ["jax", "jaxlib"])
def test_jax_is_bounded_below_the_releases_that_need_numpy_2(name):
    spec = _dependencies()[name].specifier
    assert "0.7.1" in spec  # the newest with numpy 1.26 (Python >= 3.11)
    assert "0.6.2" in spec  # the newest for Python 3.10
    for newer in ("0.7.2", "0.8.0", "0.10.2"):  # numpy >= 2: mediapipe 0.10.21 pins numpy < 2
        assert newer not in spec


@pytest.mark.parametrize("name", ["jax", "jaxlib"])
def test_the_installed_jax_fits_the_bound_and_numpy_1(name):
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed")
    assert version in _dependencies()[name].specifier
    numpy = [Requirement(r) for r in importlib.metadata.requires(name) or [] if Requirement(r).name == "numpy"]
    assert numpy and all("1.26.4" in r.specifier for r in numpy if not r.marker)


def test_readme_quick_subset_names_existing_tests():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"A quick subset.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README: the quick test subset is missing"
    args = [a for a in shlex.split(block.group(1).replace("\\\n", " ")) if a.startswith("tests/")]
    assert args
    for arg in args:
        path, _, test = arg.partition("::")
        files = sorted(ROOT.glob(path))
        assert files, f"README quick subset: no {path}"
        if test:
            assert f"def {test}(" in files[0].read_text(), f"README quick subset: no {arg}"
    assert 'markers = ["slow' in (ROOT / "pyproject.toml").read_text()  # `-m "not slow"` in the README
