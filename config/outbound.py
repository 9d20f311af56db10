"""The outbound channels the configuration names, as one flat list per recipient.

The core writes one outbox row per `Outbound` (its channel, key, target and ref stored on the row), and the
notify worker finds the row's settings again by `ref` (`by_ref`): nothing is parsed back out of a string.

* `channel` — the name of the channel that delivers it (notify.channels registry): webhook, mqtt, or a plug-in's;
* `key`     — the channel's key on a dispatch's per-channel status (dispatch.channels): webhook-0, mqtt, sms-0;
* `ref`     — where it is configured, e.g. agencies.fire.webhooks.0 (the outbox row keeps this, never a secret);
* `target`  — where it goes: a URL, an MQTT topic, a phone number;
* `settings`— the configured entry itself (WebhookChannel, ChannelConfig), None for MQTT.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.schema import ChannelConfig, FirelinkConfig, WebhookChannel

WEBHOOK = "webhook"
MQTT = "mqtt"
MQTT_KEY = "mqtt"


@dataclass(frozen=True, slots=True)
class Outbound:
    channel: str
    key: str
    ref: str
    target: str
    settings: WebhookChannel | ChannelConfig | None = None


def _listed(base: str, webhooks: list[WebhookChannel], others: list[ChannelConfig]) -> list[Outbound]:
    out = [Outbound(WEBHOOK, f"{WEBHOOK}-{i}", f"{base}.webhooks.{i}", hook.url, hook)
           for i, hook in enumerate(webhooks)]
    out += [Outbound(ch.type, f"{ch.type}-{i}", f"{base}.channels.{i}", ch.target, ch) for i, ch in enumerate(others)]
    return out


def for_agency(cfg: FirelinkConfig, agency: str) -> list[Outbound]:
    """Every channel a dispatch to `agency` goes out on (KeyError for an agency that is not configured)."""
    a = cfg.agencies[agency]
    out = _listed(f"agencies.{agency}", a.webhooks, a.channels)
    if a.mqtt:
        out.append(Outbound(MQTT, MQTT_KEY, f"agencies.{agency}.mqtt", f"{cfg.mqtt.topic_prefix}/dispatch/{agency}"))
    return out


def for_leader(cfg: FirelinkConfig) -> list[Outbound]:
    """Every channel an escalation goes out on."""
    leader = cfg.station.leader
    out = _listed("station.leader", leader.webhooks, leader.channels)
    if leader.mqtt:
        out.append(Outbound(MQTT, MQTT_KEY, "station.leader.mqtt", f"{cfg.mqtt.topic_prefix}/leader/escalation"))
    return out


def every(cfg: FirelinkConfig) -> list[Outbound]:
    """All configured channels: every agency's, then the station leader's."""
    return [o for agency in cfg.agencies for o in for_agency(cfg, agency)] + for_leader(cfg)


def by_ref(cfg: FirelinkConfig) -> dict[str, Outbound]:
    return {o.ref: o for o in every(cfg)}
