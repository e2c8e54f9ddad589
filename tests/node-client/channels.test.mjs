// Code written for Pipedrive's Channels API, run against the pdchannels hub with only its base
// URL changed. It talks to the hub through the OFFICIAL Node client (npm package `pipedrive`,
// pinned in package.json), v1 `ChannelsApi`: addChannel, receiveMessage, deleteConversation,
// deleteChannel. Nothing in the SDK is patched or wrapped; the only extras are
//   * a passive observer of HTTP status codes (node:diagnostics_channel), because the SDK
//     rejects with the response body only and drops the status, and
//   * plain fetch() on the hub's read API (GET /v1/channels/{id}/conversations/{cid}), which
//     has no Pipedrive SDK method, to see the effect of the writes.
//
// Run: node --test channels.test.mjs   (PDCHANNELS_BIN overrides the binary; default
// ../../target/debug/pdchannels relative to this file). See run.sh.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { v1 } from 'pipedrive';

const { ChannelsApi, Configuration } = v1;
// package.json is not in the package's "exports", so read it from node_modules directly.
const SDK_VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/pipedrive/package.json', import.meta.url), 'utf8'),
).version;

const BIN =
  process.env.PDCHANNELS_BIN ||
  fileURLToPath(new URL('../../target/debug/pdchannels', import.meta.url));

const RFC3339_MS_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

// ---------------------------------------------------------------------------------------------
// Passive record of the status of every response the SDK's axios (node:http) receives. fetch()
// goes through undici, not node:http, so only SDK calls land here.
let lastStatus = null;
diagnostics.subscribe('http.client.response.finish', ({ response }) => {
  lastStatus = response.statusCode;
});

/** Runs one SDK call; resolves to { status, body } on success or { status, error } on rejection. */
async function sdk(call) {
  lastStatus = null;
  try {
    const body = await call();
    return { status: lastStatus, body };
  } catch (error) {
    return { status: lastStatus, error };
  }
}

/** Asserts that an sdk() result succeeded and returns its body. */
function ok(result, what) {
  if ('error' in result) {
    const detail =
      result.error instanceof Error ? result.error.stack : JSON.stringify(result.error);
    assert.fail(`${what}: the SDK rejected (HTTP ${result.status}): ${detail}`);
  }
  assert.equal(result.status, 200, `${what}: HTTP status`);
  return result.body;
}

// ---------------------------------------------------------------------------------------------
// The hub: spawned on a fresh database on 127.0.0.1:0; the token and the real address are read
// from what it prints to stderr on first start.
const hub = { proc: null, token: null, addr: null, stderr: '', exit: null, dir: null };

function startHub() {
  hub.dir = mkdtempSync(join(tmpdir(), 'pdc-node-client-'));
  const proc = spawn(BIN, ['--db', join(hub.dir, 'db'), 'serve', '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  hub.proc = proc;
  hub.exit = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`hub did not print its token and address in 20 s:\n${hub.stderr}`)),
      20_000,
    );
    proc.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${BIN}: ${err.message}`));
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`hub exited early (code ${code}, signal ${signal}):\n${hub.stderr}`));
    });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      hub.stderr += chunk;
      hub.token ??= hub.stderr.match(/pdc_[0-9a-f]{48}/)?.[0] ?? null;
      const listening = hub.stderr.match(/^pdchannels hub on http:\/\/(\S+)/m);
      if (listening && !hub.addr) {
        hub.addr = listening[1];
        clearTimeout(timer);
        if (!hub.token) reject(new Error(`no pdc_ token before the address line:\n${hub.stderr}`));
        else resolve();
      }
    });
  });
}

/** The official client, configured exactly as for Pipedrive except for basePath. */
function channelsApi(basePath, apiKey = hub.token) {
  return new ChannelsApi(new Configuration({ apiKey, basePath }));
}

/** GET on the hub's read API (not part of Pipedrive's SDK). */
async function readConversation(channelId, conversationId) {
  const url = `http://${hub.addr}/v1/channels/${encodeURIComponent(channelId)}/conversations/${encodeURIComponent(conversationId)}`;
  const res = await fetch(url, { headers: { 'x-api-token': hub.token } });
  return { status: res.status, body: await res.json() };
}

