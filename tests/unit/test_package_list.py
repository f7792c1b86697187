"""pyproject.toml lists the wheel's packages by hand (see its comment): a new
subpackage missing there installs without its modules, which only the
(slow) wheel test would notice. Compare the list with the source tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_gateway_package_ships_in_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "gateway").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk, "no packages found"
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
