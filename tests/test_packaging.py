"""What a non-editable install (the Docker image) ships: every Python folder is a package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest


def test_every_python_folder_is_a_package(project_root):
    for top in ("exporter", "workers", "web"):
        for folder in {p.parent for p in (project_root / top).rglob("*.py")}:
            assert (folder / "__init__.py").exists(), f"{folder} has Python files but no __init__.py: a wheel would leave it out"


@pytest.mark.slow
def test_the_wheel_builds_without_setuptools_warnings_and_ships_templates_and_assets(project_root, tmp_path):
    """`make run` builds the package: a newcomer's first screen is not a page of "Package would be ignored"."""
    source = tmp_path / "source"
    for name in ("setup.cfg", "pyproject.toml", "README.md", "celeryconfig.py"):
        source.mkdir(exist_ok=True)
        shutil.copy(project_root / name, source / name)
    for top in ("exporter", "web", "workers", "cli"):
        shutil.copytree(project_root / top, source / top, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert "Package would be ignored" not in built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("exporter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("web/templates/base.html", "web/templates/pages/new.html", "web/static/picker.js", "exporter/migrations/script.py.mako", "cli/main.py", "celeryconfig.py"):
        assert shipped in names, shipped
