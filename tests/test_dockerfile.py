"""The Dataflow image agrees with the project: one Beam version, one Python, the locks, the entry point.

No Docker engine runs on our machines, so these checks stand in for building the image; the lock tests
stand in for the image's `pip check`. requirements.lock (the image) and requirements-dev.lock (development
and CI) are written by `make lock` (pip-compile); when a test here says so, run it.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# What pip-compile writes as the origin of a requirement of pyproject.toml.
PROJECT = "chat-triage (pyproject.toml)"
# The extra of the image only: JAX's CUDA wheels. Every other extra is development's.
GPU_EXTRA = "gpu"
# What the gpu extra adds to the job's packages: JAX's CUDA plugin and NVIDIA's CUDA wheels.
CUDA_PACKAGES = ("jax-cuda12-", "nvidia-")


@dataclass
class Locked:
    version: str
    hashes: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


def _lock(name: str) -> dict[str, Locked]:
    """A lock written by pip-compile: each package's version, its hashes and what it is there for (`# via`)."""
    locked: dict[str, Locked] = {}
    current, via = None, False
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        text = line.strip().removesuffix("\\").strip()
        if not text:
            continue
        if not line.startswith((" ", "#", "-")):  # options (--index-url) are left to their own test
            requirement = Requirement(text)
            assert str(requirement.specifier).startswith("=="), f"{name}: not pinned: {line}"
            current = locked[canonicalize_name(requirement.name)] = Locked(str(requirement.specifier)[2:])
            via = False
        elif line.startswith("#"):
            current, via = None, False
        elif text.startswith("--hash="):
            current.hashes.append(text.removeprefix("--hash="))
        elif text.startswith("# via"):
            via = True
            if origin := text.removeprefix("# via").strip():
                current.via.add(origin)
        elif via and text.startswith("#   "):
            current.via.add(text.removeprefix("#").strip())
    return {
        name: Locked(entry.version, entry.hashes, {_origin(origin) for origin in entry.via})
        for name, entry in locked.items()
    }


def _origin(origin: str) -> str:
    """A package named in `# via`, normalised; inputs (pyproject.toml, `-c requirements.lock`) as written."""
    return origin if " " in origin else canonicalize_name(origin)


IMAGE_LOCK = _lock("requirements.lock")
DEV_LOCK = _lock("requirements-dev.lock")


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


def _requirements(extra: str | None = None) -> list[Requirement]:
    """The project's dependencies (`extra=None`) or one extra's, as pyproject.toml declares them."""
    project = PYPROJECT["project"]
    declared = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(dependency) for dependency in declared]


def _pyproject_pin(package: str) -> str:
    for requirement in _requirements():
        if canonicalize_name(requirement.name) == package:
            return str(requirement.specifier).removeprefix("==")
    raise AssertionError(f"{package} is not a dependency in pyproject.toml")


def _development_extras() -> list[str]:
    return [extra for extra in PYPROJECT["project"]["optional-dependencies"] if extra != GPU_EXTRA]


def _needed_by(requirements: list[Requirement]) -> set[str]:
    """Every distribution that `requirements` pull in, read from the installed packages' metadata."""
    needed, pending = set(), [(requirement, frozenset({""})) for requirement in requirements]
    while pending:
        requirement, extras = pending.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": extra}) for extra in extras):
            continue
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in needed:
            continue
        needed.add(key)
        for child in importlib.metadata.requires(key[0]) or []:
            pending.append((Requirement(child), frozenset(requirement.extras) | {""}))
    return {name for name, _ in needed}


def test_one_beam_version_in_the_image_pyproject_and_locks():
    sdk_images = re.findall(r"FROM (apache/beam_python[\d.]+_sdk:\S+)", _resolved(DOCKERFILE))
    assert len(sdk_images) == 1
    image_version = sdk_images[0].rsplit(":", 1)[1]
    assert image_version == _pyproject_pin("apache-beam")
    assert image_version == IMAGE_LOCK["apache-beam"].version == DEV_LOCK["apache-beam"].version


def test_one_python_version_in_the_image_and_pyproject():
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.12"
    assert "FROM apache/beam_python3.11_sdk:" in DOCKERFILE
    assert "/python311-template-launcher-base:" in DOCKERFILE
    assert "python3.11 -m venv" in DOCKERFILE


