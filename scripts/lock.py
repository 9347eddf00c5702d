"""Orders `pip freeze` output into requirements.lock: the job's packages first, then development's.

    pip freeze --exclude-editable | python scripts/lock.py pyproject.toml > requirements.lock

Run it with the interpreter of the environment that was frozen: what each package needs is read from the
installed metadata. The Dataflow image installs the lines above `DEVELOPMENT_MARKER` only.
"""

from __future__ import annotations

import importlib.metadata
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# The whole dependency tree, pinned (CPU/JAX, Python 3.11, Linux): what make and CI install; the Dataflow
# image installs the job's part, above the development marker. Regenerate after changing pyproject.toml: make lock"""
DEVELOPMENT_MARKER = "# development only (local model, local stack, tests): not in the Dataflow image"


def needed_by(requirements: list[Requirement]) -> set[str]:
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


def job_requirements(pyproject: dict) -> set[str]:
    """The distributions the job itself needs: the closure of the project's dependencies, without extras."""
    return needed_by([Requirement(dependency) for dependency in pyproject["project"]["dependencies"]])


def main(pyproject_path: str) -> None:
    with open(pyproject_path, "rb") as source:
        job = job_requirements(tomllib.load(source))
    pins = [line.strip() for line in sys.stdin if "==" in line and not line.startswith("#")]
    is_job = {pin: canonicalize_name(pin.split("==")[0]) in job for pin in pins}
    print(HEADER)
    print(*(pin for pin in pins if is_job[pin]), sep="\n")
    print(DEVELOPMENT_MARKER)
    print(*(pin for pin in pins if not is_job[pin]), sep="\n")


if __name__ == "__main__":
    main(sys.argv[1])
