"""The `firelink` command line, run as a real subprocess against real services."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import Api, Broker, base_config, config_yaml, run_cli, running_app, ws_client


async def test_press_publishes_what_a_button_does(broker: Broker, sqlite_url: str, tmp_path: Path) -> None:
    cfg = base_config(sqlite_url, broker)
    path = config_yaml(cfg, tmp_path / "firelink.yaml")
    async with running_app(cfg) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        async with ws_client(officer) as ws:
            code, out, err = await run_cli("--config", str(path), "press", "school-1", "--kind", "smoke",
                                           "--device-id", "btn-1")
            assert code == 0, err
            sent = json.loads(out)
            assert sent["topic"] == f"{cfg.mqtt.topic_prefix}/units/school-1/alarm"
            created = await ws.next_matching(lambda e: e["type"] == "incident.created")
            assert created["incident"]["kind"] == "smoke"
        detail = await officer.get(f"/api/incidents/{created['incident']['id']}")
        assert detail["alarms"][0]["alarm_id"] == sent["alarm_id"]
        assert detail["alarms"][0]["device_id"] == "btn-1"
        await officer.close()


async def test_press_reports_an_unreachable_broker(sqlite_url: str, tmp_path: Path) -> None:
    path = config_yaml(base_config(sqlite_url, None), tmp_path / "firelink.yaml")  # port 1: nothing listens
    code, _out, err = await run_cli("--config", str(path), "press", "school-1")
    assert code == 2 and "cannot reach MQTT broker" in err


async def test_user_add_db_upgrade_and_audit_verify(sqlite_url: str, tmp_path: Path) -> None:
    cfg = base_config(sqlite_url, None, users=[])
    path = config_yaml(cfg, tmp_path / "firelink.yaml")
    code, out, err = await run_cli("--config", str(path), "db", "upgrade")
    assert code == 0 and "latest revision" in out, err
    code, _out, err = await run_cli("--config", str(path), "user", "add", "wang", "--role", "duty_officer",
                                    "--password", "s3cret-pw", "--real-name", "王强", "--badge", "45-12")
    assert code == 2 and "badge number" in err  # refused, nothing created
    code, out, err = await run_cli("--config", str(path), "user", "add", "wang", "--role", "duty_officer",
                                   "--password", "s3cret-pw", "--real-name", "王强", "--badge", "451288")
    assert code == 0, err
    code, _out, err = await run_cli("--config", str(path), "user", "add", "wang", "--role", "duty_officer",
                                    "--password", "again-pw")
    assert code == 2 and "already exists" in err
    code, _out, err = await run_cli("--config", str(path), "user", "add", "u1", "--role", "unit", "--password", "pw12")
    assert code == 2 and "--unit" in err
    code, _out, err = await run_cli("--config", str(path), "user", "add", "li", "--role", "unit", "--unit",
                                    "school-1", stdin=b"")
    assert code == 2 and "no password given" in err  # no terminal to prompt on: refused, nothing created
    async with running_app(cfg, mqtt=False) as app:
        api = Api(app.url)
        body = await api.login("wang", "s3cret-pw")
        assert body["user"]["role"] == "duty_officer"
        me = (await api.get("/api/me"))["user"]
        assert (me["real_name"], me["badge"]) == ("王强", "451288")
        await api.post("/api/units/school-1/alarm", {"kind": "one_key"})
        await api.close()
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 0 and "intact" in out

    import sqlite3

    db_file = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(db_file) as conn:
        conn.execute("UPDATE records SET actor = 'forged' WHERE id = 1")
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 1 and "BROKEN at entry 1" in out


async def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("consol: {port: 9}\n", encoding="utf-8")
    code, _out, err = await run_cli("--config", str(path), "db", "upgrade")
    assert code == 2 and "consol: Extra inputs are not permitted" in err
