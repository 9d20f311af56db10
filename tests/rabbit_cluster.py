"""A throw-away local RabbitMQ cluster (N nodes, MQTT plugin, quorum intake queue) for tests and benches.

Each node has its own name, AMQP/MQTT/distribution ports and data folder under one temporary folder, and the
cluster its own Erlang cookie, so the machine's RabbitMQ (rabbit@localhost, 5672) is never touched. The nodes find
each other at boot by peer discovery (classic_config: the same node list in every node's rabbitmq.conf), the way
docs/deploy.md has operators do it; a node restarted after kill -9 rejoins from its data folder.

    python -m tests.rabbit_cluster --nodes 3     # starts one, prints its ports, stops it on Enter
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_ports, port_open

SBIN = Path("/usr/lib/rabbitmq/bin")
SERVER = SBIN / "rabbitmq-server"
CTL = SBIN / "rabbitmqctl"
INTAKE_QUEUE = "firelink.intake"


@dataclass
class RabbitNode:
    index: int
    name: str
    amqp_port: int
    mqtt_port: int
    dist_port: int
    base: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def mqtt(self) -> str:
        return f"127.0.0.1:{self.mqtt_port}"

    @property
    def amqp(self) -> str:
        return f"127.0.0.1:{self.amqp_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class RabbitCluster:
    size: int = 3
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="firelink-rmq-")))
    nodes: list[RabbitNode] = field(default_factory=list)
    start_s: float = 0.0  # how long the last start() took

    def __post_init__(self) -> None:
        tag = secrets.token_hex(3)
        ports = free_ports(3 * self.size)
        (self.workdir / "home").mkdir(parents=True, exist_ok=True)
        cookie = self.workdir / "home" / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        for i in range(self.size):
            amqp, mqtt, dist = ports[3 * i: 3 * i + 3]
            self.nodes.append(RabbitNode(i, f"fl{tag}n{i}@localhost", amqp, mqtt, dist, self.workdir / f"n{i}"))
        for node in self.nodes:
            self._write_config(node)

    # --- configuration --------------------------------------------------------------

    def _write_config(self, node: RabbitNode) -> None:
        node.base.mkdir(parents=True, exist_ok=True)
        peers = "\n".join(f"cluster_formation.classic_config.nodes.{n.index + 1} = {n.name}" for n in self.nodes)
        (node.base / "rabbitmq.conf").write_text(f"""\
