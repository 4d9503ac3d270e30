"""Browser tests of the dashboard: see conftest.py."""
