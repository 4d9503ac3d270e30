"""Otto: a self-hosted CI/CD system."""

__version__ = "0.1.0"
