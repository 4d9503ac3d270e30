"""The step library: manifests describing each step, and (later) the steps themselves."""

from otto.steps.manifest import (
    Manifest,
    ManifestError,
    Parameter,
    StepCallError,
    load_manifest,
    standard_manifests,
)

__all__ = [
    "Manifest",
    "ManifestError",
    "Parameter",
    "StepCallError",
    "load_manifest",
    "standard_manifests",
]
