#!/usr/bin/env python3
"""Independent-client check of the pdchannels MCP server with the official Python SDK over stdio
or Streamable HTTP.

Usage (inside the venv that has the pinned `mcp` from requirements.txt):

    python py_client.py -- /path/to/pdchannels --db /tmp/x.db mcp               (stdio)
    PDCHANNELS_TOKEN=pdc_... python py_client.py http://127.0.0.1:PORT/mcp        (HTTP)

It connects with `stdio_client` (or `streamable_http_client`, whose httpx client sends the token
as `Authorization: Bearer`) + `ClientSession`, lists the tools (all four must be there, each
with an outputSchema), calls channels_create and channels_receive_message with valid arguments
(isError false, structuredContent.success true, data.id as sent), then channels_receive_message
with bad arguments (isError true, the text names `status`). The SDK validates a successful
result's structuredContent against the tool's outputSchema, so list_tools runs first and a
passing call also proves output-schema conformance.

HTTP mode adds one check with the 2.x high-level `Client` in its default mode="auto": it probes
`server/discover` (2026-07-28) first, adopts its result if the server answers it, and falls back
to `initialize` on an error; a server that does not answer the probe at once stalls every connect
for the SDK's 10 s probe timeout. The check
wants the connect, tools/list included, within 5 s, and then a channels_create call that succeeds
in whichever protocol era was negotiated. (Skipped with the 1.x SDK, which has no
`Client`.)

Works with the 1.x SDK (camelCase attributes) and the 2.x SDK (snake_case attributes).
Prints `py-sdk: N passed, M failed` and exits non-zero on any failure.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from contextlib import AsyncExitStack
from typing import Any, Awaitable, Callable

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

TOOLS = (
    "channels_create",
    "channels_receive_message",
    "channels_delete",
    "channels_delete_conversation",
    "channels_list_conversations",
    "channels_get_conversation",
    "channels_send_message",
    "channels_list_templates",
)


def field(obj: Any, snake: str, camel: str) -> Any:
    """An attribute under its 2.x (snake_case) or 1.x (camelCase) name."""
    if hasattr(obj, snake):
        return getattr(obj, snake)
    return getattr(obj, camel)


def text_of(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def http_target(argv: list[str]) -> str | None:
    """The MCP endpoint URL when the first argument is one (HTTP mode), else None."""
    if argv and (argv[0].startswith("http://") or argv[0].startswith("https://")):
        return argv[0]
    return None


def http_streams(url: str, token: str) -> Any:
    """A Streamable HTTP transport context for `url` whose requests carry the token.

    2.x: `streamable_http_client(url, http_client=...)` with an httpx2 client; 1.x: the same
    function with an httpx client, or the older `streamablehttp_client(url, headers=...)`.
    """
    headers = {"Authorization": f"Bearer {token}"}
    from mcp.client import streamable_http as sh

    if hasattr(sh, "streamable_http_client"):
        from mcp.shared._httpx_utils import create_mcp_http_client

        return sh.streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    return sh.streamablehttp_client(url, headers=headers)  # pragma: no cover - old 1.x


def server_command(argv: list[str]) -> tuple[str, list[str]]:
    rest = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if not rest:
        print("usage: python py_client.py -- /path/to/pdchannels --db /tmp/x.db mcp", file=sys.stderr)
        sys.exit(2)
    return rest[0], rest[1:]


class _SdkWarnings(logging.Handler):
    """Shows the SDK's own warnings (e.g. "Session termination failed: 202") as `warn -` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"warn - SDK ({record.name}): {record.getMessage()}", flush=True)


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
    sdk_logger = logging.getLogger("mcp")
    sdk_logger.addHandler(_SdkWarnings(level=logging.WARNING))
    sdk_logger.setLevel(logging.WARNING)
    url = http_target(argv)
    token = os.environ.get("PDCHANNELS_TOKEN", "")
    if url:
        if not token:
            print("py_client.py: set PDCHANNELS_TOKEN to the hub API token for HTTP mode", file=sys.stderr)
            return 2
    else:
        command, args = server_command(argv)
        params = StdioServerParameters(command=command, args=args)
    checks = Checks()
    channel_id = f"py-sdk-channel-{os.getpid()}"
    message_id = f"py-sdk-msg-{os.getpid()}"

    try:
        async with AsyncExitStack() as stack:
            if url:
                # 2.x yields (read, write); 1.x yields (read, write, get_session_id).
                streams = await stack.enter_async_context(http_streams(url, token))
            else:
                streams = await stack.enter_async_context(stdio_client(params))
            read, write = streams[0], streams[1]
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

                async def read_back() -> None:
                    result = await session.call_tool(
                        "channels_get_conversation", {"channel_id": channel_id, "conversation_id": "py-conversation"}
                    )
                    assert field(result, "is_error", "isError") is False, f"isError: {text_of(result)}"
                    sc = field(result, "structured_content", "structuredContent")
                    texts = [m.get("message") for m in sc["data"]["messages"]]
                    assert "Hello from the Python SDK" in texts, f"messages: {texts!r}"
                    result = await session.call_tool("channels_list_conversations", {"channel_id": channel_id})
                    assert field(result, "is_error", "isError") is False, f"isError: {text_of(result)}"
                    sc = field(result, "structured_content", "structuredContent")
                    ids = [c["conversation_id"] for c in sc["data"]]
                    assert "py-conversation" in ids, f"conversations: {ids!r}"

                async def send_without_app() -> None:
                    result = await session.call_tool(
                        "channels_send_message",
                        {"channel_id": channel_id, "conversation_id": "py-conversation", "message": "Hi"},
                    )
                    assert field(result, "is_error", "isError") is True, "isError is not true"
                    text = text_of(result)
                    assert "channels link" in text, f"error text does not say how to link an app: {text!r}"

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
                await checks.run(f"tools/list has all {len(TOOLS)} tools, each with an outputSchema", list_tools)
                await checks.run("channels_create succeeds and matches its outputSchema", create)
                await checks.run("channels_receive_message succeeds and matches its outputSchema", receive)
                await checks.run("channels_receive_message with bad args is a tool error naming `status`", bad_args)
                await checks.run("channels_get_conversation and channels_list_conversations read it back", read_back)
                await checks.run("channels_send_message on a channel of no app says how to link one", send_without_app)
    except BaseException as err:  # noqa: BLE001 - a broken session is one more failure
        checks.failed += 1
        print(f"FAIL - session: {type(err).__name__}: {err}", flush=True)
        traceback.print_exc()

    if url:
        await auto_mode_check(checks, url, token)

    print(f"py-sdk: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 0 if checks.failed == 0 else 1


async def auto_mode_check(checks: Checks, url: str, token: str) -> None:
    """The 2.x `Client` in mode="auto" (server/discover probe, then initialize) connects at once."""
    try:
        from mcp import Client
    except ImportError:  # 1.x
        print("skip - HTTP: Client(mode='auto') connects promptly (needs mcp 2.x)", flush=True)
        return

    async def connect_auto() -> None:
        started = time.monotonic()
        with anyio.fail_after(15):
            async with Client(http_streams(url, token), mode="auto") as client:
                tools = await client.list_tools()
                elapsed = time.monotonic() - started
                names = {t.name for t in tools.tools}
                assert set(TOOLS) <= names, f"tools missing: {sorted(set(TOOLS) - names)}"
                version = client.protocol_version
                # A tool call in whatever era was negotiated (2026-07-28 calls carry _meta, no session).
                channel_id = f"py-sdk-auto-channel-{os.getpid()}"
                result = await client.call_tool(
                    "channels_create",
                    {"name": "Python SDK auto mode", "provider_channel_id": channel_id, "provider_type": "other"},
                )
                assert result.is_error is False, f"isError: {text_of(result)}"
                sc = result.structured_content
                assert sc and sc.get("success") is True, f"structuredContent.success is not true: {sc!r}"
        assert elapsed < 5, (
            f"connect + tools/list took {elapsed:.1f} s (protocol {version}): "
            "the server/discover probe was not answered promptly"
        )
        print(f"     (auto mode negotiated {version} in {elapsed:.2f} s)", flush=True)

    await checks.run("HTTP: Client(mode='auto') connects promptly and calls a tool", connect_auto)


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
