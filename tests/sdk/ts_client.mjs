#!/usr/bin/env node
// Independent-client check of the pdchannels MCP server with the official TypeScript SDK
// (@modelcontextprotocol/sdk, pinned in package.json) over stdio or Streamable HTTP.
//
// Usage: node ts_client.mjs -- /path/to/pdchannels --db /tmp/x.db mcp        (stdio)
//        PDCHANNELS_TOKEN=pdc_... node ts_client.mjs http://127.0.0.1:PORT/mcp   (HTTP)
//
// Over HTTP the token goes in `Authorization: Bearer` (requestInit headers). HTTP mode runs the
// same checks as stdio, plus: the server assigned a session id, the negotiated protocol version
// is the SDK's latest (2025-11-25 for 1.32), and DELETE with the session id ends the session (a later request with
// that id gets 404).
//
// The SDK client validates structuredContent against each tool's outputSchema once listTools
// has been called, so listTools runs first: a passing callTool also proves that the server's
// structured output conforms to the schema it declares.
//
// Prints `ts-sdk: N passed, M failed` and exits non-zero on any failure.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';

const TOOLS = [
  'channels_create',
  'channels_receive_message',
  'channels_delete',
  'channels_delete_conversation',
  'channels_list_conversations',
  'channels_get_conversation',
  'channels_send_message',
  'channels_list_templates',
];

/** The MCP endpoint URL when the first argument is one (HTTP mode), else undefined. */
function httpTarget(argv) {
  return argv.length > 0 && /^https?:\/\//.test(argv[0]) ? argv[0] : undefined;
}

function serverCommand(argv) {
  const dash = argv.indexOf('--');
  const rest = dash >= 0 ? argv.slice(dash + 1) : argv;
  if (rest.length === 0) {
    console.error('usage: node ts_client.mjs -- /path/to/pdchannels --db /tmp/x.db mcp');
    process.exit(2);
  }
  return { command: rest[0], args: rest.slice(1) };
}

let passed = 0;
let failed = 0;

