"""Every hazard/evaluation route refuses every role it does not list (403), and anonymous callers (401)."""

from __future__ import annotations

import re

import console.api_hazards as mod
from tests.hazards.conftest import config, hazard_app
from tests.support import TEST_USERS, Api

ROUTES = list(mod.routes)


async def test_role_boundaries(sqlite_url: str) -> None:
    assert len(ROUTES) >= 20
    async with hazard_app(config(sqlite_url)) as running:
        anon = Api(running.url)
        clients = {}
        for name in TEST_USERS:
            clients[name] = Api(running.url)
            await clients[name].login(name, f"{name}-pw")
        try:
            for r in ROUTES:
                path = re.sub(r"\{[a-z_]+\}", "1", r.path)
                assert (await anon.request(r.method, path, {}))[0] == 401, path
                for name, client in clients.items():
                    role = TEST_USERS[name]["role"]
                    if role in (r.roles or ()):
                        continue
                    status, body = await client.request(r.method, path, {})
                    assert status == 403, (r.method, path, name, status, body)
        finally:
            await anon.close()
            for c in clients.values():
                await c.close()
