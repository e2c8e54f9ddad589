// A tiny test runner: every test gets its own browser context (no cookie or page shared), and
// fails if its pages logged a console error, threw an uncaught error or opened a dialog (alert,
// confirm, prompt), whatever its own assertions say. A failing test leaves a screenshot of each
// of its pages in output/failed-*.png.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const OUTPUT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'output');

/// One test's time limit.
const TEST_MS = 90_000;

export const results = { passed: 0, failed: 0, failures: [] };

function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 80);
}

/// Watches a page: console errors, uncaught errors and dialogs go to `problems`.
function watch(page, problems) {
  page.on('console', (m) => {
    if (m.type() === 'error') {
      const at = m.location()?.url;
      problems.push(`console error: ${m.text()}${at ? ` (at ${at})` : ''}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e?.stack || e}`));
  page.on('dialog', (d) => {
    problems.push(`a ${d.type()} dialog opened: ${JSON.stringify(d.message())}`);
    d.dismiss().catch(() => {});
  });
}

/// The `t` a test file's default export gets: t.browser, t.test(name, fn, { context }), t.file.
export function suite(browser, file) {
  mkdirSync(OUTPUT, { recursive: true });
  const base = path.basename(file, '.test.mjs');
  return {
    browser,
    file: base,
    /// Runs `fn({ context, page, problems })` in a fresh context (desktop 1280×800 unless
    /// `options.context` says otherwise); records a pass or a failure.
    async test(name, fn, options = {}) {
      const started = Date.now();
      const problems = [];
      const context = await browser.newContext({
        viewport: { width: 1280, height: 800 },
        ...options.context,
      });
      context.setDefaultTimeout(10_000);
      context.setDefaultNavigationTimeout(15_000);
      const watched = new WeakSet();
      const watchOnce = (p) => { if (!watched.has(p)) { watched.add(p); watch(p, problems); } };
      context.on('page', watchOnce);
      // Another browser (a second context) for the test, watched and closed as the first.
      const others = [];
      const newContext = async (more = {}) => {
        const other = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...more });
        other.setDefaultTimeout(10_000);
        other.on('page', watchOnce);
        others.push(other);
        return other;
      };
      // A page the test means to get answered with an error status (a refused login, say):
      // Chromium logs each such answer as a console error, which is then expected, once.
      const expected = [];
      const expectErrorStatus = (status, pathname) => expected.push({ status, pathname });
      let error = null;
      try {
        const page = await context.newPage();
        watchOnce(page);
        let timer;
        await Promise.race([
          fn({ context, page, problems, newContext, expectErrorStatus }),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`the test took over ${TEST_MS / 1000} s`)), TEST_MS);
          }),
        ]).finally(() => clearTimeout(timer));
        for (const { status, pathname } of expected) {
          const at = problems.findIndex((p) => p.startsWith(`console error: Failed to load resource: the server responded with a status of ${status} `)
            && new URL(p.match(/\(at (\S+)\)$/)?.[1] ?? 'x:/').pathname === pathname);
          if (at < 0) throw new Error(`expected an answer ${status} for ${pathname} (a console error), and there was none`);
          problems.splice(at, 1);
        }
        if (problems.length > 0) {
          error = new Error(`the page reported ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
        }
      } catch (e) {
        error = e;
        if (problems.length > 0) {
          error.message += `\n  and the page reported:\n  ${problems.join('\n  ')}`;
        }
      }
      if (error) {
        for (const [i, p] of [context, ...others].flatMap((c) => c.pages()).entries()) {
          const shot = path.join(OUTPUT, `failed-${base}-${slug(name)}-${i}.png`);
          await p.screenshot({ path: shot, fullPage: true }).catch(() => {});
        }
      }
      for (const c of [context, ...others]) await c.close().catch(() => {});
      const ms = Date.now() - started;
      if (error) {
        results.failed += 1;
        results.failures.push(`${base}: ${name}`);
        console.log(`FAIL ${base}: ${name} (${ms} ms)\n     ${String(error.stack || error).replace(/\n/g, '\n     ')}`);
      } else {
        results.passed += 1;
        console.log(`ok   ${base}: ${name} (${ms} ms)`);
      }
    },
    /// A failure outside any test (a hub that would not start, say).
    fail(what, e) {
      results.failed += 1;
      results.failures.push(`${base}: ${what}`);
      console.log(`FAIL ${base}: ${what}\n     ${String(e?.stack || e).replace(/\n/g, '\n     ')}`);
    },
  };
}