// ---------------------------------------------------------------------------------------------
describe(`pipedrive ${SDK_VERSION} v1 ChannelsApi against pdchannels`, { timeout: 120_000 }, () => {
  let apiV1; // basePath http://ADDR/api/v1
  let v1Api; // basePath http://ADDR/v1

  const suffix = `${process.pid}-${Date.now()}`;
  const channelId = `provider-channel-${suffix}`;
  const convA = 'conversation-a';
  const convB = 'conversation-b';

  // Messages as an integration would send them to Pipedrive.
  const a1 = {
    id: 'msg-a1',
    channel_id: channelId,
    sender_id: 'customer-1',
    conversation_id: convA,
    message: 'Hello, do you ship to Tallinn?',
    status: 'sent',
    created_at: '2024-05-01T10:00:00.000Z',
    attachments: [
      {
        id: 'att-1',
        type: 'image/png',
        url: 'https://files.example.test/att-1.png',
        name: 'photo.png',
        size: 2048,
        preview_url: 'https://files.example.test/att-1-thumb.png',
        link_expires: true,
      },
      { id: 'att-2', type: 'application/pdf', url: 'https://files.example.test/att-2.pdf' },
    ],
  };
  const a2 = {
    id: 'msg-a2',
    channel_id: channelId,
    sender_id: 'agent-1',
    conversation_id: convA,
    message: 'Yes, 2-3 business days.',
    status: 'delivered',
    created_at: '2024-05-01 10:05', // Pipedrive's documented "YYYY-MM-DD HH:MM" form
    reply_by: '2024-05-02T10:05:00.000Z',
    conversation_link: 'https://chat.example.test/c/a',
  };
  const b1 = {
    id: 'msg-b1',
    channel_id: channelId,
    sender_id: 'customer-2',
    conversation_id: convB,
    message: 'Is my order on its way?',
    status: 'sent',
    created_at: '2024-05-03T08:30:00.000Z',
  };
  const b2 = {
    id: 'msg-b2',
    channel_id: channelId,
    sender_id: 'agent-1',
    conversation_id: convB,
    message: 'It left the warehouse this morning.',
    status: 'sent',
    created_at: '2024-05-03T08:31:15.250Z',
  };

  /** What the hub should echo for a message: the request with created_at normalised. */
  function expectedEcho(msg, createdAt = msg.created_at) {
    const { attachments, ...rest } = msg;
    return { ...rest, created_at: createdAt };
  }

  /** Checks one receiveMessage response body against the payload that was sent. */
  function assertEcho(body, msg, createdAt) {
    assert.equal(body.success, true);
    const { attachments, ...data } = body.data;
    // Every field sent comes back as sent (created_at normalised to RFC 3339 UTC with ms).
    for (const [key, value] of Object.entries(expectedEcho(msg, createdAt))) {
      assert.deepEqual(data[key], value, `data.${key}`);
    }
    assert.match(data.created_at, RFC3339_MS_UTC);
    if (msg.attachments) {
      assert.equal(attachments.length, msg.attachments.length, 'attachment count');
      msg.attachments.forEach((sent, i) => {
        for (const [key, value] of Object.entries(sent)) {
          assert.deepEqual(attachments[i][key], value, `attachments[${i}].${key}`);
        }
      });
    } else {
      assert.ok(attachments === undefined || attachments.length === 0, 'no attachments');
    }
  }

  before(async () => {
    assert.ok(existsSync(BIN), `no pdchannels binary at ${BIN} (set PDCHANNELS_BIN)`);
    await startHub();
    apiV1 = channelsApi(`http://${hub.addr}/api/v1`);
    v1Api = channelsApi(`http://${hub.addr}/v1`);
  });

  after(async () => {
    // Only a safety net: the last test stops the hub and checks its exit code.
    if (hub.proc && hub.proc.exitCode === null && hub.proc.signalCode === null) {
      hub.proc.kill('SIGKILL');
      await hub.exit;
    }
    if (hub.dir) rmSync(hub.dir, { recursive: true, force: true });
  });

  test('hub printed an API token and its address', () => {
    assert.match(hub.token, /^pdc_[0-9a-f]{48}$/);
    assert.match(hub.addr, /^127\.0\.0\.1:\d+$/);
  });

  test('wrong API token: the SDK call is rejected with 401', async () => {
    const wrong = channelsApi(`http://${hub.addr}/api/v1`, `pdc_${'0'.repeat(48)}`);
    const result = await sdk(() =>
      wrong.addChannel({
        AddChannelRequest: { name: 'Nope', provider_channel_id: `nope-${suffix}` },
      }),
    );
    assert.ok('error' in result, 'expected the SDK to reject');
    assert.equal(result.status, 401);
    assert.equal(result.error.success, false);
    assert.equal(typeof result.error.error, 'string');
  });

  test('addChannel (basePath /api/v1)', async () => {
    const request = {
      name: 'Acme WhatsApp',
      provider_channel_id: channelId,
      avatar_url: 'https://cdn.example.test/acme.png',
      template_support: true,
      provider_type: 'whatsapp',
    };
    const body = ok(await sdk(() => apiV1.addChannel({ AddChannelRequest: request })), 'addChannel');
    assert.equal(body.success, true);
    const data = body.data;
    assert.equal(typeof data.id, 'string');
    assert.ok(data.id.length > 0, 'data.id is non-empty');
    assert.equal(data.name, request.name);
    assert.equal(data.provider_channel_id, request.provider_channel_id);
    assert.equal(data.avatar_url, request.avatar_url);
    assert.equal(data.template_support, true);
    assert.equal(data.provider_type, 'whatsapp');
    assert.match(data.created_at, RFC3339_MS_UTC);
  });

  test('receiveMessage: two conversations, attachments in one (both base paths)', async () => {
    const a1Body = ok(
      await sdk(() => apiV1.receiveMessage({ ReceiveMessageRequest: a1 })),
      'receive a1',
    );
    assertEcho(a1Body, a1);

    const a2Body = ok(
      await sdk(() => v1Api.receiveMessage({ ReceiveMessageRequest: a2 })),
      'receive a2',
    );
    assertEcho(a2Body, a2, '2024-05-01T10:05:00.000Z');

    assertEcho(ok(await sdk(() => v1Api.receiveMessage({ ReceiveMessageRequest: b1 })), 'b1'), b1);
    assertEcho(ok(await sdk(() => apiV1.receiveMessage({ ReceiveMessageRequest: b2 })), 'b2'), b2);

    const convARead = await readConversation(channelId, convA);
    assert.equal(convARead.status, 200);
    assert.equal(convARead.body.data.conversation_id, convA);
    assert.deepEqual([...convARead.body.data.participants].sort(), ['agent-1', 'customer-1']);
    assert.deepEqual(convARead.body.data.messages.map((m) => m.id).sort(), ['msg-a1', 'msg-a2']);
    const storedA1 = convARead.body.data.messages.find((m) => m.id === 'msg-a1');
    assert.deepEqual(storedA1.attachments, a1Body.data.attachments);

    const convBRead = await readConversation(channelId, convB);
    assert.equal(convBRead.status, 200);
    assert.deepEqual(convBRead.body.data.messages.map((m) => m.id).sort(), ['msg-b1', 'msg-b2']);
  });

  test('receiveMessage replay: the same payload returns the same data', async () => {
    const first = ok(await sdk(() => apiV1.receiveMessage({ ReceiveMessageRequest: a1 })), 'a1');
    const replay = ok(await sdk(() => v1Api.receiveMessage({ ReceiveMessageRequest: a1 })), 'a1');
    assert.deepEqual(replay, first);
    const read = await readConversation(channelId, convA);
    assert.equal(read.body.data.messages.length, 2, 'no duplicate message after replay');
  });

  test('receiveMessage status: sent -> read, then an older delivered keeps read', async () => {
    const toRead = ok(
      await sdk(() => apiV1.receiveMessage({ ReceiveMessageRequest: { ...b1, status: 'read' } })),
      'b1 read',
    );
    assert.equal(toRead.data.status, 'read');
    assert.equal(toRead.data.id, b1.id);

    const stale = ok(
      await sdk(() =>
        v1Api.receiveMessage({ ReceiveMessageRequest: { ...b1, status: 'delivered' } }),
      ),
      'b1 delivered',
    );
    assert.equal(stale.data.status, 'read', 'status only moves forward');

    const read = await readConversation(channelId, convB);
    assert.equal(read.body.data.messages.find((m) => m.id === b1.id).status, 'read');
  });

  test('deleteConversation (basePath /v1)', async () => {
    const body = ok(
      await sdk(() => v1Api.deleteConversation({ channel_id: channelId, conversation_id: convA })),
      'deleteConversation',
    );
    assert.equal(body.success, true);

    const gone = await readConversation(channelId, convA);
    assert.equal(gone.status, 404, 'deleted conversation is gone from the read API');
    assert.equal(gone.body.success, false);

    const kept = await readConversation(channelId, convB);
    assert.equal(kept.status, 200, 'the other conversation is untouched');
    assert.equal(kept.body.data.messages.length, 2);
  });

  test('deleteChannel (basePath /api/v1)', async () => {
    const body = ok(await sdk(() => apiV1.deleteChannel({ id: channelId })), 'deleteChannel');
    assert.equal(body.success, true);

    const gone = await readConversation(channelId, convB);
    assert.equal(gone.status, 404, "the channel's conversations went with it");
  });

  test('receiveMessage into the deleted channel: 404 Channel not found.', async () => {
    for (const api of [apiV1, v1Api]) {
      const result = await sdk(() =>
        api.receiveMessage({ ReceiveMessageRequest: { ...b2, id: 'msg-after-delete' } }),
      );
      assert.ok('error' in result, 'expected the SDK to reject');
      assert.equal(result.status, 404);
      assert.equal(result.error.success, false);
      assert.equal(result.error.error, 'Channel not found.');
      assert.equal(result.error.additional_data?.code, 'NOT_FOUND');
    }
  });

  test('hub exits 0 on SIGTERM', async () => {
    hub.proc.kill('SIGTERM');
    const { code, signal } = await hub.exit;
    assert.equal(signal, null, `hub died by signal ${signal}:\n${hub.stderr}`);
    assert.equal(code, 0, `hub exit code:\n${hub.stderr}`);
  });
});
