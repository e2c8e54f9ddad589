// A reply the provider app did not take: back to the thread (303), where it is kept as "Not
// sent" with why and a Retry button; Retry while the app is still down keeps one failed reply (not two); once the app answers again
// (a new fixture process, `pdchannels app add --replace` pointing the hub at it), Retry sends it.
//
// The fixture app's command line has no way to make postMessage fail, so the test stops the app
// process: the hub's call is refused (connection refused), which is a failed send.

import assert from 'node:assert/strict';
import { startHub, startHubWithApp, startFixtureApp, until } from './lib/hub.mjs';
import { logInWithLink, postAndFollow, screenshot, threadTexts, markWindow, assertNotReloaded } from './lib/inbox.mjs';

export default async function (t) {
  const hub = await startHub('retry');
  try {
    const first = await startFixtureApp(hub.dir, 'first', { channel: 'wa', conversations: 1, messages: 1 });
    const appToken = hub.addApp('fixture', first);
    await hub.api('POST', '/v1/channels', { name: 'WhatsApp Sales', provider_channel_id: 'wa' }, appToken);
    await until('the fixture app\'s conversation c0 to sync', async () => {
      const answer = await fetch(`${hub.url}/v1/channels/wa/conversations/c0`, { headers: { 'x-api-token': hub.token } });
      return answer.ok && ((await answer.json()).data?.messages ?? []).length >= 1;
    });

    await t.test('a reply the app did not take shows as not sent, with why and Retry; Retry sends it once the app is back', async ({ page }) => {
      await first.stop();
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/wa/c0`);

      await page.locator('form.composer textarea[name=message]').fill('Are you still there?');
      // Not sent, but kept (failed, with why): back to the thread (303), so a reload cannot
      // post the form again.
      await postAndFollow(page, page.getByRole('button', { name: 'Send' }), '/inbox/wa/c0/reply');
      assert.equal(page.url(), `${hub.url}/inbox/wa/c0`);
      const unsent = page.locator('.messages .message.unsent');
      await unsent.first().waitFor();
      assert.equal(await unsent.count(), 1);
      assert.equal(await unsent.locator('.text').innerText(), 'Are you still there?');
      assert.equal(await unsent.locator('.status').innerText(), 'Not sent');
      const why = await unsent.locator('.failure').innerText();
      assert.ok(why.trim().length > 0, 'the reason shows');
      assert.equal(await page.locator('form.composer textarea[name=message]').inputValue(), '', 'the text is not offered a second time');
      assert.equal(await threadTexts(page).then((t) => t.filter((x) => x === 'Are you still there?').length), 1, 'shown once');
      await screenshot(page, 'thread-failed-reply');

      // The thread reloaded (GET) shows it too.
      await page.reload();
      assert.equal(await unsent.count(), 1);
      const retry = unsent.getByRole('button', { name: 'Retry' });

      // Retry while the app is still down: still one failed reply.
      await postAndFollow(page, retry, '/inbox/wa/c0/reply');
      await unsent.first().waitFor();
      assert.equal(await unsent.count(), 1, 'a retry does not make a second reply');
      assert.equal(await unsent.locator('.status').innerText(), 'Not sent');

      // The app is back (a new process: a new address, given to the hub with --replace).
      const second = await startFixtureApp(hub.dir, 'second', { channel: 'wa', conversations: 1, messages: 1 });
      hub.replaceApp('fixture', second);
      await postAndFollow(page, retry, '/inbox/wa/c0/reply');
      await page.waitForFunction(() => document.querySelectorAll('.messages .message.unsent').length === 0);
      assert.equal(await page.locator('.error').count(), 0);
      assert.deepEqual(await threadTexts(page), ['hello 0', 'Are you still there?']);
      const sent = page.locator('.messages .message').last();
      assert.equal(await sent.locator('.status').getAttribute('title'), 'sent');
    });

  } finally {
    await hub.stop();
  }

  // A second hub.
  await t.test('a failed reply shows live, with its reason, in another tab, and Retry from there shows sent in both', async ({ context, page }) => {
    // A hub of its own: each fixture process names the replies it takes msg-pd-1, msg-pd-2,
    // ..., so a second process's first reply would have the id of one the hub already has.
    const { hub, app } = await startHubWithApp('retry-live');
    try {
      await app.stop();
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/wa/c0`);
      const watcher = await context.newPage();
      await watcher.goto(`${hub.url}/inbox/wa/c0`);
      await markWindow(watcher);
      await watcher.waitForTimeout(300); // its event stream connects

      await page.locator('form.composer textarea[name=message]').fill('Seen from the other tab?');
      await postAndFollow(page, page.getByRole('button', { name: 'Send' }), '/inbox/wa/c0/reply');
      const why = await page.locator('.messages .message.unsent .failure').innerText();
      await watcher.locator('.messages .message.unsent .status').filter({ hasText: 'Not sent' }).waitFor({ timeout: 5_000 })
        .catch((e) => { throw new Error(`the other tab did not show the failed reply live (a failed reply sends no change event): ${e.message}`); });
      assert.equal(await watcher.locator('.messages .message.unsent .failure').innerText(), why);
      await assertNotReloaded(watcher, 'the other tab');

      const second = await startFixtureApp(hub.dir, 'second', { channel: 'wa', conversations: 1, messages: 1 });
      hub.replaceApp('fixture', second);
      await postAndFollow(watcher, watcher.locator('.messages .message.unsent').getByRole('button', { name: 'Retry' }), '/inbox/wa/c0/reply');
      for (const [p, name] of [[watcher, 'the tab that retried'], [page, 'the first tab']]) {
        await p.waitForFunction(() => document.querySelectorAll('.messages .message.unsent').length === 0
          && [...document.querySelectorAll('.messages .message')].some((m) => m.querySelector('.text')?.textContent === 'Seen from the other tab?'
            && m.querySelector('.status')?.getAttribute('title') === 'sent'), null, { timeout: 5_000 })
          .catch((e) => { throw new Error(`${name} did not show the retried reply as sent: ${e.message}`); });
        assert.equal((await threadTexts(p)).filter((x) => x === 'Seen from the other tab?').length, 1, name);
      }
    } finally {
      await hub.stop();
    }
  });
}
