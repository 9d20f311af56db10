"""Configuration: embedded defaults run as is; a typo is a clear error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import ConfigError, embedded_defaults, load, parse


def test_embedded_defaults_are_a_valid_sample_station() -> None:
    cfg = parse(embedded_defaults(), "embedded")
    assert "demo-school" in {u.id for u in cfg.units}
    assert cfg.database.url.startswith("sqlite+aiosqlite:///var/")
    assert (cfg.console.host, cfg.console.port) == ("127.0.0.1", 8080)
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.embedded_broker) == ("127.0.0.1", 1883, "auto")
    assert set(cfg.agencies) == {"fire", "medical"}


def test_no_file_means_embedded_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FIRELINK_CONFIG", raising=False)
    _cfg, source = load()
    assert source == "embedded defaults"


def test_env_variable_selects_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("station: {id: s9, name: 九号所}\n", encoding="utf-8")
    monkeypatch.setenv("FIRELINK_CONFIG", str(path))
    cfg, source = load()
    assert source == str(path) and cfg.station.name == "九号所"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("mqtt: {hots: 10.0.0.1}\n", "mqtt.hots: Extra inputs are not permitted"),
        ("escalation: {ack_timeout_s: -1}\n", "escalation.ack_timeout_s"),
        ("units: [{id: 'bad id', name: x}]\n", "units.0.id"),
        ("units: [{id: a, name: x}, {id: a, name: y}]\n", "duplicate unit ids"),
        ("cameras: [{id: c1, unit_id: ghost, name: c, url: rtsp://x}]\n", "unknown unit 'ghost'"),
        ("agencies: {fire: {name: f, webhooks: [{url: ftp://x, secret: s}]}}\n", "http:// or https://"),
        ("agencies: {Police-1: {name: p}}\n", "agencies.Police-1.[key]: String should match pattern"),
        ("agencies: {gas: {name: g, channels: [{type: webhook, target: x}]}}\n", "configured under webhooks:"),
        ("agencies: {gas: {name: g, channels: [{type: sms}]}}\n", "agencies.gas.channels.0.target"),
        ("users: [{username: u, password: p, role: agency, agency: police}]\n",
         "role agency needs the key of a configured agency (none configured)"),
        ("users: [{username: u, password: p, role: unit}]\n", "needs a known unit_id"),
        ("users: [{username: u, role: admin}]\n", "exactly one of password or password_hash"),
        ("users: [{username: u, role: admin, password_hash: plain}]\n", "users.0.password_hash"),
        ("users: [{username: u, password: p, role: admin, real_name: 王强, badge: '45 12'}]\n", "users.0.badge"),
        ("users: [{username: u, password: p, role: admin, badge: '451288'}]\n", "needs the real name"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("mqtt: {port: [\n", "not valid YAML"),
    ],
)
def test_mistakes_are_clear_errors(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert message in str(err.value)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load(tmp_path / "nope.yaml")


def test_every_config_field_has_a_description() -> None:
    from pydantic import BaseModel

    from config.schema import FirelinkConfig

    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            for arg in (*getattr(field.annotation, "__args__", ()), field.annotation):
                for inner in (*getattr(arg, "__args__", ()), arg):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        walk(inner)

    walk(FirelinkConfig)
    assert len(seen) > 8


def test_production_example_is_valid() -> None:
    cfg, _ = load(Path(__file__).resolve().parent.parent / "config" / "firelink.example.yaml")
    assert cfg.mqtt.embedded_broker == "never" and cfg.database.url.startswith("postgresql+asyncpg://")
