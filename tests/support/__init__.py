"""Test helpers that are not fixtures: local stand-ins of remote services."""
