"""The package layout: imports point one way (proto <- codec <- sender, receiver <- benchmarks <- cli; inside
codec, nets and data import no other room, train and runtime import nets and data but not each other) and no
module of the package folders is over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("proto", "codec", "sender", "receiver", "benchmarks", "cli")
MAX_LINES = 400

# room -> the rooms its modules may import (besides itself and the top-level ``avfr``)
ALLOWED: dict[str, set[str]] = {
    "proto": set(),
    "codec.nets": {"proto"},
    "codec.data": {"proto"},
    "codec.train": {"proto", "codec.nets", "codec.data"},
    "codec.runtime": {"proto", "codec.nets", "codec.data"},
    "codec": {"proto", "codec.nets", "codec.data", "codec.train", "codec.runtime"},
    "sender": {"proto", "codec"},
    "receiver": {"proto", "codec"},
    "benchmarks": {"proto", "codec", "sender", "receiver"},
    "cli": {"proto", "codec", "sender", "receiver", "benchmarks"},
}
CODEC_ROOMS = ("codec.nets", "codec.data", "codec.train", "codec.runtime")


def room_of(module: str) -> str | None:
    """``avfr.codec.data.cache`` -> ``codec.data``; ``avfr.sender.track`` -> ``sender``; ``avfr`` -> None."""
    parts = module.split(".")
    if parts[0] != "avfr" or len(parts) < 2:
        return None
    if parts[1] == "codec" and len(parts) >= 3 and f"codec.{parts[2]}" in CODEC_ROOMS:
        return f"codec.{parts[2]}"
    return parts[1]


def allowed(importer: str, imported: str) -> bool:
    if imported == importer:
        return True
    permitted = ALLOWED[importer]
    # a codec room may be reached through the ``avfr.codec`` package only by rooms allowed all of codec
    return imported in permitted or (imported.startswith("codec.") and "codec" in permitted)


def package_modules() -> list[Path]:
    return sorted(p for d in PACKAGE_DIRS for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ["avfr", *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every ``avfr`` import in ``source`` (nested ones included), read in
    ``package`` (for relative imports)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                name = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            for alias in node.names:  # ``from avfr.codec import data`` imports the room ``avfr.codec.data``
                sub = f"{name}.{alias.name}"
                found.append((node.lineno, sub if room_of(sub) in CODEC_ROOMS and room_of(name) == "codec" else name))
    return [(line, name) for line, name in found if name == "avfr" or name.startswith("avfr.")]


def violations(importer: str, imports: list[tuple[int, str]]) -> list[str]:
    return [f"{line}: {importer} imports {name}" for line, name in imports
            if room_of(name) is not None and not allowed(importer, room_of(name))]


def test_every_room_is_known():
    rooms = {room_of(module_name(p)) for p in package_modules()}
    assert rooms <= set(ALLOWED), rooms - set(ALLOWED)
    assert set(CODEC_ROOMS) <= rooms


def test_imports_point_one_way():
    wrong = []
    for path in package_modules():
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        imports = imports_of(path.read_text(), package)
        wrong += [f"{path.relative_to(ROOT)}:{v}" for v in violations(room_of(name), imports)]
    assert not wrong, "imports against the direction proto <- codec <- sender, receiver <- benchmarks <- cli:\n" + \
        "\n".join(wrong)


def test_checker_catches_wrong_imports():
    source = ("import avfr.proto\nfrom avfr.sender.encoder import Encoder\n"
              "def f():\n    from avfr.codec.runtime import sessions\n    from avfr.codec import train\n")
    assert violations("receiver", imports_of(source, "avfr.receiver")) == ["2: receiver imports avfr.sender.encoder"]
    assert violations("codec.train", imports_of(source, "avfr.codec.train")) == [
        "2: codec.train imports avfr.sender.encoder", "4: codec.train imports avfr.codec.runtime"]
    assert violations("codec.nets", imports_of(source, "avfr.codec.nets")) == [
        "2: codec.nets imports avfr.sender.encoder", "4: codec.nets imports avfr.codec.runtime",
        "5: codec.nets imports avfr.codec.train"]
    assert violations("proto", imports_of("from avfr.codec.data import audio\n", "avfr.proto")) == [
        "1: proto imports avfr.codec.data"]
    assert violations("cli", imports_of(source, "avfr.cli")) == []
    relative = "from ..runtime import sessions\nfrom . import losses\n"  # read in avfr.codec.train
    assert violations("codec.train", imports_of(relative, "avfr.codec.train")) == [
        "1: codec.train imports avfr.codec.runtime"]


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_under_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (limit {MAX_LINES})"


@pytest.mark.parametrize("room", ["codec.nets", "codec.data", "codec.train", "codec.runtime", "benchmarks"])
def test_room_init_says_what_it_holds_and_exports_resolve(room):
    import importlib

    package = importlib.import_module(f"avfr.{room}")
    assert package.__doc__ and "import" in package.__doc__.lower(), f"avfr.{room} lacks its two-line docstring"
    folder = ROOT / room.replace(".", "/")
    for name in package.__all__:
        # a re-exported name that is also a module's name would shadow `from avfr.<room> import <module>`
        assert not (folder / f"{name}.py").exists(), f"avfr.{room} exports {name!r}, also a module of the room"
        assert getattr(package, name) is not None, f"avfr.{room}.{name}"
