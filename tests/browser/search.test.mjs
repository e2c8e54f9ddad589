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
      // (The back link shows on a narrow screen only.)
      const back = await page.locator('main.thread a.back').evaluate((a) => a.href);
      assert.equal(new URL(back).searchParams.get('q'), 'bicycle');
    });

    const check = async (page, label, on) => {
      const box = page.getByRole('checkbox', { name: label });
      if (on) await box.check(); else await box.uncheck();
    };
    const show = async (page) => {
      await Promise.all([page.waitForEvent('framenavigated', (f) => f === page.mainFrame()), page.getByRole('button', { name: 'Show' }).click()]);
      await page.waitForLoadState();
    };

    await t.test('the unread filter: opening a thread reads it; the list keeps the unread ones, each with its badge', async ({ page }) => {
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox?unread=1`);
      const unreadBefore = await listWho(page);
      assert.ok(unreadBefore.includes('sara-shoe'), `sara is unread: ${unreadBefore}`);
      assert.equal(await page.getByRole('checkbox', { name: 'Unread' }).isChecked(), true);
      await page.goto(`${hub.url}/inbox/plain/conv-shoe`);
      await page.goto(`${hub.url}/inbox`);
      assert.doesNotMatch(await row(page, 'sara-shoe').getAttribute('class'), /\bunread\b/);
      assert.equal(await row(page, 'sara-shoe').locator('.badge').count(), 0);
      await check(page, 'Unread', true);
      await show(page);
      assert.equal(new URL(page.url()).searchParams.get('unread'), '1');
      const unread = await listWho(page);
      assert.ok(!unread.includes('sara-shoe'), 'read: not listed as unread');
      assert.ok(unread.length >= 1, `others are still unread: ${unread}`);
      for (const who of unread) {
        assert.equal(await row(page, who).locator('.badge').innerText(), 'unread', `${who} has the badge`);
      }
    });

    await t.test('Mark unread (from the open thread) leaves the conversation unread', async ({ page }) => {
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/plain/conv-bike`);
      await page.waitForTimeout(300); // the thread's event stream connects
      await postAndFollow(page, page.getByRole('button', { name: 'Mark unread' }), '/inbox/plain/conv-bike/unread');
      assert.equal(new URL(page.url()).pathname, '/inbox');
      assert.match(await row(page, 'bert-bike').getAttribute('class'), /\bunread\b/, 'unread in the list the POST led to');
      // A moment later, and in a fresh page: still unread.
      await page.waitForTimeout(1000);
      await page.goto(`${hub.url}/inbox?unread=1`);
      assert.ok((await listWho(page)).includes('bert-bike'), 'still unread a second later (the open thread\'s own live refresh must not read it again)');
    });

    await t.test('Close takes a conversation out of the open list into Closed, with its marker; Reopen brings it back', async ({ page }) => {
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/plain/conv-hat`);
      await postAndFollow(page, page.getByRole('button', { name: 'Close' }), '/inbox/plain/conv-hat/close');
      assert.equal(new URL(page.url()).pathname, '/inbox');
      assert.ok(!(await listWho(page)).includes('hugo-hat'), 'a closed conversation leaves the open list');
      await page.getByLabel('Status').selectOption('closed');
      await show(page);
      assert.equal(new URL(page.url()).searchParams.get('status'), 'closed');
      assert.deepEqual(await listWho(page), ['hugo-hat']);
      assert.equal(await row(page, 'hugo-hat').locator('.closed').innerText(), 'closed');
      await screenshot(page, 'filter-closed');
      await openRow(page, 'hugo-hat', '/inbox/plain/conv-hat');
      await page.locator('.thread-head .closed').waitFor();
      await postAndFollow(page, page.getByRole('button', { name: 'Reopen' }), '/inbox/plain/conv-hat/reopen');
      assert.equal(await page.locator('.thread-head .closed').count(), 0);
      await page.goto(`${hub.url}/inbox`);
      assert.ok((await listWho(page)).includes('hugo-hat'), 'reopened: in the open list');
      await page.goto(`${hub.url}/inbox?status=all`);
      assert.ok((await listWho(page)).includes('hugo-hat'));
    });

    await t.test('the awaiting-reply filter: the customer wrote last; a conversation we answered is not awaiting', async ({ page }) => {
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/wa/c0`);
      await sendReply(page, 'Answered, so not awaiting');
      await page.goto(`${hub.url}/inbox`);
      assert.equal(await row(page, 'Customer cust-0').locator('.awaiting').count(), 0, 'answered: no marker');
      assert.equal(await row(page, 'bert-bike').locator('.awaiting').innerText(), 'awaiting reply');
      await check(page, 'Awaiting reply', true);
      await show(page);
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
