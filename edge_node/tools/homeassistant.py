"""A Home Assistant tool: the example plugin (entry point ``homeassistant`` in ``xiaozhi.tools``).

Calls a Home Assistant service over its REST API (``POST /api/services/<domain>/<service>`` with a
long-lived access token), e.g. ``light.turn_on`` for ``light.kitchen``. Configured in the edge config::

    tools:
      enabled: true
      plugins:
        homeassistant:
          url: http://homeassistant.local:8123
          token_env: HASS_TOKEN          # the variable holding the token (never in the config)
          entities: [light.kitchen, switch.fan]   # what the model may touch (empty: anything)
"""

from __future__ import annotations

import os
import re
from typing import Any

import httpx

from edge_node.language.phrases import say
from edge_node.tools.base import ToolContext, ToolError

__all__ = ["HomeAssistantTool", "make_tool"]

_ID = re.compile(r"^[a-z_]+$")
_ENTITY = re.compile(r"^[a-z_]+\.[a-z0-9_]+$")


class HomeAssistantTool:
    name = "home_assistant"

    def __init__(self, url: str, token: str, entities: list[str], timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self._token = token
        self.entities = entities
        self.timeout_s = timeout_s
        known = f" Entities: {', '.join(entities)}." if entities else ""
        self.description = (
            "Control the home: call a Home Assistant service on an entity, e.g. domain light, service "
            f"turn_on, entity_id light.kitchen.{known}"
        )
        self.parameters: dict[str, Any] = {
            "type": "object",
            "properties": {
                "domain": {"type": "string", "description": "light, switch, cover, climate, ..."},
                "service": {"type": "string", "description": "turn_on, turn_off, toggle, ..."},
                "entity_id": {"type": "string", "enum": entities} if entities else {"type": "string"},
            },
            "required": ["domain", "service", "entity_id"],
        }

    async def call(self, arguments: dict[str, Any], ctx: ToolContext) -> str:
        domain, service = str(arguments.get("domain", "")), str(arguments.get("service", ""))
        entity = str(arguments.get("entity_id", ""))
        if not (_ID.match(domain) and _ID.match(service) and _ENTITY.match(entity)):
            raise ToolError(f"bad service call {domain}.{service} on {entity!r}")
        if self.entities and entity not in self.entities:
            raise ToolError(f"entity {entity} is not one this node may control")
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            try:
                resp = await client.post(
                    f"{self.url}/api/services/{domain}/{service}",
                    json={"entity_id": entity},
                    headers={"Authorization": f"Bearer {self._token}"},
                )
            except httpx.HTTPError as exc:
                raise ToolError(f"Home Assistant unreachable: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise ToolError(f"Home Assistant answered HTTP {resp.status_code} to {domain}.{service}")
        return say(ctx.language, "tool_done")


def make_tool(settings: dict[str, Any]) -> HomeAssistantTool:
    url = str(settings.get("url", ""))
    token_env = str(settings.get("token_env", "HASS_TOKEN"))
    token = os.environ.get(token_env, "")
    if not token:
        raise ValueError(f"no token in the environment variable {token_env}")
    entities = [str(e) for e in settings.get("entities", [])]
    return HomeAssistantTool(url, token, entities, float(settings.get("timeout_s", 5.0)))
