// What the tests do in the inbox and check on its pages.

import assert from 'node:assert/strict';
import path from 'node:path';
import { OUTPUT } from './runner.mjs';

/// Logs `page` in with a one-time link from `pdchannels inbox link`; lands on /inbox.
export async function logInWithLink(page, hub) {
  const link = hub.loginLink();
  assert.match(link, /^http:\/\/127\.0\.0\.1:\d+\/inbox\/login\/\S+$/, `the link: ${link}`);
  await page.goto(link);
  await page.waitForURL(`${hub.url}/inbox`);
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

/// Logs `page` in by pasting the hub's API token into the login form.
export async function logInWithToken(page, hub, token = hub.token) {
  await page.goto(`${hub.url}/inbox/login`);
  await page.getByLabel('API token').fill(token);
  await Promise.all([
    page.waitForURL(`${hub.url}/inbox`),
    page.getByRole('button', { name: 'Log in' }).click(),
  ]);
}

/// Sends a reply with the composer of the open thread; waits for the page after the POST.
/// Throws, with the status and the page's words, unless the hub answered with a redirect to
/// the thread (the reply was sent).
export async function sendReply(page, text) {
  const thread = page.url().split('?')[0];
  await page.locator('form.composer textarea[name=message]').fill(text);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.url() === `${thread}/reply`),
    page.waitForEvent('framenavigated', (f) => f === page.mainFrame()),
    page.getByRole('button', { name: 'Send' }).click(),
  ]);
  await page.waitForLoadState('load');
  if (answer.status() !== 303) {
    const words = (await page.locator('body').innerText()).replace(/\s+/g, ' ').slice(0, 400);
    throw new Error(`the reply was answered ${answer.status()}, not 303 to the thread: ${words}`);
  }
  await page.waitForURL(thread);
}

/// The page does not scroll sideways: nothing is wider than the window.
export async function assertNoHorizontalOverflow(page, where) {
  const { scrollWidth, innerWidth, wide } = await page.evaluate(() => ({
    scrollWidth: document.scrollingElement.scrollWidth,
    innerWidth: window.innerWidth,
    // The elements that stick out, to say which when it fails.
    wide: [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}.${[...e.classList].join('.')} (right ${Math.round(e.getBoundingClientRect().right)})`),
  }));
  assert.ok(scrollWidth <= innerWidth,
    `${where}: the page is ${scrollWidth}px wide in a ${innerWidth}px window; sticking out: ${wide.join(', ')}`);
}

export async function screenshot(page, name, options = {}) {
  await page.screenshot({ path: path.join(OUTPUT, `${name}.png`), ...options });
}

/// The texts of the thread's messages, in order.
export async function threadTexts(page) {
  return page.locator('main.thread .messages .message .text').allInnerTexts();
}

/// The unread count at the start of the tab's title (`(3) Inbox · pdchannels`), 0 without one.
export async function titleCount(page) {
  const m = (await page.title()).match(/^\((\d+)\+?\) /);
  return m ? Number(m[1]) : 0;
}

/// Marks the page's window, to tell later whether it was reloaded (`assertNotReloaded`).
export async function markWindow(page) {
  await page.evaluate(() => { window.__notReloaded = true; });
}

export async function assertNotReloaded(page, what) {
  assert.equal(await page.evaluate(() => window.__notReloaded === true), true,
    `${what}: the page was not reloaded (the change came live)`);
}

/// The `li.row` of the list whose text holds `text`.
export function row(page, text) {
  return page.locator('nav.list li.row').filter({ hasText: text });
}

/// The list's rows' customers (`.who`), top first.
export async function listWho(page) {
  return page.locator('nav.list li.row .who').allInnerTexts();
}

/// Waits (up to `ms`) until the list's first row is `who`'s.
export async function waitTopRow(page, who, ms = 5_000) {
  await page.waitForFunction((w) => document.querySelector('nav.list li.row .who')?.textContent.trim() === w, who, { timeout: ms });
}

/// Opens a thread by clicking its row; waits for its page.
export async function openRow(page, text, href) {
  await Promise.all([page.waitForURL((u) => u.pathname === href), row(page, text).locator('a').click()]);
  await page.waitForLoadState();
}

/// Submits a form by clicking `button`; waits for the POST's answer (expected 303) and the page
/// it leads to. Answers the POST's response.
export async function postAndFollow(page, button, pathEnd, status = 303) {
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith(pathEnd)),
    // The page the answer leads to (a 303 to the same URL too).
    page.waitForEvent('framenavigated', (f) => f === page.mainFrame()),
    button.click(),
  ]);
  assert.equal(answer.status(), status, `POST ${pathEnd} answered ${answer.status()}`);
  await page.waitForLoadState('load');
  return answer;
}
