"""Declares a RabbitMQ cluster's intake queue (quorum) and its bindings, from the Firelink configuration.

    python -m ingest.amqp_declare --config /etc/firelink/firelink.yaml

Run once when setting the cluster up, before devices publish (docs/deploy.md, 8.4). The cores declare the same
at every connection; declaring again is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from config.loader import load
from ingest.amqp_intake import binding_keys, declare_intake


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML config (default: $FIRELINK_CONFIG, config/firelink.yaml)")
    args = ap.parse_args(argv)
    cfg, source = load(args.config)
    try:
        node = asyncio.run(declare_intake(cfg.amqp, cfg.mqtt.topic_prefix))
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{cfg.amqp.queue} (quorum) declared on {node} ({source}), bound on {cfg.amqp.exchange} to "
          + ", ".join(binding_keys(cfg.mqtt.topic_prefix)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
