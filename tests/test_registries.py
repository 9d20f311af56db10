"""Registries, not if-chains: alarm kinds (config.alarm_kinds), agencies (configuration only: a third one, gas, works
end to end) and outbound channels (a channel registered from this test module delivers a dispatch)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from config import alarm_kinds
from config.schema import ChannelConfig, FirelinkConfig
from firelink.cli import parser
from ingest.contract import AgencyAckIn, Rejection, utcnow
from ingest.payloads import parse_message
from notify.channels import BUILT_IN, CHANNELS, ChannelConfigError, ChannelRegistry, DeliveryContext, DeliveryError
from notify.channels import Outgoing as ChannelMessage
from notify.signing import IDEMPOTENCY_HEADER
from tests.support import (
    WEBHOOK_SECRET,
    Api,
    Broker,
    WebhookReceiver,
    base_config,
    config_yaml,
    publish,
    run_cli,
    running_app,
    ws_client,
)

GAS: dict[str, Any] = {"name": "燃气公司抢修中心", "phone": "96777", "label": {"zh": "燃气抢修", "en": "Gas company"}}


def with_gas(db_url: str, broker: Broker | None, gas: dict[str, Any], **overrides: Any) -> FirelinkConfig:
    """The test station plus a third agency `gas` and its user `gasco` (password gasco-pw): configuration only."""
    users = [u.model_dump(exclude_none=True) for u in base_config(db_url, None).users]
    users.append({"username": "gasco", "password": "gasco-pw", "role": "agency", "agency": "gas"})
    return base_config(db_url, broker, agencies={"gas": gas}, users=users, **overrides)


# ------------------------------------------------------------------------------------------------ alarm kinds


def test_alarm_kinds_have_one_home() -> None:
    ids = [k.id for k in alarm_kinds.KINDS]
    assert len(ids) == len(set(ids)) and all(k.zh and k.en for k in alarm_kinds.KINDS)
    assert set(alarm_kinds.DEVICE_IDS) | set(alarm_kinds.DETECTOR_IDS) == set(ids)
    assert alarm_kinds.from_detector("video_fire") and not alarm_kinds.from_detector("smoke")
    assert not alarm_kinds.from_detector("no_such_kind")
    for kind in alarm_kinds.DEVICE_IDS:  # `firelink press --kind`
        assert parser().parse_args(["press", "u1", "--kind", kind]).kind == kind
    with pytest.raises(SystemExit):
        parser().parse_args(["press", "u1", "--kind", alarm_kinds.DETECTOR_IDS[0]])
    # a device may send a device kind, never a detector's
    for kind in alarm_kinds.DEVICE_IDS:
        assert not isinstance(parse_message("fl", "fl/units/u1/alarm", f'{{"alarm_id":"a","kind":"{kind}"}}'.encode(),
                                            65_536, utcnow()), Rejection)
    for kind in alarm_kinds.DETECTOR_IDS:
        refused = parse_message("fl", "fl/units/u1/alarm", f'{{"alarm_id":"a","kind":"{kind}"}}'.encode(), 65_536,
                                utcnow())
        assert isinstance(refused, Rejection) and "kind: Input should be 'one_key'" in refused.reason


async def test_api_serves_the_registries_and_documents_them(sqlite_url: str) -> None:
    cfg = with_gas(sqlite_url, None, {**GAS, "mqtt": False})
    async with running_app(cfg, mqtt=False) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        me = await officer.get("/api/me")
        assert me["alarm_kinds"] == [k.to_json() for k in alarm_kinds.KINDS]
        assert list(me["agencies"]) == ["fire", "medical", "gas"]  # the configured order: the dispatch buttons'
        assert me["agencies"]["gas"] == {"name": "燃气公司抢修中心", "phone": "96777",
                                         "label": {"zh": "燃气抢修", "en": "Gas company"}}
        assert me["agencies"]["medical"]["label"] == {"zh": "120 急救", "en": "Medical 120"}
        doc = await officer.get("/api/openapi.json")
        schemas = doc["components"]["schemas"]
        assert schemas["PressBody"]["properties"]["kind"]["enum"] == list(alarm_kinds.DEVICE_IDS)
        kind = next(p for p in doc["paths"]["/api/incidents"]["get"]["parameters"] if p["name"] == "kind")
        assert kind["schema"]["anyOf"][0]["enum"] == list(alarm_kinds.ALL_IDS)
        # a detector's kind cannot be pressed; an unknown agency cannot be dispatched
        status, body = await officer.request("POST", "/api/units/school-1/alarm", {"kind": "video_fire"})
        assert status == 400 and "kind" in str(body)
        pressed = await officer.post("/api/units/school-1/alarm", {"kind": "gas"})
        status, body = await officer.request("POST", f"/api/incidents/{pressed['incident_id']}/dispatch",
                                             {"agencies": ["police"]})
        assert status == 400 and "unknown agencies ['police']" in body["error"]
        assert (await officer.get(f"/api/incidents/{pressed['incident_id']}"))["dispatches"] == []
        await officer.close()


# ----------------------------------------------------------------------------------------------------- agencies


def test_ack_topics_follow_the_configured_agencies() -> None:
    ack = b'{"dispatch_id": 7, "by": "hotline"}'
    got = parse_message("fl", "fl/dispatch/gas/ack", ack, 65_536, utcnow(), agencies=["fire", "gas"])
    assert isinstance(got, AgencyAckIn) and (got.agency, got.dispatch_id, got.by) == ("gas", 7, "hotline")
    refused = parse_message("fl", "fl/dispatch/police/ack", ack, 65_536, utcnow(), agencies=["fire", "gas"])
    assert isinstance(refused, Rejection) and refused.reason == "unknown topic"


async def test_a_third_agency_is_configuration_only(broker: Broker, db_url: str, receiver: WebhookReceiver) -> None:
    """gas: dispatched over the API, its webhook gets the signed dispatch, its user sees and accepts it, and its
    system answers on firelink/dispatch/gas/ack."""
    cfg = with_gas(db_url, broker, {**GAS, "mqtt": True,
                                    "webhooks": [{"url": receiver.url, "secret": WEBHOOK_SECRET}]})
    prefix = cfg.mqtt.topic_prefix
    async with running_app(cfg) as app:
        officer, gasco, brigade, admin = Api(app.url), Api(app.url), Api(app.url), Api(app.url)
        await officer.login("officer", "officer-pw")
        await gasco.login("gasco", "gasco-pw")
        await brigade.login("brigade", "brigade-pw")
        await admin.login("admin", "admin-pw")
        pressed = await officer.post("/api/units/hotel-1/alarm", {"kind": "gas", "note": "燃气泄漏"})
        inc = pressed["incident_id"]
        result = await officer.post(f"/api/incidents/{inc}/dispatch", {"agencies": ["gas"]})
        [dispatch] = result["dispatches"]
        assert dispatch["agency"] == "gas" and result["status"] == "dispatched"
        assert [(c["key"], c["channel"]) for c in dispatch["channels"]] == [("webhook-0", "webhook"), ("mqtt", "mqtt")]

        await receiver.wait_for(1)
        assert receiver.signature_ok == [True]
        body = receiver.received[0].json
        assert (body["agency"], body["dispatch_id"], body["incident_id"]) == ("gas", dispatch["id"], inc)
        assert body["kind"] == "gas" and body["unit"]["address"] == "解放路66号"
        assert receiver.received[0].headers[IDEMPOTENCY_HEADER] == body["idempotency_key"]

        # the gas company's user sees it in its queue (the brigade does not) and accepts it
        assert [d["id"] for d in await gasco.get("/api/dispatches")] == [dispatch["id"]]
        assert await brigade.get("/api/dispatches") == []
        assert (await brigade.request("POST", f"/api/dispatches/{dispatch['id']}/ack"))[0] == 403
        accepted = await gasco.post(f"/api/dispatches/{dispatch['id']}/ack")
        assert accepted["status"] == "acknowledged" and accepted["acknowledged_by"] == "gasco"

        # its system reports arrival over MQTT on its own ack topic; an unconfigured agency's topic is refused
        async with ws_client(admin) as ws:
            await publish(broker, f"{prefix}/dispatch/police/ack", {"dispatch_id": dispatch["id"]})
            refused = await ws.next_matching(lambda e: e["type"] == "alarm.rejected")
            assert refused["rejection"]["topic"] == f"{prefix}/dispatch/police/ack"
            assert refused["rejection"]["reason"] == "unknown topic"
            await publish(broker, f"{prefix}/dispatch/gas/ack",
                          {"dispatch_id": dispatch["id"], "status": "on_scene", "by": "抢修一班"})
            on_scene = await ws.next_matching(lambda e: e["type"] == "dispatch.updated"
                                              and e["dispatch"]["status"] == "on_scene")
        channels = {c["key"]: c["status"] for c in on_scene["dispatch"]["channels"]}
        assert channels == {"webhook-0": "delivered", "mqtt": "delivered"}
        detail = await officer.get(f"/api/incidents/{inc}")
        assert detail["status"] == "on_scene"
        assert [e["data"].get("via") for e in detail["timeline"] if e["action"] == "dispatch.on_scene"] == ["mqtt"]
        for api in (officer, gasco, brigade, admin):
            await api.close()


# ----------------------------------------------------------------------------------------------------- channels


@dataclass
class Pager:
    """A dummy outbound channel (a pager gateway): registered from here, configured for an agency, no core file."""

    fail_first: int = 0
    name: str = "pager"
    confirms: bool = True
    received: list[ChannelMessage] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def describe(self, target: str) -> str:
        return target

    async def deliver(self, message: ChannelMessage, ctx: DeliveryContext) -> None:
        assert ctx.cfg.agencies["gas"].channels  # the context carries the running configuration
        self.received.append(message)
        self.arrived.set()
        if len(self.received) <= self.fail_first:
            raise DeliveryError("pager gateway busy")


@pytest.fixture
def pager() -> Iterator[Pager]:
    channel = Pager(fail_first=1)
    CHANNELS.register(channel)
    try:
        yield channel
    finally:
        CHANNELS.unregister(channel.name)


PAGED = {"type": "pager", "target": "+86-138-0000-0000", "settings": {"voice": True}, "secrets": {"token": "pg-t"}}


async def test_a_registered_channel_delivers_a_dispatch_and_shows_its_state(db_url: str, pager: Pager) -> None:
    cfg = with_gas(db_url, None, {**GAS, "mqtt": False, "channels": [PAGED]})
    async with running_app(cfg, mqtt=False) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        pressed = await officer.post("/api/units/school-1/alarm", {"kind": "gas"})
        async with ws_client(officer) as ws:
            result = await officer.post(f"/api/incidents/{pressed['incident_id']}/dispatch", {"agencies": ["gas"]})
            [dispatch] = result["dispatches"]
            assert [(c["key"], c["channel"], c["status"]) for c in dispatch["channels"]] == [
                ("pager-0", "pager", "pending")]
            failed = await ws.next_matching(lambda e: e["type"] == "dispatch.updated"
                                            and e["dispatch"]["channels"][0]["attempts"] == 1)
            assert failed["dispatch"]["channels"][0]["last_error"] == "pager gateway busy"
            done = await ws.next_matching(lambda e: e["type"] == "dispatch.updated"
                                          and e["dispatch"]["channels"][0]["status"] == "delivered")
        [channel] = done["dispatch"]["channels"]
        assert (channel["key"], channel["channel"], channel["attempts"], channel["last_error"]) == (
            "pager-0", "pager", 2, "")
        assert done["dispatch"]["status"] == "delivered" and done["dispatch"]["delivered_at"]
        first, second = pager.received
        assert first.idempotency_key == second.idempotency_key == second.payload["idempotency_key"]
        assert (second.channel, second.key, second.target, second.ref) == (
            "pager", "pager-0", "+86-138-0000-0000", "agencies.gas.channels.0")
        assert second.payload["agency"] == "gas" and second.payload["dispatch_id"] == dispatch["id"]
        assert isinstance(second.settings, ChannelConfig) and second.settings.settings == {"voice": True}
        assert second.settings.secrets["token"].get_secret_value() == "pg-t"
        detail = await officer.get(f"/api/incidents/{pressed['incident_id']}")
        delivered = [e["data"] for e in detail["timeline"] if e["action"] == "dispatch.delivered"]
        assert delivered == [{"agency": "gas", "dispatch_id": dispatch["id"], "channel": "pager", "attempts": 2}]
        assert "pg-t" not in str(await officer.get("/api/me")) + str(detail)  # the secret never reaches a browser
        await officer.close()


def test_a_configured_channel_nobody_provides_is_a_clear_error(sqlite_url: str) -> None:
    cfg = with_gas(sqlite_url, None, {**GAS, "channels": [{"type": "sms", "target": "+8613800000000"}]})
    with pytest.raises(ChannelConfigError, match=r"agencies\.gas\.channels\.0: sms \(registered: mqtt, webhook\)"):
        ChannelRegistry(BUILT_IN).check(cfg)
    ChannelRegistry(BUILT_IN).check(base_config(sqlite_url, None))  # webhooks and MQTT are built in
    with pytest.raises(ValueError, match="already registered"):
        ChannelRegistry([*BUILT_IN, BUILT_IN[0]])


async def test_cli_takes_agencies_and_channels_from_the_configuration(sqlite_url: str, tmp_path: Path) -> None:
    cfg = with_gas(sqlite_url, None, {**GAS, "channels": [{"type": "sms", "target": "+8613800000000"}]})
    path = str(config_yaml(cfg, tmp_path / "firelink.yaml"))
    code, _out, err = await run_cli("--config", path, "run")
    assert code == 2 and "agencies.gas.channels.0: sms" in err  # refused before anything started
    code, _out, err = await run_cli("--config", path, "user", "add", "gas2", "--role", "agency", "--agency", "gas",
                                    "--password", "gas2-pw")
    assert code == 0, err
    code, _out, err = await run_cli("--config", path, "user", "add", "cop", "--role", "agency", "--agency", "police",
                                    "--password", "cop-pw")
    assert code == 2 and "--agency naming a configured agency (fire, gas, medical)" in err  # (YAML written sorted)
