"""Otto: a self-hosted CI/CD system."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("otto-ci")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
