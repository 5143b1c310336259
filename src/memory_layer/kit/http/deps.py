"""Dependencies every domain's routes share, as Annotated aliases over app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from memory_layer.config import Settings
from memory_layer.kit.observability.metrics import Metrics


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
