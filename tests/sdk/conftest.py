"""The SDK tests run generated clients against the end-to-end stack's gateway."""

from tests.e2e.conftest import gateway, stack

__all__ = ["gateway", "stack"]
