"""Finds and loads the YAML configuration.

Order: explicit path (--config), then $FIRELINK_CONFIG, then
config/firelink.yaml if it exists, else the embedded defaults shipped in
this package (a sample station that runs on a fresh machine).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from config.schema import FirelinkConfig

DEFAULT_PATH = Path("config/firelink.yaml")


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


def resolve_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("FIRELINK_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


def embedded_defaults() -> dict[str, Any]:
    text = resources.files("config").joinpath("defaults.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def parse(data: Any, source: str) -> FirelinkConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    try:
        return FirelinkConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines)) from None


def load(explicit: str | os.PathLike[str] | None = None) -> tuple[FirelinkConfig, str]:
    """Returns the config and a description of where it came from."""
    path = resolve_path(explicit)
    if path is None:
        return parse(embedded_defaults(), "embedded defaults"), "embedded defaults"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse(data, str(path)), str(path)
