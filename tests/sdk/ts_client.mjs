#!/usr/bin/env node
// Independent-client check of the pdchannels MCP server with the official TypeScript SDK
// (@modelcontextprotocol/sdk, pinned in package.json) over stdio.
//
// Usage: node ts_client.mjs -- /path/to/pdchannels --db /tmp/x.db mcp
//
// The SDK client validates structuredContent against each tool's outputSchema once listTools
// has been called, so listTools runs first: a passing callTool also proves that the server's
// structured output conforms to the schema it declares.
//
// Prints `ts-sdk: N passed, M failed` and exits non-zero on any failure.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

const TOOLS = [
  'channels_create',
  'channels_receive_message',
  'channels_delete',
  'channels_delete_conversation',
];

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
  const { command, args } = serverCommand(process.argv.slice(2));
  const transport = new StdioClientTransport({ command, args, stderr: 'inherit' });
  const client = new Client({ name: 'pdchannels-ts-sdk-check', version: '0.0.0' });

  try {
    await check('connect (initialize handshake)', async () => {
      await client.connect(transport);
      const info = client.getServerVersion();
      assert(info && info.name === 'pdchannels', `unexpected serverInfo ${JSON.stringify(info)}`);
      assert(client.getServerCapabilities()?.tools, 'server did not declare the tools capability');
    });

    await check('tools/list has all four tools, each with an outputSchema', async () => {
      const { tools } = await client.listTools();
      const byName = new Map(tools.map((t) => [t.name, t]));
      for (const name of TOOLS) {
        const tool = byName.get(name);
        assert(tool, `tool ${name} missing (got ${[...byName.keys()].join(', ')})`);
        assert(tool.outputSchema && tool.outputSchema.type === 'object', `tool ${name} has no object outputSchema`);
      }
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
