// The list's search box and filters, all in the URL (a GET form): a word finds its message (a
// prefix too, and a name); unread after Mark unread; closed after Close (and Reopen);
// awaiting reply (the customer wrote last, not after our reply); Delete… after its
// confirmation page.

import assert from 'node:assert/strict';
import { startHubWithApp } from './lib/hub.mjs';
import {
  logInWithLink, sendReply, screenshot, row, listWho, postAndFollow, openRow,
} from './lib/inbox.mjs';

export default async function (t) {
  const { hub } = await startHubWithApp('search', { conversations: 1, messages: 1 });
  try {
    const ago = (s) => new Date(Date.now() - s * 1000).toISOString();
    await hub.receive({ id: 'bike-1', channel_id: 'plain', conversation_id: 'conv-bike', sender_id: 'bert-bike', message: 'Do you still sell the blue bicycle?', created_at: ago(30) });
    await hub.receive({ id: 'shoe-1', channel_id: 'plain', conversation_id: 'conv-shoe', sender_id: 'sara-shoe', message: 'I need red shoes, size 41', created_at: ago(20) });
    await hub.receive({ id: 'hat-1', channel_id: 'plain', conversation_id: 'conv-hat', sender_id: 'hugo-hat', message: 'A green hat, please', created_at: ago(10) });

    const search = async (page, words) => {
      const box = page.getByRole('searchbox', { name: 'Search messages and names' });
      await box.fill(words);
      await Promise.all([page.waitForURL((u) => u.searchParams.get('q') === words), box.press('Enter')]);
      await page.waitForLoadState();
    };

    await t.test('search finds a message by a word, a prefix and a name; the query stays in the URL and the box', async ({ page }) => {
      await logInWithLink(page, hub);
      await search(page, 'bicycle');
      assert.deepEqual(await listWho(page), ['bert-bike']);
      assert.equal(await page.getByRole('searchbox').inputValue(), 'bicycle');
      await screenshot(page, 'search-results');

      await search(page, 'bicy');
      assert.deepEqual(await listWho(page), ['bert-bike'], 'the last word as a prefix');
      await search(page, 'red shoes');
      assert.deepEqual(await listWho(page), ['sara-shoe'], 'every word in one message');
      await search(page, 'hugo');
      assert.deepEqual(await listWho(page), ['hugo-hat'], 'a participant\'s id');
      await search(page, 'submarine');
      assert.deepEqual(await listWho(page), []);
      await page.getByText('No conversation matches.').waitFor();

      // A row found by search opens its thread; the back link keeps the search.
      await search(page, 'bicycle');
      await openRow(page, 'bert-bike', '/inbox/plain/conv-bike');
      assert.deepEqual(await listWho(page), ['bert-bike'], 'the list keeps the search beside the thread');
      const back = page.getByRole('link', { name: '← All conversations' });
      assert.equal(new URL(await back.evaluate((a) => a.href)).searchParams.get('q'), 'bicycle');
    });

    await t.test('filters: unread (and Mark unread), closed after Close (and Reopen), awaiting reply', async ({ page }) => {
      await logInWithLink(page, hub);
      const check = async (label, on) => {
        const box = page.getByRole('checkbox', { name: label });
        if (on) await box.check(); else await box.uncheck();
      };
      const show = async () => {
        await Promise.all([page.waitForEvent('framenavigated', (f) => f === page.mainFrame()), page.getByRole('button', { name: 'Show' }).click()]);
        await page.waitForLoadState();
      };

      // Unread: opening a thread reads it.
      await page.goto(`${hub.url}/inbox?unread=1`);
      const unreadBefore = await listWho(page);
      assert.ok(unreadBefore.includes('sara-shoe'), `sara is unread: ${unreadBefore}`);
      await page.goto(`${hub.url}/inbox/plain/conv-shoe`);
      await page.goto(`${hub.url}/inbox`);
      assert.doesNotMatch(await row(page, 'sara-shoe').getAttribute('class'), /\bunread\b/);
      await check('Unread', true);
      await show();
      assert.equal(new URL(page.url()).searchParams.get('unread'), '1');
      assert.ok(!(await listWho(page)).includes('sara-shoe'), 'read: not listed as unread');
      for (const who of await listWho(page)) {
        assert.equal(await row(page, who).locator('.badge').innerText(), 'unread', `${who} has the badge`);
      }
      // Mark unread (from the thread): back to the list, unread again.
      await page.goto(`${hub.url}/inbox/plain/conv-shoe`);
      await postAndFollow(page, page.getByRole('button', { name: 'Mark unread' }), '/inbox/plain/conv-shoe/unread');
      assert.equal(new URL(page.url()).pathname, '/inbox');
      assert.match(await row(page, 'sara-shoe').getAttribute('class'), /\bunread\b/);
      await page.goto(`${hub.url}/inbox?unread=1`);
      assert.ok((await listWho(page)).includes('sara-shoe'), 'unread again');

      // Close: gone from the open list, shown under Closed with its marker; Reopen brings it back.
      await page.goto(`${hub.url}/inbox/plain/conv-hat`);
      await postAndFollow(page, page.getByRole('button', { name: 'Close' }), '/inbox/plain/conv-hat/close');
      assert.equal(new URL(page.url()).pathname, '/inbox');
      assert.ok(!(await listWho(page)).includes('hugo-hat'), 'a closed conversation leaves the open list');
      await page.getByLabel('Status').selectOption('closed');
      await show();
      assert.equal(new URL(page.url()).searchParams.get('status'), 'closed');
      assert.deepEqual(await listWho(page), ['hugo-hat']);
      assert.equal(await row(page, 'hugo-hat').locator('.closed').innerText(), 'closed');
      await openRow(page, 'hugo-hat', '/inbox/plain/conv-hat');
      await page.locator('.thread-head .closed').waitFor();
      await postAndFollow(page, page.getByRole('button', { name: 'Reopen' }), '/inbox/plain/conv-hat/reopen');
      await page.goto(`${hub.url}/inbox`);
      assert.ok((await listWho(page)).includes('hugo-hat'), 'reopened: in the open list');

      // Awaiting reply: the customer wrote last. Answered (the fixture app's c0): not awaiting.
      await page.goto(`${hub.url}/inbox/wa/c0`);
      await sendReply(page, 'Answered, so not awaiting');
      await page.goto(`${hub.url}/inbox`);
      assert.equal(await row(page, 'Customer cust-0').locator('.awaiting').count(), 0, 'answered: no marker');
      assert.equal(await row(page, 'bert-bike').locator('.awaiting').innerText(), 'awaiting reply');
      await check('Awaiting reply', true);
      await show();
      assert.equal(new URL(page.url()).searchParams.get('awaiting'), '1');
      const awaiting = await listWho(page);
      assert.ok(awaiting.includes('bert-bike') && !awaiting.includes('Customer cust-0'), `awaiting: ${awaiting}`);
      await screenshot(page, 'filter-awaiting');
    });

    await t.test('Delete… asks first, then deletes the conversation', async ({ page }) => {
      await hub.receive({ id: 'gone-1', channel_id: 'plain', conversation_id: 'conv-gone', sender_id: 'gina-gone', message: 'Delete me' });
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/plain/conv-gone`);
      await Promise.all([page.waitForURL(`${hub.url}/inbox/plain/conv-gone/delete`), page.getByRole('link', { name: 'Delete…' }).click()]);
      await page.getByRole('heading', { name: /Delete the conversation with gina-gone/ }).waitFor();
      await postAndFollow(page, page.getByRole('button', { name: 'Delete the conversation' }), '/inbox/plain/conv-gone/delete');
      assert.equal(new URL(page.url()).pathname, '/inbox');
      assert.ok(!(await listWho(page)).includes('gina-gone'));
    });
  } finally {
    await hub.stop();
  }
}
