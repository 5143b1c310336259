"""Test set-up: a clean environment and the shared fixtures (tests/fixtures/)."""

from __future__ import annotations

import os

# Settings of the developer's shell must not leak into the tests.
for _name in list(os.environ):
    if _name.startswith("MEMORY_") and not _name.startswith("MEMORY_TEST_"):
        del os.environ[_name]

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.app",
    "tests.fixtures.tenants",
    "tests.fixtures.redis",
]
