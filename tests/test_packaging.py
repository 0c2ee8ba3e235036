"""What a non-editable install (the Docker image) ships: every Python folder is a package."""

from __future__ import annotations


def test_every_python_folder_is_a_package(project_root):
    for top in ("exporter", "workers", "web"):
        for folder in {p.parent for p in (project_root / top).rglob("*.py")}:
            assert (folder / "__init__.py").exists(), f"{folder} has Python files but no __init__.py: a wheel would leave it out"
