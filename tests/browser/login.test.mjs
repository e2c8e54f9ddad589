// Logging in to the inbox: a one-time link from `pdchannels inbox link`, a pasted API token,
// and what is refused (a link used twice, a wrong token, the inbox without a session).

import assert from 'node:assert/strict';
import { startHub } from './lib/hub.mjs';
import { logInWithLink, logInWithToken, screenshot } from './lib/inbox.mjs';

export default async function (t) {
  const hub = await startHub('login');
  try {
    await t.test('the inbox without a session goes to the login page', async ({ page }) => {
      await page.goto(`${hub.url}/inbox`);
      await page.waitForURL(`${hub.url}/inbox/login`);
      await page.getByRole('heading', { name: 'Log in to the inbox' }).waitFor();
      assert.equal(await page.getByLabel('API token').getAttribute('type'), 'password');
      await screenshot(page, 'login');
    });

    await t.test('every page links an icon that loads (no 404 for /favicon.ico, no console error)', async ({ page }) => {
      const icons = [];
      page.on('response', (r) => {
        if (/\/(favicon\.ico|inbox\/assets\/icon\.svg)$/.test(new URL(r.url()).pathname)) icons.push(`${r.status()} ${new URL(r.url()).pathname}`);
      });
      for (const where of ['/inbox/login', null]) {
        if (where) await page.goto(`${hub.url}${where}`);
        else await logInWithLink(page, hub);
        const icon = await page.evaluate(() => document.querySelector('link[rel~="icon"]')?.href ?? null);
        assert.ok(icon, `${page.url()} names an icon (<link rel="icon">)`);
        assert.equal(new URL(icon).pathname, '/inbox/assets/icon.svg');
        const answer = await page.request.get(icon);
        assert.equal(answer.status(), 200, `the icon ${icon}`);
        assert.match(answer.headers()['content-type'], /^image\/svg\+xml/);
        // It renders: an <img> of it has a size.
        const size = await page.evaluate(async (src) => {
          const img = new Image();
          img.src = src;
          await img.decode();
          return img.naturalWidth;
        }, icon);
        assert.ok(size > 0, 'the icon decodes as an image');
      }
      // Give Chromium time to ask for the icon it shows in the tab.
      await page.waitForTimeout(300);
      assert.ok(!icons.some((i) => i.startsWith('404')), `icon requests: ${icons.join(', ')}`);
    });

    await t.test('a one-time link from `pdchannels inbox link` logs in, once', async ({ page, newContext, expectErrorStatus }) => {
      const link = hub.loginLink();
      await page.goto(link);
      await page.waitForURL(`${hub.url}/inbox`);
      await page.getByRole('button', { name: 'Log out' }).waitFor();
      await page.getByText('No conversations yet').waitFor();
      const cookies = await page.context().cookies();
      const session = cookies.find((c) => c.name === 'pdchannels_inbox');
      assert.ok(session, `a session cookie: ${JSON.stringify(cookies)}`);
      assert.equal(session.httpOnly, true);
      assert.equal(session.sameSite, 'Strict');
      assert.equal(session.path, '/inbox');
      assert.ok(!session.value.includes(hub.token), 'the cookie is not the token');

      // The same link in another browser: used already.
      const second = await (await newContext()).newPage();
      expectErrorStatus(401, new URL(link).pathname);
      const answer = await second.goto(link);
      assert.equal(answer.status(), 401);
      await second.getByRole('alert').filter({ hasText: 'login link is used, expired' }).waitFor();
      assert.equal(new URL(second.url()).pathname, new URL(link).pathname, 'no redirect to the inbox');
    });

    await t.test('pasting an API token logs in; a wrong one is refused; logging out ends the session', async ({ page, expectErrorStatus }) => {
      await page.goto(`${hub.url}/inbox/login`);
      expectErrorStatus(401, '/inbox/login');
      await page.getByLabel('API token').fill('pdc_not-a-token');
      const refused = await Promise.all([
        page.waitForResponse((r) => r.url() === `${hub.url}/inbox/login` && r.request().method() === 'POST'),
        page.getByRole('button', { name: 'Log in' }).click(),
      ]);
      assert.equal(refused[0].status(), 401);
      await page.getByRole('alert').filter({ hasText: 'not an active API token' }).waitFor();
      assert.equal(await page.getByLabel('API token').inputValue(), '', 'the wrong token is not shown back');

      await logInWithToken(page, hub);
      await page.getByText('No conversations yet').waitFor();
      await screenshot(page, 'empty-inbox');

      await Promise.all([
        page.waitForURL(`${hub.url}/inbox/login`),
        page.getByRole('button', { name: 'Log out' }).click(),
      ]);
      await page.goto(`${hub.url}/inbox`);
      await page.waitForURL(`${hub.url}/inbox/login`);
    });

    await t.test('a link logs in a browser with JavaScript off too', async ({ page }) => {
      await logInWithLink(page, hub);
      await page.getByText('No conversations yet').waitFor();
    }, { context: { javaScriptEnabled: false } });
  } finally {
    await hub.stop();
  }
}
