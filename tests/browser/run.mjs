// Runs the inbox's browser tests: every *.test.mjs here (or the files named on the command
// line), one after the other, in one headless Chromium (Debian's /usr/bin/chromium, or
// PDCHANNELS_CHROMIUM). Each file starts its own hub on a fresh database. Ends with the line
// `N passed, M failed` and exits 1 if any test failed.

import { readdirSync, rmSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { suite, results, OUTPUT } from './lib/runner.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const executablePath = process.env.PDCHANNELS_CHROMIUM || '/usr/bin/chromium';

const named = process.argv.slice(2);
const files = (named.length > 0 ? named : readdirSync(here).filter((f) => f.endsWith('.test.mjs')).sort())
  .map((f) => path.resolve(here, f));

// Screenshots of this run only.
rmSync(OUTPUT, { recursive: true, force: true });
mkdirSync(OUTPUT, { recursive: true });

const args = ['--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
  '--disable-component-update', '--disable-default-apps', '--disable-sync', '--no-first-run',
  '--metrics-recording-only', '--mute-audio'];
// Chromium's sandbox cannot start as root.
if (process.getuid?.() === 0) args.push('--no-sandbox');

let browser;
try {
  browser = await chromium.launch({ executablePath, headless: true, args });
} catch (e) {
  console.log(`FAIL cannot start Chromium at ${executablePath}: ${e.message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
console.log(`Chromium ${browser.version()} (${executablePath}), ${files.length} test file(s)`);

for (const file of files) {
  const t = suite(browser, file);
  try {
    const mod = await import(pathToFileURL(file).href);
    await mod.default(t);
  } catch (e) {
    t.fail('setting up or tearing down the file', e);
  }
}
await browser.close();

if (results.failed > 0) console.log(`\nFailed:\n  ${results.failures.join('\n  ')}`);
console.log(`\nScreenshots: ${path.relative(process.cwd(), OUTPUT) || OUTPUT}/`);
console.log(`${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed > 0 || results.passed === 0 ? 1 : 0);
