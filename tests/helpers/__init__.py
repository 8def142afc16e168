"""Helpers shared by the test suites (importable as ``helpers`` thanks to tests/conftest.py)."""
