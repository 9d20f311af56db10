"""Broker-cluster settings: broker nodes as `host:port`, and the AMQP intake the cores share (docs/deploy.md).

With one Mosquitto (the default) nothing here is used. With a RabbitMQ cluster, devices keep publishing MQTT to any
node, the broker routes their topics onto durable quorum queues, and every core consumes those queues over AMQP
0-9-1 as a competing consumer (ingest.amqp_intake), acknowledging a message only after its database commit.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"


def _endpoint(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    return value


Endpoint = Annotated[str, AfterValidator(_endpoint)]
"""A broker node, `host:port` (e.g. `10.0.0.11:1883`)."""


def split_endpoint(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class AmqpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: list[Endpoint] = Field(
        default_factory=lambda: ["127.0.0.1:5672"], min_length=1, title="AMQP nodes",
        description="The RabbitMQ cluster's AMQP listeners, host:port; the intake connects to one and moves to the "
                    "next when it dies.")
    username: str = Field("guest", title="Username", description="AMQP user (needs configure/write/read on the "
                          "intake queue and read on amq.topic's bindings).")
    password: SecretStr = Field(SecretStr("guest"), title="Password", description="AMQP password (never logged).")
    vhost: str = Field("/", title="Virtual host", description="The vhost the MQTT plugin publishes into "
                       "(mqtt.vhost in rabbitmq.conf).")
    exchange: str = Field("amq.topic", title="Exchange", description="The topic exchange the MQTT plugin publishes "
                          "to (mqtt.exchange in rabbitmq.conf).")
    queue: str = Field("firelink.intake", pattern=QUEUE_NAME_PATTERN, title="Intake queue",
                       description="The durable quorum queue the cores share; bound to every intake topic.")
    prefetch: int = Field(1000, ge=1, le=65535, title="Prefetch", description="Unacknowledged messages one core "
                          "holds at most (a batch commits up to 500 alarms at once).")
    connect_timeout_s: float = Field(5.0, gt=0, title="Connect timeout",
                                     description="Seconds one connection attempt to a node may take.")