def test_the_image_installs_its_lock_with_hashes_then_the_project_without_dependencies():
    instructions = _instructions()
    copy = instructions.index("COPY requirements.lock .")
    install = next(i for i, line in enumerate(instructions) if "pip install" in line and "requirements" in line)
    project = next(i for i, line in enumerate(instructions) if "pip install" in line and " ." in line)
    assert copy < install < project
    assert "--require-hashes -r requirements.lock" in instructions[install]
    assert not [line for line in instructions if "requirements-dev.lock" in line]
    # The lock is installed whole: no filter, and JAX's CUDA wheels come from the lock, hashed.
    assert "sed " not in instructions[install] and "jax" not in instructions[install]
    assert instructions[project].startswith("RUN pip install --no-cache-dir --no-deps . ")
    assert instructions[project].endswith("&& pip check")


def test_every_locked_package_carries_hashes_and_no_index_of_this_machine():
    for name, lock in {"requirements.lock": IMAGE_LOCK, "requirements-dev.lock": DEV_LOCK}.items():
        unhashed = [package for package, entry in lock.items() if not entry.hashes]
        assert not unhashed, f"{name} without hashes: {unhashed} (make lock)"
        assert all(digest.startswith("sha256:") for entry in lock.values() for digest in entry.hashes)
        # Options (--index-url, --find-links) would name this machine's package folders, absent on Cloud Build.
        options = [line for line in (ROOT / name).read_text(encoding="utf-8").splitlines() if line.startswith("-")]
        assert not options, f"{name}: {options}"


def test_jax_cuda_is_locked_at_the_projects_jax_version():
    jax = _pyproject_pin("jax")
    assert [str(requirement) for requirement in _requirements(GPU_EXTRA)] == [f"jax[cuda12]=={jax}"]
    for package in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt"):
        assert IMAGE_LOCK[package].version == jax, package
    # Development runs JAX on the CPU.
    assert DEV_LOCK["jax"].version == DEV_LOCK["jaxlib"].version == jax
    assert not [package for package in DEV_LOCK if package.startswith(CUDA_PACKAGES)]


def test_the_image_lock_holds_what_the_job_needs_and_nothing_of_developments():
    job = {canonicalize_name(requirement.name) for requirement in _requirements()}
    gpu = {canonicalize_name(requirement.name) for requirement in _requirements(GPU_EXTRA)}
    # Locked for the project's dependencies and the gpu extra, and for nothing else.
    assert {package for package, entry in IMAGE_LOCK.items() if PROJECT in entry.via} == job | gpu
    strays = {package: entry.via - {PROJECT} - set(IMAGE_LOCK) for package, entry in IMAGE_LOCK.items()}
    assert not {package: via for package, via in strays.items() if via}, "there for packages the image lacks"
    # Everything the job's packages pull in (read from this environment), and beyond that only JAX's CUDA.
    needed = _needed_by(_requirements())
    assert needed <= set(IMAGE_LOCK), f"the job needs, the image lacks: {sorted(needed - set(IMAGE_LOCK))}"
    extra = set(IMAGE_LOCK) - needed
    assert all(package.startswith(CUDA_PACKAGES) for package in extra), sorted(extra)
    # Nothing that only development asks for.
    development = {
        canonicalize_name(requirement.name) for extra in _development_extras() for requirement in _requirements(extra)
    }
    assert not (development - needed) & set(IMAGE_LOCK)
    assert not {"pytest", "hypothesis", "gguf", "bqemulator", "pip-tools", "ruff"} & set(IMAGE_LOCK)


def test_the_development_lock_holds_the_images_pins():
    shared = set(IMAGE_LOCK) & set(DEV_LOCK)
    versions = {package: (IMAGE_LOCK[package].version, DEV_LOCK[package].version) for package in shared}
    assert {package: pair for package, pair in versions.items() if pair[0] != pair[1]} == {}
    missing = set(IMAGE_LOCK) - set(DEV_LOCK)
    assert all(package.startswith(CUDA_PACKAGES) for package in missing), sorted(missing)


def test_the_locks_hold_every_requirement_of_pyproject():
    """Fails after pyproject.toml changes a pin or an extra until `make lock` has run."""
    wanted = [(None, "requirements.lock", IMAGE_LOCK), (GPU_EXTRA, "requirements.lock", IMAGE_LOCK)]
    wanted += [(None, "requirements-dev.lock", DEV_LOCK)]
    wanted += [(extra, "requirements-dev.lock", DEV_LOCK) for extra in _development_extras()]
    for extra, name, lock in wanted:
        for requirement in _requirements(extra):
            entry = lock.get(canonicalize_name(requirement.name))
            assert entry and entry.version in requirement.specifier, f"{name} lacks {requirement}: make lock"


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
