"""Dependency aliases: routes receive app state through these, never through globals."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from models.engine.api import Engine
from server.agent.runtime import AgentRuntime
from server.api.streams.background import BackgroundRuns
from server.settings import Settings
from server.store import ResponseRecords


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_runtime(request: Request) -> AgentRuntime:
    return request.app.state.agent


def get_background(request: Request) -> BackgroundRuns:
    return request.app.state.background


def get_responses(request: Request) -> ResponseRecords:
    return request.app.state.responses


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RuntimeDep = Annotated[AgentRuntime, Depends(get_runtime)]
BackgroundDep = Annotated[BackgroundRuns, Depends(get_background)]
#: The stored responses (``/v1/responses``), each readable only with the key that made it.
ResponsesDep = Annotated[ResponseRecords, Depends(get_responses)]
