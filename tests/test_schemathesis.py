"""schemathesis against the real app on loopback: generated requests, valid and invalid, to every operation of
/api/openapi.json as a logged-in duty officer (session cookie + X-CSRF-Token). No server error, no status or
content type the document does not declare, no response off its schema, no invalid request accepted.

Bounded: a fixed number of examples per operation and generation mode, derandomized so a run is repeatable.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.support import Api, base_config, running_app

# (method, path) → why it is not fuzzed. Nothing else is left out.
EXCLUDED = {("POST", "/api/logout"): "ends the officer's session that every other generated request runs under"}
EXAMPLES = {GenerationMode.POSITIVE: 4, GenerationMode.NEGATIVE: 4}
SLOW = {"/api/kpi/report.pdf": 1, "/api/login": 2}  # a PDF (WeasyPrint) or an Argon2 check per request


def fuzz(base: str, cookie: str, csrf: str) -> tuple[list[str], int, list[str]]:
    """Runs every operation; returns (failures, requests made, operations run)."""
    # The session as the document's security schemes: schemathesis then knows it is real auth (and probes
    # without it), and does not generate cookies of its own.
    # positive_data_acceptance is off: a schema-valid request may still be refused for reasons JSON Schema does not
    # express (an unknown unit or category, a period before 1900, "a photo or a note", a missing WebSocket upgrade);
    # those answers are 4xx with a reason, which the other checks hold to the document.
    config = schemathesis.Config.from_dict({
        "auth": {"openapi": {"session": {"api_key": cookie}, "csrf": {"api_key": csrf}}},
        "checks": {"positive_data_acceptance": {"enabled": False}},
    })
    schema = schemathesis.openapi.from_url(base + "/api/openapi.json", config=config)
    http = requests.Session()
    failures: list[str] = []
    calls = 0
    ran: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in EXCLUDED:
            continue
        ran.append(f"{op.method.upper()} {op.path}")
        for mode, count in EXAMPLES.items():
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=SLOW.get(op.path, count), deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def one(case: Any) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(session=http, timeout=30)

            try:
                one()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing in the request can be made invalid
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failures, then report them all
                failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {exc}")
    return failures, calls, ran


async def test_schemathesis_finds_no_server_error_undocumented_status_or_accepted_violation(db_url: str) -> None:
    cfg = base_config(db_url, None)
    async with running_app(cfg, mqtt=False) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        cookie = next(c.value for c in officer.http.cookie_jar if c.key == "firelink_session")
        assert officer.csrf is not None
        t0 = time.monotonic()
        failures, calls, ran = await asyncio.to_thread(fuzz, app.url, cookie, officer.csrf)
        print(f"schemathesis: {calls} requests over {len(ran)} operations in {time.monotonic() - t0:.1f} s")
        assert not failures, "\n\n".join(failures)
        assert len(ran) >= 55 and calls >= 5 * len(ran)
        # the officer's session survived the run (nothing but logout could end it)
        assert (await officer.get("/api/me"))["user"]["username"] == "officer"
        await officer.close()
