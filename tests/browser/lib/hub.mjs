// A fresh hub for one test file: its own temporary database, its own `pdchannels serve` on a
// free port of 127.0.0.1 (the address read from its stderr line `pdchannels hub on http://...`),
// an API token, and, when asked, the testkit's fixture provider app (a second process) with a
// channel bound to it.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const BIN = process.env.PDCHANNELS_BIN;
const FIXTURE = process.env.PDCHANNELS_FIXTURE_APP;

/// Waits until `read()` answers something truthy, or throws `what` after `ms`.
export async function until(what, read, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/// Starts a process and waits for a line of its output (stdout or stderr) matching `pattern`;
/// answers { child, match, output() }.
async function startProcess(command, args, stream, pattern, env = {}) {
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  let exited = null;
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const source = stream === 'stdout' ? child.stdout : child.stderr;
  let seen = '';
  source.on('data', (d) => { seen += d; });
  const match = await until(`${path.basename(command)} to start (output so far: ${JSON.stringify(out)})`, () => {
    if (exited) {
      throw new Error(`${command} ${args.join(' ')} exited (${JSON.stringify(exited)}) before it started:\n${out}`);
    }
    return seen.match(pattern);
  }, 20_000);
  return { child, match, output: () => out, exited: () => exited };
}

/// Stops a child process (SIGTERM, then SIGKILL after 3 s) and waits until it is gone.
export async function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await gone;
  clearTimeout(timer);
}

/// Starts the testkit's fixture provider app: channel `channel`, `conversations` conversations
/// (`c0`, `c1`, ...; customer `Customer cust-{i}`, agent `Agent Smith`) of `messages` messages
/// each. Answers { address, manifest, stop() }.
export async function startFixtureApp(dir, name, { channel, conversations = 1, messages = 1, older = 0 }) {
  if (!FIXTURE) throw new Error('PDCHANNELS_FIXTURE_APP is not set (run the tests with run.sh)');
  const manifest = path.join(dir, `${name}.manifest.json`);
  const app = await startProcess(FIXTURE, [
    '--channel', channel, '--conversations', String(conversations),
    '--messages', String(messages), '--older', String(older), '--delay-ms', '0', '--manifest-out', manifest,
  ], 'stdout', /^(\S+)\n/);
  return { address: app.match[1], manifest, child: app.child, stop: () => stopProcess(app.child) };
}

/// A fresh hub. Answers { url, token, tokenId, db, dir, cli(...args), api(method, path, body, token),
/// receive(message), addApp(name, fixture), stop() }.
export async function startHub(label) {
  if (!BIN) throw new Error('PDCHANNELS_BIN is not set (run the tests with run.sh)');
  const dir = mkdtempSync(path.join(tmpdir(), `pdchannels-browser-${label}-`));
  const db = path.join(dir, 'hub.db');
  const cli = (...args) => execFileSync(BIN, ['--db', db, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PDCHANNELS_APP_CLIENT_SECRET: 'fixture-secret' },
  }).trim();
  const token = cli('token', 'create', '--name', 'browser-tests');
  const hub = await startProcess(BIN, ['--db', db, 'serve', '--listen', '127.0.0.1:0'], 'stderr',
    /pdchannels hub on (http:\/\/[0-9.:]+)/);
  const url = hub.match[1];
  // `token list --json`: one JSON object a line.
  const tokenId = cli('token', 'list', '--json').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .find((t) => t.name === 'browser-tests').id;

  async function api(method, route, body, apiToken = token) {
    const answer = await fetch(url + route, {
      method,
      headers: { 'x-api-token': apiToken, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await answer.text();
    if (!answer.ok) throw new Error(`${method} ${route} answered ${answer.status}: ${text}`);
    return JSON.parse(text);
  }

  const apps = [];
  return {
    url, token, tokenId, db, dir, cli, api,
    /// POST /v1/channels/messages/receive (status `sent`, created now unless given).
    receive: (message) => api('POST', '/v1/channels/messages/receive', {
      status: 'sent', created_at: new Date().toISOString(), ...message,
    }),
    /// Adds `fixture` as app `name` (`pdchannels app add`), and answers a token bound to it.
    addApp(name, fixture) {
      cli('app', 'add', name, '--manifest', fixture.manifest, '--client-id', 'fixture-client');
      apps.push(fixture);
      return cli('token', 'create', '--name', `app-${name}`, '--app', name);
    },
    /// Points app `name` at another running fixture (`pdchannels app add --replace`).
    replaceApp(name, fixture) {
      cli('app', 'add', name, '--manifest', fixture.manifest, '--client-id', 'fixture-client', '--replace');
      apps.push(fixture);
    },
    /// The fixture app given to the hub last (by addApp or replaceApp).
    currentApp: () => apps.at(-1),
    /// A one-time login link (`pdchannels inbox link`).
    loginLink: () => cli('inbox', 'link', '--token-id', tokenId, '--hub-url', url),
    log: () => hub.output(),
    async stop() {
      await stopProcess(hub.child);
      for (const app of apps) await app.stop();
      if (!process.env.PDCHANNELS_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function readJson(file) {
  return JSON.parse(readFileSync(file, 'utf8'));
}

/// A fresh hub with the fixture app's channel `wa` ("WhatsApp Sales"; conversations c0.. of
/// customer "Customer cust-{i}", each with `messages` messages "hello 0".., and with `older`
/// older ones "earlier 0".. that the app gives only when asked) synced, and a channel `plain`
/// ("Plain") of no app. Answers { hub, app }.
export async function startHubWithApp(label, { conversations = 1, messages = 1, older = 0 } = {}) {
  const hub = await startHub(label);
  try {
    const app = await startFixtureApp(hub.dir, 'wa', { channel: 'wa', conversations, messages, older });
    const appToken = hub.addApp('fixture', app);
    await hub.api('POST', '/v1/channels', { name: 'WhatsApp Sales', provider_channel_id: 'wa', provider_type: 'whatsapp' }, appToken);
    await hub.api('POST', '/v1/channels', { name: 'Plain', provider_channel_id: 'plain' });
    await until(`the fixture app's ${conversations} conversation(s) to sync`, async () => {
      for (let i = 0; i < conversations; i += 1) {
        const answer = await fetch(`${hub.url}/v1/channels/wa/conversations/c${i}`, { headers: { 'x-api-token': hub.token } });
        if (!answer.ok) return false;
        if (((await answer.json()).data?.messages ?? []).length < messages) return false;
      }
      return true;
    });
    return { hub, app };
  } catch (e) {
    await hub.stop();
    throw e;
  }
}
