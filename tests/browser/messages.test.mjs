// The inbox with messages in it: the list and the thread, a hostile text shown as text, a reply
// through the channel's provider app (the testkit's fixture app, a real process) with and
// without JavaScript, and the phone layout.
//
// The hub has two channels: `wa` ("WhatsApp Sales"), of the fixture app, which syncs its one
// conversation c0 (customer "Customer cust-0", agent "Agent Smith", one message "hello 0"), and
// `plain` ("Plain"), of no app, where the tests receive messages over the API.

import assert from 'node:assert/strict';
import { startHub, startFixtureApp, until } from './lib/hub.mjs';
import {
  logInWithLink, sendReply, assertNoHorizontalOverflow, screenshot, threadTexts,
} from './lib/inbox.mjs';

export default async function (t) {
  const hub = await startHub('messages');
  try {
    const app = await startFixtureApp(hub.dir, 'wa', { channel: 'wa', conversations: 1, messages: 1 });
    const appToken = hub.addApp('fixture', app);
    await hub.api('POST', '/v1/channels', { name: 'WhatsApp Sales', provider_channel_id: 'wa', provider_type: 'whatsapp' }, appToken);
    await hub.api('POST', '/v1/channels', { name: 'Plain', provider_channel_id: 'plain' });
    await until('the fixture app\'s conversation c0 to sync', async () => {
      const answer = await fetch(`${hub.url}/v1/channels/wa/conversations/c0`, { headers: { 'x-api-token': hub.token } });
      if (!answer.ok) return false;
      const body = await answer.json();
      return (body.data?.messages ?? []).length >= 1;
    });

    await t.test('a message received over the API is listed, and its thread shows it', async ({ page }) => {
      await hub.receive({
        id: 'ada-1', channel_id: 'plain', conversation_id: 'conv-ada', sender_id: 'ada-lovelace',
        message: 'Hi! Is the blue one still in stock?',
      });
      await logInWithLink(page, hub);
      const row = page.locator('li.row').filter({ hasText: 'ada-lovelace' });
      await row.waitFor();
      await assert.doesNotReject(row.getByText('Hi! Is the blue one still in stock?').waitFor());
      assert.equal(await row.locator('.channel').innerText(), 'Plain');
      assert.equal(await row.locator('time').innerText(), 'just now');
      assert.equal(await row.locator('.avatar').innerText(), 'AD');
      // The fixture app's conversation is listed too.
      await page.locator('li.row').filter({ hasText: 'Customer cust-0' }).waitFor();
      await page.getByText('Pick a conversation.').waitFor();
      await screenshot(page, 'list');

      await Promise.all([page.waitForURL(`${hub.url}/inbox/plain/conv-ada`), row.locator('a').click()]);
      await page.getByRole('heading', { name: /ada-lovelace/ }).waitFor();
      assert.deepEqual(await threadTexts(page), ['Hi! Is the blue one still in stock?']);
      const message = page.locator('.messages .message').first();
      assert.match(await message.getAttribute('class'), /\bincoming\b/);
      assert.equal(await message.locator('.sender').innerText(), 'ada-lovelace');
      assert.equal(await page.locator('li.row a[aria-current="page"]').count(), 1);
      assert.match(await page.locator('li.row.current').innerText(), /ada-lovelace/);
      // A channel of no app: no composer, and why.
      await page.locator('.cannot-send').filter({ hasText: 'belongs to no provider app' }).waitFor();
      assert.equal(await page.locator('form.composer').count(), 0);
      await screenshot(page, 'thread-no-app');

      // The channel filter (a GET form) keeps to one channel.
      await page.goto(`${hub.url}/inbox`);
      await page.getByLabel('Channel').selectOption('plain');
      await Promise.all([page.waitForURL((u) => u.pathname === '/inbox' && u.searchParams.get('channel') === 'plain'), page.getByRole('button', { name: 'Show' }).click()]);
      await page.locator('li.row').filter({ hasText: 'ada-lovelace' }).waitFor();
      assert.equal(await page.locator('li.row').filter({ hasText: 'Customer cust-0' }).count(), 0);
    });

    await t.test('a message `<img src=x onerror=alert(1)>` shows as text: no element, no script, no dialog', async ({ page }) => {
      const hostile = '<img src=x onerror=alert(1)>';
      await hub.receive({
        id: 'xss-1', channel_id: 'plain', conversation_id: 'conv-xss', sender_id: '<b>mallory</b>', message: hostile,
      });
      await logInWithLink(page, hub);
      const row = page.locator('li.row').filter({ hasText: '<b>mallory</b>' });
      assert.equal(await row.locator('.preview').innerText(), hostile);
      assert.equal(await page.locator('img').count(), 0, 'no img element in the list');
      assert.equal(await page.locator('b').count(), 0, 'no b element in the list');

      await Promise.all([page.waitForURL(`${hub.url}/inbox/plain/conv-xss`), row.locator('a').click()]);
      assert.deepEqual(await threadTexts(page), [hostile]);
      assert.equal(await page.locator('img').count(), 0, 'no img element in the thread');
      assert.equal(await page.locator('b').count(), 0, 'no b element in the thread');
      assert.match(await page.title(), /<b>mallory<\/b>/, 'the title shows the name as text');
      // Time for an onerror to fire, had an img been made (the runner fails the test on a dialog).
      await page.waitForTimeout(300);
    });

    await t.test('a reply typed in the composer goes out through the fixture app and shows in the thread as sent', async ({ page, expectErrorStatus }) => {
      await logInWithLink(page, hub);
      const row = page.locator('li.row').filter({ hasText: 'Customer cust-0' });
      await Promise.all([page.waitForURL(`${hub.url}/inbox/wa/c0`), row.locator('a').click()]);
      await page.getByRole('heading', { name: /Customer cust-0/ }).waitFor();
      assert.deepEqual(await threadTexts(page), ['hello 0']);
      await page.getByRole('link', { name: 'Open at the provider' }).waitFor();

      await sendReply(page, 'Thanks, on it');
      assert.equal(page.url(), `${hub.url}/inbox/wa/c0`, 'back to the thread (303)');
      assert.deepEqual(await threadTexts(page), ['hello 0', 'Thanks, on it']);
      const reply = page.locator('.messages .message').last();
      assert.match(await reply.getAttribute('class'), /\boutgoing\b/);
      assert.equal(await reply.locator('.sender').innerText(), 'Agent Smith');
      assert.equal(await reply.locator('.status').getAttribute('title'), 'sent');
      assert.equal(await reply.locator('.status').innerText(), '✓');
      assert.equal(await page.locator('form.composer textarea[name=message]').inputValue(), '', 'the box is empty again');
      assert.equal(await page.locator('.error').count(), 0);
      // The list shows the reply as the conversation's last message.
      assert.match(await page.locator('li.row.current .preview').innerText(), /Thanks, on it/);
      await screenshot(page, 'thread');

      // An empty reply is refused, with why, and nothing is sent.
      await page.locator('form.composer textarea[name=message]').fill('   ');
      expectErrorStatus(400, '/inbox/wa/c0/reply');
      const [answer] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith('/inbox/wa/c0/reply')),
        page.getByRole('button', { name: 'Send' }).click(),
      ]);
      assert.equal(answer.status(), 400);
      await page.getByRole('alert').filter({ hasText: 'the reply is empty' }).waitFor();
      assert.deepEqual(await threadTexts(page), ['hello 0', 'Thanks, on it']);
    });

    await t.test('with JavaScript off, the reply form still sends', async ({ page }) => {
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/wa/c0`);
      await sendReply(page, 'Sent without JavaScript');
      assert.equal(page.url(), `${hub.url}/inbox/wa/c0`);
      const reply = page.locator('.messages .message').filter({ hasText: 'Sent without JavaScript' });
      await reply.waitFor();
      assert.equal(await reply.locator('.status').getAttribute('title'), 'sent');
    }, { context: { javaScriptEnabled: false } });

    await t.test('on a 390×844 phone one pane shows at a time, nothing scrolls sideways, and the back link returns to the list', async ({ page }) => {
      // Long words and ids a narrow screen must wrap or cut.
      await hub.receive({
        id: 'long-1', channel_id: 'plain', conversation_id: 'conv-long',
        sender_id: 'customer-with-a-rather-long-identifier-15551234567',
        message: 'See https://shop.example.com/products/blue-one?variant=1234567890&utm_source=whatsapp&utm_medium=chat&utm_campaign=winter-sale-2026 and tell me whether it ships to Reykjavík',
      });
      await logInWithLink(page, hub);
      const list = page.locator('nav.list');
      const thread = page.locator('main.thread');
      assert.ok(await list.isVisible(), 'the list shows');
      assert.ok(!(await thread.isVisible()), 'the thread pane is hidden');
      await assertNoHorizontalOverflow(page, 'the list');
      await screenshot(page, 'phone-list');

      const row = page.locator('li.row').filter({ hasText: 'customer-with-a-rather-long-identifier' });
      await Promise.all([page.waitForURL(`${hub.url}/inbox/plain/conv-long`), row.locator('a').tap()]);
      assert.ok(await thread.isVisible(), 'the thread shows');
      assert.ok(!(await list.isVisible()), 'the list is hidden');
      await assertNoHorizontalOverflow(page, 'a thread with a long link');
      await screenshot(page, 'phone-thread-long');

      const back = page.getByRole('link', { name: '← All conversations' });
      assert.ok(await back.isVisible(), 'a back link');
      await Promise.all([page.waitForURL(`${hub.url}/inbox`), back.tap()]);
      assert.ok(await list.isVisible(), 'the list again');
      assert.ok(!(await thread.isVisible()));

      // The thread with the composer.
      const c0 = page.locator('li.row').filter({ hasText: 'Customer cust-0' });
      await Promise.all([page.waitForURL(`${hub.url}/inbox/wa/c0`), c0.locator('a').tap()]);
      assert.ok(await page.locator('form.composer textarea[name=message]').isVisible(), 'the reply box shows');
      await assertNoHorizontalOverflow(page, 'a thread with the composer');
      await screenshot(page, 'phone-thread');
      await screenshot(page, 'phone-thread-full', { fullPage: true });
    }, { context: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 } });

    await t.test('a conversation that does not exist answers 404 with a way back, and no other error', async ({ page, expectErrorStatus }) => {
      await logInWithLink(page, hub);
      expectErrorStatus(404, '/inbox/plain/no-such-conversation');
      const answer = await page.goto(`${hub.url}/inbox/plain/no-such-conversation`);
      assert.equal(answer.status(), 404);
      await page.getByText('Channel plain has no conversation no-such-conversation.').waitFor();
      await page.waitForTimeout(300); // the icon a page without one asks for (/favicon.ico)
      await Promise.all([page.waitForURL(`${hub.url}/inbox`), page.getByRole('link', { name: 'Back to the inbox' }).click()]);
    });
  } finally {
    await hub.stop();
  }
}
