// Live updates (GET /inbox/events, a server-sent event stream; the page reads itself again and
// swaps its list, thread and title): no reload anywhere here. A message received over the API
// shows in an open tab, its conversation goes to the top of the list and the title's unread
// count rises; a reply sent from one tab shows once, with its ✓, in the others.

import assert from 'node:assert/strict';
import { startHubWithApp } from './lib/hub.mjs';
import {
  logInWithLink, sendReply, screenshot, threadTexts, titleCount, markWindow, assertNotReloaded,
  row, waitTopRow, listWho,
} from './lib/inbox.mjs';

export default async function (t) {
  const { hub } = await startHubWithApp('live', { conversations: 2, messages: 1 });
  try {
    await t.test('a message received over the API shows live in an open tab: at the top of the list, in the thread, counted in the title', async ({ page }) => {
      const ago = (s) => new Date(Date.now() - s * 1000).toISOString();
      await hub.receive({ id: 'old-1', channel_id: 'plain', conversation_id: 'conv-old', sender_id: 'olga-old', message: 'An old question', created_at: ago(600) });
      await hub.receive({ id: 'open-1', channel_id: 'plain', conversation_id: 'conv-open', sender_id: 'otto-open', message: 'The conversation left open', created_at: ago(300) });
      await logInWithLink(page, hub);

      // The list alone.
      await row(page, 'olga-old').waitFor();
      const before = await titleCount(page);
      assert.ok(before >= 1, `some conversations are unread: ${await page.title()}`);
      assert.ok((await listWho(page)).indexOf('olga-old') > 0, 'olga is not on top yet');
      await markWindow(page);

      // A new conversation: listed on top, unread, counted.
      await hub.receive({ id: 'new-1', channel_id: 'plain', conversation_id: 'conv-new', sender_id: 'nina-new', message: 'Brand new, live' });
      await waitTopRow(page, 'nina-new');
      await page.waitForFunction((n) => document.title.startsWith(`(${n}) `), before + 1);
      const nina = row(page, 'nina-new');
      assert.match(await nina.getAttribute('class'), /\bunread\b/);
      assert.equal(await nina.locator('.badge').innerText(), 'unread');
      assert.equal(await nina.locator('.preview').innerText(), 'Brand new, live');
      assert.equal(await nina.locator('.awaiting').count(), 1, 'awaiting reply: the customer wrote last');

      // An old conversation written to again moves to the top.
      await hub.receive({ id: 'old-2', channel_id: 'plain', conversation_id: 'conv-old', sender_id: 'olga-old', message: 'Hello again, live' });
      await waitTopRow(page, 'olga-old');
      await page.waitForFunction(() => document.querySelector('nav.list li.row .preview')?.textContent === 'Hello again, live');
      assert.deepEqual((await listWho(page)).slice(0, 2), ['olga-old', 'nina-new']);
      await assertNotReloaded(page, 'the list');
      await screenshot(page, 'live-list-unread');

      // An open thread: the message shows in it, and the conversation goes on top.
      await Promise.all([page.waitForURL(`${hub.url}/inbox/plain/conv-open`), row(page, 'otto-open').locator('a').click()]);
      await page.getByRole('heading', { name: /otto-open/ }).waitFor();
      const count = await titleCount(page);
      await markWindow(page);
      await hub.receive({ id: 'open-2', channel_id: 'plain', conversation_id: 'conv-open', sender_id: 'otto-open', message: 'Are you there? (live)' });
      await page.locator('main.thread .messages .message .text').filter({ hasText: 'Are you there? (live)' }).waitFor({ timeout: 5_000 });
      assert.deepEqual(await threadTexts(page), ['The conversation left open', 'Are you there? (live)']);
      await waitTopRow(page, 'otto-open');
      assert.match(await row(page, 'otto-open').getAttribute('class'), /\bcurrent\b/, 'still the open one');
      // Seen as it came (the tab is in front): not unread, not counted.
      await page.waitForTimeout(300);
      assert.doesNotMatch(await row(page, 'otto-open').getAttribute('class'), /\bunread\b/);
      assert.equal(await titleCount(page), count);
      // A message elsewhere, while the thread is open: the list and the title follow.
      await hub.receive({ id: 'new-2', channel_id: 'plain', conversation_id: 'conv-new2', sender_id: 'nora-newer', message: 'Another one' });
      await waitTopRow(page, 'nora-newer');
      await page.waitForFunction((n) => document.title.startsWith(`(${n}) `), count + 1);
      assert.match(await page.title(), /otto-open/, 'the title still names the open thread');
      await assertNotReloaded(page, 'the thread');
    });

    await t.test('a reply sent from the composer shows once, with its ✓, in every open tab (two pages of one browser and another browser)', async ({ context, page, newContext }) => {
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/wa/c0`);
      const second = await context.newPage();
      await second.goto(`${hub.url}/inbox/wa/c0`);
      const other = await (await newContext()).newPage();
      await logInWithLink(other, hub);
      await other.goto(`${hub.url}/inbox/wa/c0`);
      for (const p of [second, other]) {
        await p.getByRole('heading', { name: /Customer cust-0/ }).waitFor();
        await markWindow(p);
      }
      // Time for each tab's event stream to connect.
      await page.waitForTimeout(500);

      const text = `Reply seen everywhere ${Date.now()}`;
      await sendReply(page, text);
      for (const [p, name] of [[page, 'the sending tab'], [second, 'a second tab'], [other, 'another browser']]) {
        await p.waitForFunction((t) => [...document.querySelectorAll('main.thread .messages .message:not(.unsent)')]
          .some((m) => m.querySelector('.text')?.textContent === t && m.querySelector('.status')?.getAttribute('title') === 'sent'), text, { timeout: 5_000 })
          .catch((e) => { throw new Error(`${name}: the reply did not show as sent: ${e.message}`); });
      }
      // Time for a late second refresh or a duplicate to show.
      await page.waitForTimeout(500);
      for (const [p, name] of [[page, 'the sending tab'], [second, 'a second tab'], [other, 'another browser']]) {
        const texts = await threadTexts(p);
        assert.equal(texts.filter((x) => x === text).length, 1, `${name} shows the reply once: ${JSON.stringify(texts)}`);
        const reply = p.locator('main.thread .messages .message').filter({ hasText: text });
        assert.equal(await reply.locator('.status').innerText(), '✓', name);
        assert.match(await reply.getAttribute('class'), /\boutgoing\b/, name);
        assert.match(await p.locator('li.row.current .preview').innerText(), new RegExp(text), `${name}: the list's preview`);
      }
      await assertNotReloaded(second, 'the second tab');
      await assertNotReloaded(other, 'the other browser');
      await screenshot(other, 'live-thread-other-browser');
    });

    await t.test('a message\'s status shows live: sent ✓, delivered ✓✓, failed ✕ (upserted over the API)', async ({ page }) => {
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/wa/c1`);
      await page.waitForTimeout(300); // the event stream connects
      await markWindow(page);
      const status = () => page.locator('main.thread .messages .message').filter({ hasText: 'Your order shipped' }).locator('.status');
      const out = { id: 'status-1', channel_id: 'wa', conversation_id: 'c1', sender_id: 'agent-1', message: 'Your order shipped' };
      for (const [state, ticks] of [['sent', '✓'], ['delivered', '✓✓'], ['failed', '✕ failed']]) {
        await hub.receive({ ...out, status: state });
        await page.waitForFunction(([s]) => [...document.querySelectorAll('main.thread .messages .message')]
          .some((m) => m.textContent.includes('Your order shipped') && m.querySelector('.status')?.getAttribute('title') === s), [state], { timeout: 5_000 })
          .catch((e) => { throw new Error(`status ${state} did not show live: ${e.message}`); });
        assert.equal(await status().innerText(), ticks, state);
        assert.match(await page.locator('main.thread .messages .message').filter({ hasText: 'Your order shipped' }).getAttribute('class'), /\boutgoing\b/);
      }
      assert.match(await status().getAttribute('class'), /\bstatus-failed\b/);
      assert.equal((await threadTexts(page)).filter((x) => x === 'Your order shipped').length, 1, 'one message, its status updated');
      await assertNotReloaded(page, 'the thread');
      await screenshot(page, 'live-status-failed');
    });

    await t.test('after a refused reply (400, the page at …/reply), a live update neither errs nor posts the form again', async ({ page, expectErrorStatus }) => {
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/wa/c1`);
      const posts = [];
      page.on('request', (r) => { if (r.method() === 'POST') posts.push(new URL(r.url()).pathname); });
      await page.locator('form.composer textarea[name=message]').fill('   ');
      expectErrorStatus(400, '/inbox/wa/c1/reply');
      const [answer] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith('/inbox/wa/c1/reply')),
        page.getByRole('button', { name: 'Send' }).click(),
      ]);
      assert.equal(answer.status(), 400);
      await page.getByRole('alert').filter({ hasText: 'the reply is empty' }).waitFor();
      await page.waitForTimeout(300); // the event stream connects
      // The customer writes: the page should show it (live, or not at all), and never GET
      // …/reply (405) nor reload the POST (which sends the form again).
      await hub.receive({ id: 'after-400', channel_id: 'wa', conversation_id: 'c1', sender_id: 'cust-1', message: 'Written after a refused reply' });
      await page.waitForTimeout(1500);
      assert.deepEqual(posts, ['/inbox/wa/c1/reply'], 'the form was posted once, by the click');
    });
  } finally {
    await hub.stop();
  }
}
