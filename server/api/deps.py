"""Dependency aliases: routes receive app state through these, never through globals."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from models.engine.api import Engine
from server.settings import Settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
