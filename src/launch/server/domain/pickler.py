"""What a pickled bundle needs from its environment: the cloudpickle that pickled it, on the Python minor
that pickled it (cloudpickle pickles functions by value, as code objects of one Python minor, and its
pickles name its own private helpers, which move between versions). Pure rules, no I/O."""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from launch.server.domain.errors import InvalidRequest

_PYTHON_MINOR = re.compile(r"^3\.\d{1,2}$")


def check_versions(cloudpickle_version: str | None, python_version: str | None, requirements: list[str]) -> None:
    """Refuse (``InvalidRequest``) versions that are not versions, and requirements that would put another
    cloudpickle into the environment than the one that pickled the bundle."""
    if python_version is not None and not _PYTHON_MINOR.fullmatch(str(python_version)):
        raise InvalidRequest(f"python_version must look like '3.11', got {str(python_version)[:40]!r}")
    if cloudpickle_version is None:
        return
    try:
        version = Version(str(cloudpickle_version))
    except InvalidVersion:
        raise InvalidRequest(f"cloudpickle_version {str(cloudpickle_version)[:40]!r} is not a version") from None
    for line in requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue  # the environment build reports it
        if canonicalize_name(req.name) == "cloudpickle" and req.specifier and not req.specifier.contains(
                version, prereleases=True):
            raise InvalidRequest(
                f"the bundle was pickled with cloudpickle {version}, but its requirements ask for {line!r}: "
                f"its workers must unpickle it with cloudpickle {version}. Drop that requirement, or pickle the "
                f"bundle from an environment whose cloudpickle matches it"
            )


def environment_requirements(requirements: list[str], cloudpickle_version: str | None) -> list[str]:
    """The requirements a bundle's environment is built from: its own, plus the cloudpickle that pickled it
    (whatever else they pull in, that version wins or the build fails with the resolver's reason)."""
    if cloudpickle_version is None:
        return list(requirements)
    return [*requirements, f"cloudpickle=={cloudpickle_version}"]
