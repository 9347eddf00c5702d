"""The Dataflow image agrees with the project: one Beam version, one Python, the lock, the entry point.

No Docker engine runs on our machines, so these checks stand in for building the image; the filter test
stands in for the image's `pip check`.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
LOCK = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _instructions() -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments left out."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _arg_defaults() -> dict[str, str]:
    defaults = {}
    for line in _instructions():
        if match := re.fullmatch(r'ARG (\w+)=(.*)', line):
            defaults[match[1]] = match[2].strip('"')
    return defaults


def _resolved(text: str) -> str:
    """`text` with the Dockerfile's `${ARG}` references replaced by their defaults."""
    defaults = _arg_defaults()
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), text)


def _env() -> dict[str, str]:
    env = {}
    for line in _instructions():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def _pinned(lines: list[str]) -> dict[str, str]:
    pins = (line.split("==") for line in lines if "==" in line and not line.startswith("#"))
    return {canonicalize_name(name): version for name, version in pins}


def _pyproject_pin(package: str) -> str:
    for dependency in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(dependency)
        if canonicalize_name(requirement.name) == package:
            return str(requirement.specifier).removeprefix("==")
    raise AssertionError(f"{package} is not a dependency in pyproject.toml")


def test_one_beam_version_in_the_image_pyproject_and_lock():
    sdk_images = re.findall(r"FROM (apache/beam_python[\d.]+_sdk:\S+)", _resolved(DOCKERFILE))
    assert len(sdk_images) == 1
    image_version = sdk_images[0].rsplit(":", 1)[1]
    assert image_version == _pyproject_pin("apache-beam") == _pinned(LOCK)["apache-beam"]


def test_one_python_version_in_the_image_and_pyproject():
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.12"
    assert "FROM apache/beam_python3.11_sdk:" in DOCKERFILE
    assert "/python311-template-launcher-base:" in DOCKERFILE
    assert "python3.11 -m venv" in DOCKERFILE


def test_the_image_installs_the_lock_and_jax_cuda_at_the_locks_version():
    install = next(line for line in _instructions() if "pip install" in line and "requirements" in line)
    assert "requirements.lock" in install and "-r /tmp/requirements.txt" in install
    # jax[cuda12] takes its version from the lock, so it cannot drift from the jax that the tests ran.
    assert "\"jax[cuda12]==$(sed -n 's/^jax==//p' requirements.lock)\"" in install
    assert _pinned(LOCK)["jax"] == _pyproject_pin("jax")


def _lock_script():
    """`scripts/lock.py`, which `make lock` runs to order the lock."""
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_image_installs_exactly_the_part_of_the_lock_the_job_needs():
    lock = _lock_script()
    marker = LOCK.index(lock.DEVELOPMENT_MARKER)
    job, development = set(_pinned(LOCK[:marker])), set(_pinned(LOCK[marker:]))
    needed = lock.job_requirements(PYPROJECT)
    assert job == needed & set(_pinned(LOCK)), f"the job part is not the job's closure: {sorted(job ^ needed)}"
    assert not development & needed, f"marked development-only but the job needs: {sorted(development & needed)}"
    assert "sed '/^# development only/,$d' requirements.lock > /tmp/requirements.txt" in " ".join(_instructions())


def test_the_entry_points_and_environment():
    env = _env()
    py_file = Path(env["FLEX_TEMPLATE_PYTHON_PY_FILE"])
    assert py_file.is_relative_to("/template") and (ROOT / py_file.relative_to("/template")).is_file()
    assert f"COPY {py_file.relative_to('/template').parts[0]} " in DOCKERFILE
    assert "WORKDIR /template" in DOCKERFILE
    # The project is installed in the image, which is also the workers' container: nothing to stage.
    assert not {"FLEX_TEMPLATE_PYTHON_SETUP_FILE", "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE"} & set(env)
    assert env["KERAS_BACKEND"] == "jax"
    # The workers' boot program must use the image's environment, not a new empty one.
    assert env["PATH"].startswith("/opt/venv/bin:") and env["RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT"] == "1"
    # Two model processes (triage and apology drafts) share each GPU; together they must leave room.
    assert 0 < float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) <= 0.45
    assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in DOCKERFILE
    assert "/opt/google/dataflow/python_template_launcher" in DOCKERFILE
    assert _instructions()[-1] == 'ENTRYPOINT ["/opt/apache/beam/boot"]'
    assert "pip check" in DOCKERFILE


def test_the_replay_launcher_layer_runs_the_replay_job():
    layer = (ROOT / "templates" / "replay" / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line for line in layer.splitlines() if line.strip() and not line.startswith("#")]
    assert instructions[:2] == ["ARG IMAGE", "FROM ${IMAGE}"]
    py_file = Path(re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)", layer)[1])
    assert py_file == Path("/template/pipeline/replay.py") and (ROOT / py_file.relative_to("/template")).is_file()
    # The launcher binary that the project's image copies in.
    assert instructions[-1] == 'ENTRYPOINT ["/opt/google/dataflow/python_template_launcher"]'
    assert f"COPY --from=template_launcher {instructions[-1].split(chr(34))[1]} " in DOCKERFILE