/** Runs one named check; a thrown error or a false assertion counts as a failure. */
async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok   - ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL - ${name}: ${err && err.message ? err.message : String(err)}`);
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

function textOf(result) {
  return (result.content ?? [])
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('\n');
}

async function main() {
  const argv = process.argv.slice(2);
  const url = httpTarget(argv);
  let transport;
  let token;
  if (url) {
    token = process.env.PDCHANNELS_TOKEN;
    if (!token) {
      console.error('ts_client.mjs: set PDCHANNELS_TOKEN to the hub API token for HTTP mode');
      process.exit(2);
    }
    transport = new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    });
  } else {
    const { command, args } = serverCommand(argv);
    transport = new StdioClientTransport({ command, args, stderr: 'inherit' });
  }
  const client = new Client({ name: 'pdchannels-ts-sdk-check', version: '0.0.0' });

  try {
    await check('connect (initialize handshake)', async () => {
      await client.connect(transport);
      const info = client.getServerVersion();
      assert(info && info.name === 'pdchannels', `unexpected serverInfo ${JSON.stringify(info)}`);
      assert(client.getServerCapabilities()?.tools, 'server did not declare the tools capability');
    });

    if (url) {
      await check('HTTP: session id assigned and protocol version negotiated', async () => {
        assert(transport.sessionId, 'no Mcp-Session-Id from the server');
        const v = transport.protocolVersion;
        assert(v === LATEST_PROTOCOL_VERSION, `negotiated protocol version ${v}, want ${LATEST_PROTOCOL_VERSION} (the one the SDK asked for)`);
      });
    }

    await check(`tools/list has all ${TOOLS.length} tools, each with an outputSchema, in under 16 KB`, async () => {
      const { tools } = await client.listTools();
      const byName = new Map(tools.map((t) => [t.name, t]));
      for (const name of TOOLS) {
        const tool = byName.get(name);
        assert(tool, `tool ${name} missing (got ${[...byName.keys()].join(', ')})`);
        assert(tool.outputSchema && tool.outputSchema.type === 'object', `tool ${name} has no object outputSchema`);
      }
      const size = Buffer.byteLength(JSON.stringify({ tools }));
      assert(size < 16 * 1024, `tools/list is ${size} bytes, want under 16 KB`);
    });

    const channelId = `ts-sdk-channel-${process.pid}`;
    await check('channels_create succeeds and matches its outputSchema', async () => {
      const result = await client.callTool({
        name: 'channels_create',
        arguments: { name: 'TS SDK check', provider_channel_id: channelId, provider_type: 'whatsapp' },
      });
      assert(result.isError === false, `isError is ${result.isError}: ${textOf(result)}`);
      const sc = result.structuredContent;
      assert(sc && sc.success === true, `structuredContent.success is not true: ${JSON.stringify(sc)}`);
      assert(sc.data.provider_channel_id === channelId, `data.provider_channel_id is ${sc.data.provider_channel_id}`);
    });

    await check('channels_receive_message succeeds and matches its outputSchema', async () => {
      const id = `ts-sdk-msg-${process.pid}`;
      const result = await client.callTool({
        name: 'channels_receive_message',
        arguments: {
          id,
          channel_id: channelId,
          sender_id: 'ts-sender',
          conversation_id: 'ts-conversation',
          message: 'Hello from the TypeScript SDK',
          status: 'sent',
          created_at: '2024-05-01T10:20:30.000Z',
        },
      });
      assert(result.isError === false, `isError is ${result.isError}: ${textOf(result)}`);
      const sc = result.structuredContent;
      assert(sc && sc.success === true, `structuredContent.success is not true: ${JSON.stringify(sc)}`);
      assert(sc.data && sc.data.id === id, `structuredContent.data.id is ${sc.data && sc.data.id}, want ${id}`);
    });

    await check('channels_list_conversations finds the conversation and matches its outputSchema', async () => {
      const result = await client.callTool({ name: 'channels_list_conversations', arguments: { channel_id: channelId } });
      assert(result.isError === false, `isError is ${result.isError}: ${textOf(result)}`);
      const ids = result.structuredContent.data.map((c) => c.conversation_id);
      assert(ids.includes('ts-conversation'), `conversations listed: ${JSON.stringify(ids)}`);
    });

    await check('channels_get_conversation shows the message and matches its outputSchema', async () => {
      const result = await client.callTool({
        name: 'channels_get_conversation',
        arguments: { channel_id: channelId, conversation_id: 'ts-conversation' },
      });
      assert(result.isError === false, `isError is ${result.isError}: ${textOf(result)}`);
      const texts = result.structuredContent.data.messages.map((m) => m.message);
      assert(texts.includes('Hello from the TypeScript SDK'), `messages: ${JSON.stringify(texts)}`);
    });

    // A channel of no provider app cannot send: a tool error (validated against the outputSchema
    // by callTool) that says why and how to link an app.
    await check('channels_send_message on a channel of no app is a tool error saying how to link one', async () => {
      const result = await client.callTool({
        name: 'channels_send_message',
        arguments: { channel_id: channelId, conversation_id: 'ts-conversation', message: 'Hi' },
      });
      assert(result.isError === true, `isError is ${result.isError}, want true`);
      assert(textOf(result).includes('channels link'), `error text: ${JSON.stringify(textOf(result))}`);
    });

    const badArgs = {
      id: `ts-sdk-bad-${process.pid}`,
      channel_id: channelId,
      sender_id: 'ts-sender',
      conversation_id: 'ts-conversation',
      message: 'bad',
      status: 'seen', // not one of sent|delivered|read|failed; created_at is missing
    };

    // The raw request skips the SDK's output-schema check, so this looks only at the tool
    // error itself: isError true and a text that names the bad field.
    await check('channels_receive_message with bad args is a tool error naming `status`', async () => {
      const result = await client.request(
        { method: 'tools/call', params: { name: 'channels_receive_message', arguments: badArgs } },
        CallToolResultSchema,
      );
      assert(result.isError === true, `isError is ${result.isError}, want true`);
      const text = textOf(result);
      assert(text.includes('status'), `error text does not mention status: ${JSON.stringify(text)}`);
    });

    // Through callTool the SDK also validates the error's structuredContent (when present)
    // against the tool's outputSchema, as it does for successes.
    await check('channels_receive_message tool error passes the SDK output-schema check', async () => {
      const result = await client.callTool({ name: 'channels_receive_message', arguments: badArgs });
      assert(result.isError === true, `isError is ${result.isError}, want true`);
      assert(textOf(result).includes('status'), 'error text does not mention status');
    });

    if (url) {
      await check('HTTP: DELETE ends the session, then the old session id gets 404', async () => {
        const sessionId = transport.sessionId;
        assert(sessionId, 'no session id to end');
        await transport.terminateSession(); // throws unless 2xx or 405
        const res = await fetch(url, {
          method: 'POST',
          headers: {
            Authorization: `Bearer ${token}`,
            'Content-Type': 'application/json',
            Accept: 'application/json, text/event-stream',
            'Mcp-Session-Id': sessionId,
            'Mcp-Protocol-Version': transport.protocolVersion,
          },
          body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list', params: {} }),
        });
        await res.body?.cancel();
        assert(res.status === 404, `request on the ended session got HTTP ${res.status}, want 404`);
      });
    }
  } finally {
    await client.close().catch(() => {});
  }

  console.log(`ts-sdk: ${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((err) => {
  console.error(err);
  console.log(`ts-sdk: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
