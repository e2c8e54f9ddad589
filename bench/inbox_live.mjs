// The inbox's live latency: from a message received over the API to its text in an open tab.
//
// Usage: node bench/inbox_live.mjs [PATH/TO/pdchannels] [N]     (default target/debug/pdchannels, 20)
//
// Starts `pdchannels serve` on 127.0.0.1:0 with a fresh SQLite database (the browser tests'
// lib/hub.mjs), logs a headless Chromium tab in (Debian's /usr/bin/chromium or
// PDCHANNELS_CHROMIUM, driven by tests/browser's pinned playwright-core: run `npm ci` in
// tests/browser first, or tests/browser/run.sh once), opens a thread, then N times: POST
// /v1/channels/messages/receive with a unique text into that thread, and time from just before
// the POST until the text is in the tab's DOM (a MutationObserver in the page notes the moment
// it sees it; the time is taken in the page with performance.now(), so the polling of the test
// adds nothing). Prints each, the median and p90, and a last line `JSON {...}`.
// Target: median under 300 ms.

import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const browserTests = path.join(root, 'tests', 'browser');

const bin = path.resolve(process.argv[2] || path.join(root, 'target', 'debug', 'pdchannels'));
const rounds = Number(process.argv[3] || 20);
process.env.PDCHANNELS_BIN = bin;

const require = createRequire(path.join(browserTests, 'package.json'));
const { chromium } = require('playwright-core');
const { startHub } = await import(pathToFileURL(path.join(browserTests, 'lib', 'hub.mjs')).href);

const executablePath = process.env.PDCHANNELS_CHROMIUM || '/usr/bin/chromium';
const args = ['--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--mute-audio'];
if (process.getuid?.() === 0) args.push('--no-sandbox');

const hub = await startHub('bench-live');
const browser = await chromium.launch({ executablePath, headless: true, args });
let errors = 0;
try {
  await hub.api('POST', '/v1/channels', { name: 'Bench', provider_channel_id: 'bench' });
  await hub.receive({ id: 'm-0', channel_id: 'bench', conversation_id: 'conv', sender_id: 'cust', message: 'first' });
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  page.on('console', (m) => { if (m.type() === 'error') { errors += 1; console.error(`console error: ${m.text()}`); } });
  page.on('pageerror', (e) => { errors += 1; console.error(`page error: ${e}`); });
  await page.goto(hub.loginLink());
  await page.waitForURL(`${hub.url}/inbox`);
  await page.goto(`${hub.url}/inbox/bench/conv`);
  await page.locator('main.thread .messages').waitFor();
  // Let the event stream connect.
  await page.waitForTimeout(1000);

  // In the page: wait for a text to appear anywhere under body, note when (performance.now()).
  await page.evaluate(() => {
    window.__seen = new Map();
    window.__want = new Set();
    const look = () => {
      if (!window.__want.size) return;
      const text = document.body.textContent;
      for (const w of window.__want) {
        if (text.includes(w)) {
          window.__seen.set(w, performance.now());
          window.__want.delete(w);
        }
      }
    };
    new MutationObserver(look).observe(document.body, { childList: true, subtree: true, characterData: true });
  });

  const times = [];
  for (let i = 1; i <= rounds; i += 1) {
    const text = `live-${i}-${Math.random().toString(36).slice(2, 10)}`;
    const start = await page.evaluate((w) => { window.__want.add(w); return performance.now(); }, text);
    // The page's clock and ours differ by the evaluate's round trip: start is taken in the page
    // just before the POST leaves, so the figure can only be a little over, never under.
    await hub.receive({ id: `m-${i}`, channel_id: 'bench', conversation_id: 'conv', sender_id: 'cust', message: text });
    const seen = await page.waitForFunction((w) => window.__seen.get(w), text, { timeout: 10_000 })
      .then((h) => h.jsonValue());
    const ms = seen - start;
    times.push(ms);
    console.log(`${String(i).padStart(2)}  ${ms.toFixed(1)} ms`);
    // Apart, so each is its own batch (the hub sends at most one every 100 ms).
    await page.waitForTimeout(250);
  }
  const sorted = [...times].sort((a, b) => a - b);
  const pick = (q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2]
    : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  const round1 = (x) => Math.round(x * 10) / 10;
  console.log(`median ${median.toFixed(1)} ms, p90 ${pick(0.9).toFixed(1)} ms, min ${sorted[0].toFixed(1)} ms, max ${sorted.at(-1).toFixed(1)} ms (target: median under 300 ms)`);
  console.log(`JSON ${JSON.stringify({
    bench: 'inbox_live', rounds, bin, chromium: browser.version(),
    median_ms: round1(median), p90_ms: round1(pick(0.9)), min_ms: round1(sorted[0]), max_ms: round1(sorted.at(-1)),
    times_ms: times.map(round1), console_errors: errors, target_median_ms: 300, met: median < 300,
  })}`);
} finally {
  await browser.close();
  await hub.stop();
}
