// Older messages than the hub stores: a thread whose provider app holds older ones (the fixture
// app with --older, a real process) offers "Older messages from the app" below the oldest stored
// message; clicking it asks the app then and there, and the same page shows them, oldest first.

import assert from 'node:assert/strict';
import { startHubWithApp } from './lib/hub.mjs';
import { logInWithLink, postAndFollow, screenshot, threadTexts } from './lib/inbox.mjs';

export default async function (t) {
  const { hub } = await startHubWithApp('older', { conversations: 1, messages: 2, older: 3 });
  try {
    await t.test('a thread asks its app for older messages, and shows them', async ({ page }) => {
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/wa/c0`);
      assert.deepEqual(await threadTexts(page), ['hello 0', 'hello 1'], 'only what the hub stores');
      const ask = page.getByRole('button', { name: 'Older messages from the app' });
      await ask.waitFor();
      await screenshot(page, 'thread-older-from-app');

      await postAndFollow(page, ask, '/inbox/wa/c0/older');
      assert.equal(new URL(page.url()).pathname, '/inbox/wa/c0');
      assert.deepEqual(await threadTexts(page),
        ['earlier 0', 'earlier 1', 'earlier 2', 'hello 0', 'hello 1'], 'the older ones first');
      assert.equal(await ask.count(), 0, 'the app holds no older ones now');
      await screenshot(page, 'thread-older-fetched');
    });
  } finally {
    await hub.stop();
  }
}
