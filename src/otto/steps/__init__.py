"""The step library: manifests describing each step, and (later) the steps themselves."""

from otto.steps.manifest import (
    Manifest,
    ManifestError,
    Parameter,
    StepCallError,
    check_step,
    load_manifest,
    standard_manifests,
    step_problems,
)

__all__ = [
    "Manifest",
    "ManifestError",
    "Parameter",
    "StepCallError",
    "check_step",
    "load_manifest",
    "standard_manifests",
    "step_problems",
]
