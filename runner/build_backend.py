"""A PEP 517 backend that builds the judge card runner's wheel from the app's own modules (see pyproject.toml).

Standard library only, so installing the runner downloads no build tool. The modules are taken from ./judges (an
sdist made by build_sdist holds them) or else from ../judges (a checkout of the repository).
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _config() -> dict[str, Any]:
    return tomllib.loads((HERE / "pyproject.toml").read_text(encoding="utf-8"))


def _source_root() -> Path:
    return HERE if (HERE / "judges" / "card.py").is_file() else HERE.parent


def _metadata(project: dict[str, Any]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project['description']}",
        f"Requires-Python: {project['requires-python']}",
        f"License: {project['license']}",
    ]
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    for extra, deps in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {dep}; extra == "{extra}"' for dep in deps]
    return "\n".join(lines) + "\n"


def _dist_name(project: dict[str, Any]) -> str:
    return f"{project['name'].replace('-', '_')}-{project['version']}"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: Any = None) -> list[str]:
    return []


def build_wheel(wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None) -> str:
    config = _config()
    project = config["project"]
    root = _source_root()
    dist = _dist_name(project)
    files: dict[str, bytes] = {}
    for module in config["tool"]["annotate-runner"]["modules"]:
        files[module] = (root / module).read_bytes()
    info = f"{dist}.dist-info"
    files[f"{info}/METADATA"] = _metadata(project).encode()
    wheel_info = "Wheel-Version: 1.0\nGenerator: annotate build_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/WHEEL"] = wheel_info.encode()
    scripts = "".join(f"{name} = {target}\n" for name, target in project.get("scripts", {}).items())
    files[f"{info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    filename = f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return filename


def build_sdist(sdist_directory: str, config_settings: Any = None) -> str:
    config = _config()
    project = config["project"]
    dist = _dist_name(project)
    root = _source_root()
    members = {"pyproject.toml": HERE / "pyproject.toml", "build_backend.py": HERE / "build_backend.py"}
    members |= {module: root / module for module in config["tool"]["annotate-runner"]["modules"]}
    filename = f"{dist}.tar.gz"
    with tarfile.open(Path(sdist_directory) / filename, "w:gz") as sdist:
        pkg_info = _metadata(project).encode()
        entry = tarfile.TarInfo(f"{dist}/PKG-INFO")
        entry.size = len(pkg_info)
        sdist.addfile(entry, io.BytesIO(pkg_info))
        for name, path in members.items():
            sdist.add(path, arcname=f"{dist}/{name}")
    return filename
