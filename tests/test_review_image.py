"""The review desk's image agrees with the project: no Docker engine runs here, so these offline checks stand in
for building it: the modules it copies are all the desk imports, its packages are the `review` extra, pinned
as the rest of the project pins them, and it serves behind IAP on Cloud Run's port."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from review.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "review" / "Dockerfile").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
REVIEW_EXTRA = [Requirement(line) for line in PYPROJECT["project"]["optional-dependencies"]["review"]]
# The image's lock and the development lock agree on every package they share (tests/test_dockerfile.py).
LOCKS = ("requirements.lock", "requirements-dev.lock")
HEAVY = ("apache_beam", "keras", "keras_hub", "jax", "tensorflow", "handlers")


def _desk_modules() -> dict[str, str]:
    """The modules `python -m review` and `python -m review.export` load, by name, with their files."""
    script = (
        "import json, sys, review.main, review.export\n"
        "print(json.dumps({name: getattr(module, '__file__', None) for name, module in sys.modules.items()}))"
    )
    output = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(output.stdout)


def _copied_paths() -> list[str]:
    copies = [line.split()[1:-1] for line in DOCKERFILE.splitlines() if line.startswith("COPY ")]
    return [path for sources in copies for path in sources]


def test_the_image_copies_every_project_module_the_desk_loads_and_no_model_code():
    modules = _desk_modules()
    assert not [name for name in modules if name.split(".")[0] in HEAVY], "the desk runs without Beam, Keras or JAX"
    # The virtual environment may live inside the checkout (.venv): its packages are not the project's files.
    installed = Path(sys.prefix)
    project_files = sorted(
        Path(path).relative_to(ROOT).as_posix() for path in modules.values()
        if path and Path(path).is_relative_to(ROOT) and not Path(path).is_relative_to(installed)
    )
    copied = _copied_paths()
    missing = [
        path for path in project_files
        if not any(path == source or path.startswith(source.rstrip("/") + "/") for source in copied)
    ]
    assert project_files and missing == [], f"loaded by the desk, not copied into its image: {missing}"


def _third_party_imports() -> set[str]:
    """Top-level names that review/ imports, other than the standard library's and the project's own."""
    names = set()
    for path in (ROOT / "review").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"review", "pipeline", "__future__"}


def test_every_package_the_desk_imports_is_in_the_review_extra():
    distributions = importlib.metadata.packages_distributions()
    extra = {canonicalize_name(requirement.name) for requirement in REVIEW_EXTRA}
    needed = {name: {canonicalize_name(d) for d in distributions[name]} for name in _third_party_imports()}
    assert {name: dists for name, dists in needed.items() if not dists & extra} == {}


def test_the_review_extra_pins_as_the_core_dependencies_and_the_locks_do():
    assert all(str(requirement.specifier).startswith("==") for requirement in REVIEW_EXTRA), "every desk package pinned"
    core = {
        canonicalize_name(Requirement(line).name): Requirement(line).specifier
        for line in PYPROJECT["project"]["dependencies"]
    }
    lines = [line for name in LOCKS for line in (ROOT / name).read_text().splitlines()]
    pins = [line.split(" ")[0].split("==") for line in lines]
    lock = {canonicalize_name(pin[0]): pin[1] for pin in pins if len(pin) == 2 and not pin[0].startswith("#")}
    for requirement in REVIEW_EXTRA:
        name, version = canonicalize_name(requirement.name), str(requirement.specifier).removeprefix("==")
        if name in core:
            assert str(core[name]) == f"=={version}", name
        if name in lock:
            assert lock[name] == version, f"{name}: {version} here, {lock[name]} in the locks"


def test_the_image_installs_the_review_extra_and_checks_it():
    assert "['optional-dependencies']['review']" in DOCKERFILE and "pip check" in DOCKERFILE
    python = re.search(r"ARG PYTHON_IMAGE=python:(\d+\.\d+)", DOCKERFILE)[1]
    assert PYPROJECT["project"]["requires-python"] == f">={python},<3.{int(python.split('.')[1]) + 1}"


def test_the_image_serves_behind_iap_on_cloud_runs_port_as_a_user():
    command = next(line for line in DOCKERFILE.splitlines() if line.startswith("CMD "))
    assert "--host 0.0.0.0" in command and "${PORT:-8080}" in command and "--auth iap" in command
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, flags=re.M)


def test_help_lists_every_setting_as_a_flag():
    command = [sys.executable, "-m", "review", "--help"]
    output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert [name for name in Settings.model_fields if f"--{name}" not in output] == []
    assert "default: 127.0.0.1" in output, "binds the loopback address unless told otherwise"
