"""The AMQP intake's mapping between MQTT topics and routing keys, and its configuration (no broker needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.schema import FirelinkConfig, MqttConfig
from ingest.amqp_intake import binding_keys, topic_of
from ingest.mqtt_link import subscriptions


def test_routing_keys_map_back_to_the_devices_topics() -> None:
    # the MQTT plugin swaps '/' and '.': a unit id with a dot survives the round trip
    assert topic_of("firelink.units.u-1.alarm") == "firelink/units/u-1/alarm"
    assert topic_of("firelink.units.a/b.alarm") == "firelink/units/a.b/alarm"


def test_every_intake_topic_is_bound() -> None:
    assert binding_keys("firelink") == ["firelink.units.#", "firelink.devices.#", "firelink.dispatch.*.ack",
                                        "firelink.cameras.*.detections", "firelink.hotline.complaints"]
    assert len(binding_keys("firelink")) == len(subscriptions("firelink"))


def test_broker_nodes_default_to_the_one_broker() -> None:
    assert MqttConfig().nodes() == [("127.0.0.1", 1883)]
    assert MqttConfig(cluster_nodes=["mq1:1883", "mq2:1884"]).nodes() == [("mq1", 1883), ("mq2", 1884)]


@pytest.mark.parametrize("bad", ["mq1", "mq1:", ":1883", "mq1:99999", "mq1:x"])
def test_a_bad_node_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValidationError, match="host:port"):
        FirelinkConfig.model_validate({"mqtt": {"cluster_nodes": [bad]}})
    with pytest.raises(ValidationError, match="host:port"):
        FirelinkConfig.model_validate({"amqp": {"nodes": [bad]}})


def test_intake_is_mqtt_or_amqp() -> None:
    assert FirelinkConfig().mqtt.intake == "mqtt"
    with pytest.raises(ValidationError, match="intake"):
        FirelinkConfig.model_validate({"mqtt": {"intake": "kafka"}})
