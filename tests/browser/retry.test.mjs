// A reply the provider app did not take: kept as "Not sent" with why and a Retry button; Retry
// while the app is still down keeps one failed reply (not two); once the app answers again
// (a new fixture process, `pdchannels app add --replace` pointing the hub at it), Retry sends it.
//
// The fixture app's command line has no way to make postMessage fail, so the test stops the app
// process: the hub's call is refused (connection refused), which is a failed send.

import assert from 'node:assert/strict';
import { startHub, startFixtureApp, until } from './lib/hub.mjs';
import { logInWithLink, sendReply, screenshot, threadTexts } from './lib/inbox.mjs';

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

    await t.test('a reply the app did not take shows as not sent, with why and Retry; Retry sends it once the app is back', async ({ page, expectErrorStatus }) => {
      await first.stop();
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/wa/c0`);

      await page.getByLabel('Reply').fill('Are you still there?');
      expectErrorStatus(502, '/inbox/wa/c0/reply');
      const [answer] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith('/inbox/wa/c0/reply')),
        page.getByRole('button', { name: 'Send' }).click(),
      ]);
      assert.equal(answer.status(), 502);
      await page.getByRole('alert').filter({ hasText: 'The app did not take the reply' }).waitFor();
      const unsent = page.locator('.messages .message.unsent');
      assert.equal(await unsent.count(), 1);
      assert.equal(await unsent.locator('.text').innerText(), 'Are you still there?');
      assert.equal(await unsent.locator('.status').innerText(), 'Not sent');
      assert.ok((await unsent.locator('.failure').innerText()).length > 0, 'the reason shows');
      assert.equal(await page.getByLabel('Reply').inputValue(), '', 'the text is not offered a second time');
      await screenshot(page, 'thread-failed-reply');

      // The thread reloaded (GET) shows it too.
      await page.goto(`${hub.url}/inbox/wa/c0`);
      assert.equal(await unsent.count(), 1);
      const retry = unsent.getByRole('button', { name: 'Retry' });

      // Retry while the app is still down: still one failed reply.
      expectErrorStatus(502, '/inbox/wa/c0/reply');
      const [again] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith('/inbox/wa/c0/reply')),
        retry.click(),
      ]);
      assert.equal(again.status(), 502);
      await page.getByRole('alert').waitFor();
      assert.equal(await unsent.count(), 1, 'a retry does not make a second reply');

      // The app is back (a new process: a new address, given to the hub with --replace).
      const second = await startFixtureApp(hub.dir, 'second', { channel: 'wa', conversations: 1, messages: 1 });
      hub.replaceApp('fixture', second);
      await Promise.all([page.waitForURL(`${hub.url}/inbox/wa/c0`), retry.click()]);
      assert.equal(await unsent.count(), 0, 'nothing left unsent');
      assert.equal(await page.locator('.error').count(), 0);
      assert.deepEqual(await threadTexts(page), ['hello 0', 'Are you still there?']);
      const sent = page.locator('.messages .message').last();
      assert.equal(await sent.locator('.status').getAttribute('title'), 'sent');
    });
  } finally {
    await hub.stop();
  }
}