listeners.tcp.default = 127.0.0.1:{node.amqp_port}
loopback_users = none
log.console = false
log.file.level = warning
disk_free_limit.absolute = 50MB
cluster_formation.peer_discovery_backend = classic_config
{peers}
mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}
mqtt.allow_anonymous = true
mqtt.default_user = guest
mqtt.default_pass = guest
mqtt.vhost = /
mqtt.exchange = amq.topic
""")
        (node.base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (node.base / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's (it names the machine's node)

    def _env(self, node: RabbitNode) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self.workdir / "home"),  # the cluster's own Erlang cookie
            "RABBITMQ_CONF_ENV_FILE": str(node.base / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "RABBITMQ_PID_FILE": str(node.base / "pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        })
        return env

    # --- lifecycle ---------------------------------------------------------------

    def start(self, timeout_s: float = 180.0) -> float:
        """Starts the nodes one after another, each joining the cluster the ones before it formed, and waits until
        they form one cluster; returns the seconds it took.

        Not in parallel: RabbitMQ 3.10's MQTT plugin keeps its client ids in a Raft cluster (`mqtt_node`) that each
        node joins as it boots; joins that race are refused (cluster_change_not_permitted), a node stays out of it,
        and the two that are in it lose their quorum as soon as a test kills one of them: MQTT connections and the
        killed node's restart then hang for minutes (seen in CI and here)."""
        t0 = time.monotonic()
        for node in self.nodes:
            self._spawn(node)
            self.wait_up(node, timeout_s - (time.monotonic() - t0))
        self._wait_clustered(timeout_s - (time.monotonic() - t0))
        self.start_s = time.monotonic() - t0
        return self.start_s

    def _spawn(self, node: RabbitNode) -> None:
        log = open(node.base / "stdout.log", "ab")  # the child keeps it open
        # Its own process group: kill -9 takes the node's beam and its helpers (epmd is not in it: it daemonises).
        node.proc = subprocess.Popen([str(SERVER)], env=self._env(node), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def ctl(self, node: RabbitNode, *args: str, timeout_s: float = 60.0) -> str:
        out = subprocess.run([str(CTL), "-n", node.name, *args], env=self._env(node), capture_output=True,
                             stdin=subprocess.DEVNULL, timeout=timeout_s, check=True)
        return out.stdout.decode()

    def wait_up(self, node: RabbitNode, timeout_s: float = 60.0) -> None:
        """Returns once the node's app runs (its listeners, MQTT included, are open)."""
        deadline = time.monotonic() + max(timeout_s, 1.0)
        while time.monotonic() < deadline:
            if not node.alive():
                raise RuntimeError(f"RabbitMQ node {node.name} exited; see {node.base / 'log'}")
            try:
                self.ctl(node, "await_startup", "--timeout", "5", timeout_s=15)
                if port_open("127.0.0.1", node.mqtt_port):
                    return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.2)  # polling an external process: there is no event to await
        raise TimeoutError(f"RabbitMQ node {node.name} did not start within {timeout_s:.0f}s\n{self.log_tail(node)}")

    @staticmethod
    def up(node: RabbitNode) -> bool:
        """The node's process runs and its listeners are open (they open once its app has booted)."""
        return node.alive() and all(port_open("127.0.0.1", p) for p in (node.amqp_port, node.mqtt_port))

    def log_tail(self, node: RabbitNode, lines: int = 25) -> str:
        """The last lines of the node's console output and log, for a failure message."""
        out = []
        for path in [node.base / "stdout.log", *sorted((node.base / "log").glob("*.log"))]:
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(out)

    def _wait_clustered(self, timeout_s: float) -> None:
        deadline = time.monotonic() + max(timeout_s, 1.0)
        names = {n.name for n in self.nodes}
        while time.monotonic() < deadline:
            status = self.ctl(self.nodes[0], "cluster_status", "--formatter", "json")
            running = set(json.loads(status).get("running_nodes", []))
            if names <= running and names <= self.mqtt_members():
                return
            time.sleep(0.2)
        raise TimeoutError(f"RabbitMQ nodes did not form one cluster (MQTT client-id cluster: {self.mqtt_members()})")

    def mqtt_members(self) -> set[str]:
        """The nodes in the MQTT plugin's client-id Raft cluster, as node 0 sees it."""
        members = "{ok, M, _} = ra:members({mqtt_node, node()}), [atom_to_list(N) || {_, N} <- M]."
        out = self.ctl(self.nodes[0], "eval", members)
        return set(re.findall(r'"([^"]+)"', out))

    def kill(self, i: int) -> None:
        """kill -9 of node i (its whole process group): no shutdown, no flush."""
        node = self.nodes[i]
        if node.proc is not None and node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait()

    def restart(self, i: int, timeout_s: float = 90.0) -> float:
        """Starts node i again from its data folder (after kill -9); returns the seconds it took."""
        t0 = time.monotonic()
        self.kill(i)
        self._spawn(self.nodes[i])
        self.wait_up(self.nodes[i], timeout_s)
        return time.monotonic() - t0

    def heal(self) -> None:
        """Restarts every node that is not up (a test that kills one restores it; this covers one that could not)."""
        for node in self.nodes:
            if not self.up(node):
                self.restart(node.index)

    def stop(self, keep: bool = False) -> None:
        """Kills every node; removes the data and logs unless `keep`."""
        for i in range(len(self.nodes)):
            self.kill(i)
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- addresses ----------------------------------------------------------------

    def mqtt_nodes(self) -> list[str]:
        return [n.mqtt for n in self.nodes]

    def amqp_nodes(self) -> list[str]:
        return [n.amqp for n in self.nodes]

    def queue_info(self, queue: str = INTAKE_QUEUE) -> str:
        for node in self.nodes:
            if node.alive():
                return self.ctl(node, "list_queues", "name", "type", "messages", "leader", "members")
        return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3)
    args = ap.parse_args()
    cluster = RabbitCluster(args.nodes)
    try:
        took = cluster.start()
        print(f"{args.nodes}-node RabbitMQ cluster up in {took:.1f}s (folder {cluster.workdir})")
        for n in cluster.nodes:
            print(f"  {n.name}: amqp {n.amqp}  mqtt {n.mqtt}  dist {n.dist_port}")
        input("Enter stops it. ")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
