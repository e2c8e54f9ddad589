#!/usr/bin/env python3
"""Independent-client check of the pdchannels MCP server with the official Python SDK over stdio.

Usage (inside the venv that has the pinned `mcp` from requirements.txt):

    python py_client.py -- /path/to/pdchannels --db /tmp/x.db mcp

It connects with `stdio_client` + `ClientSession`, lists the tools (all four must be there, each
with an outputSchema), calls channels_create and channels_receive_message with valid arguments
(isError false, structuredContent.success true, data.id as sent), then channels_receive_message
with bad arguments (isError true, the text names `status`). The SDK validates a successful
result's structuredContent against the tool's outputSchema, so list_tools runs first and a
passing call also proves output-schema conformance.

Works with the 1.x SDK (camelCase attributes) and the 2.x SDK (snake_case attributes).
Prints `py-sdk: N passed, M failed` and exits non-zero on any failure.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Awaitable, Callable

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

TOOLS = (
    "channels_create",
    "channels_receive_message",
    "channels_delete",
    "channels_delete_conversation",
)


def field(obj: Any, snake: str, camel: str) -> Any:
    """An attribute under its 2.x (snake_case) or 1.x (camelCase) name."""
    if hasattr(obj, snake):
        return getattr(obj, snake)
    return getattr(obj, camel)


def text_of(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def server_command(argv: list[str]) -> tuple[str, list[str]]:
    rest = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if not rest:
        print("usage: python py_client.py -- /path/to/pdchannels --db /tmp/x.db mcp", file=sys.stderr)
        sys.exit(2)
    return rest[0], rest[1:]


class Checks:
    """Counts named checks; an exception or failed assertion in one is a failure."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    async def run(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except Exception as err:  # noqa: BLE001 - every failure is reported, none is fatal
            self.failed += 1
            print(f"FAIL - {name}: {type(err).__name__}: {err}", flush=True)
        else:
            self.passed += 1
            print(f"ok   - {name}", flush=True)


async def main(argv: list[str]) -> int:
    command, args = server_command(argv)
    params = StdioServerParameters(command=command, args=args)
    checks = Checks()
    channel_id = f"py-sdk-channel-{os.getpid()}"
    message_id = f"py-sdk-msg-{os.getpid()}"

    try:
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:

                async def initialize() -> None:
                    result = await session.initialize()
                    info = field(result, "server_info", "serverInfo")
                    assert info.name == "pdchannels", f"unexpected serverInfo {info!r}"
                    assert result.capabilities.tools is not None, "no tools capability"

                async def list_tools() -> None:
                    result = await session.list_tools()
                    by_name = {t.name: t for t in result.tools}
                    for name in TOOLS:
                        assert name in by_name, f"tool {name} missing (got {sorted(by_name)})"
                        schema = field(by_name[name], "output_schema", "outputSchema")
                        assert schema and schema.get("type") == "object", f"tool {name} has no object outputSchema"

                async def create() -> None:
                    result = await session.call_tool(
                        "channels_create",
                        {"name": "Python SDK check", "provider_channel_id": channel_id, "provider_type": "facebook"},
                    )
                    assert field(result, "is_error", "isError") is False, f"isError: {text_of(result)}"
                    sc = field(result, "structured_content", "structuredContent")
                    assert sc and sc.get("success") is True, f"structuredContent.success is not true: {sc!r}"
                    assert sc["data"]["provider_channel_id"] == channel_id, f"data: {sc['data']!r}"

                async def receive() -> None:
                    result = await session.call_tool(
                        "channels_receive_message",
                        {
                            "id": message_id,
                            "channel_id": channel_id,
                            "sender_id": "py-sender",
                            "conversation_id": "py-conversation",
                            "message": "Hello from the Python SDK",
                            "status": "delivered",
                            "created_at": "2024-05-01T10:20:30.000Z",
                        },
                    )
                    assert field(result, "is_error", "isError") is False, f"isError: {text_of(result)}"
                    sc = field(result, "structured_content", "structuredContent")
                    assert sc and sc.get("success") is True, f"structuredContent.success is not true: {sc!r}"
                    assert sc["data"]["id"] == message_id, f"data.id is {sc['data'].get('id')!r}, want {message_id!r}"

                async def bad_args() -> None:
                    result = await session.call_tool(
                        "channels_receive_message",
                        {
                            "id": f"py-sdk-bad-{os.getpid()}",
                            "channel_id": channel_id,
                            "sender_id": "py-sender",
                            "conversation_id": "py-conversation",
                            "message": "bad",
                            "status": "seen",  # not a status; created_at is missing too
                        },
                    )
                    assert field(result, "is_error", "isError") is True, "isError is not true"
                    text = text_of(result)
                    assert "status" in text, f"error text does not mention status: {text!r}"

                await checks.run("initialize handshake", initialize)
                await checks.run("tools/list has all four tools, each with an outputSchema", list_tools)
                await checks.run("channels_create succeeds and matches its outputSchema", create)
                await checks.run("channels_receive_message succeeds and matches its outputSchema", receive)
                await checks.run("channels_receive_message with bad args is a tool error naming `status`", bad_args)
    except BaseException as err:  # noqa: BLE001 - a broken session is one more failure
        checks.failed += 1
        print(f"FAIL - session: {type(err).__name__}: {err}", flush=True)
        traceback.print_exc()

    print(f"py-sdk: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
