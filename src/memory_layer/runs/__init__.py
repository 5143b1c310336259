"""Runs: the history of flow runs and the JSON outputs of their tasks (/v1/runs)."""
