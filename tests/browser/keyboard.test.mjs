// What inbox.js adds at the keyboard and in the composer: a draft per conversation (kept in
// this browser: not in another conversation, still there after a reload), Ctrl+Enter sends,
// j/k move between rows and Enter opens, `/` searches, `r` replies, Esc goes back, `?` opens
// the shortcuts.

import assert from 'node:assert/strict';
import { startHubWithApp } from './lib/hub.mjs';
import { logInWithLink, screenshot, threadTexts, openRow, listWho, postAndFollow } from './lib/inbox.mjs';

const focused = (page) => page.evaluate(() => {
  const e = document.activeElement;
  return e ? { tag: e.tagName.toLowerCase(), name: e.getAttribute('name'), href: e.getAttribute('href'), id: e.id } : null;
});

export default async function (t) {
  const { hub } = await startHubWithApp('keyboard', { conversations: 2, messages: 1 });
  try {
    await t.test('a draft stays with its conversation: not in another one, still there after a reload, gone once sent', async ({ page }) => {
      await logInWithLink(page, hub);
      await openRow(page, 'Customer cust-0', '/inbox/wa/c0');
      const box = page.locator('form.composer textarea[name=message]');
      await box.pressSequentially('Half-written answer for c0');

      await openRow(page, 'Customer cust-1', '/inbox/wa/c1');
      assert.equal(await box.inputValue(), '', 'no draft of c0 in c1');
      await box.pressSequentially('Other draft for c1');

      await openRow(page, 'Customer cust-0', '/inbox/wa/c0');
      assert.equal(await box.inputValue(), 'Half-written answer for c0');
      await page.reload();
      assert.equal(await box.inputValue(), 'Half-written answer for c0', 'kept across a reload');
      await page.goto(`${hub.url}/inbox/wa/c1`);
      assert.equal(await box.inputValue(), 'Other draft for c1');

      // Ctrl+Enter sends it; the draft is gone with it.
      await box.focus();
      const [answer] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/inbox/wa/c1/reply')),
        page.waitForEvent('framenavigated', (f) => f === page.mainFrame()),
        box.press('Control+Enter'),
      ]);
      assert.equal(answer.status(), 303);
      await page.waitForLoadState('load');
      assert.deepEqual(await threadTexts(page), ['hello 0', 'Other draft for c1']);
      assert.equal(await page.locator('.messages .message').last().locator('.status').innerText(), '✓');
      assert.equal(await box.inputValue(), '', 'the sent draft is not offered again');
      await page.reload();
      assert.equal(await box.inputValue(), '');
      // Ctrl+Enter on an empty box sends nothing.
      await box.focus();
      await box.press('Control+Enter');
      await page.waitForTimeout(300);
      assert.deepEqual(await threadTexts(page), ['hello 0', 'Other draft for c1']);
      // c0's draft is still its own.
      await page.goto(`${hub.url}/inbox/wa/c0`);
      assert.equal(await box.inputValue(), 'Half-written answer for c0');
    });

    await t.test('j/k move between rows, Enter opens; `/` searches; `r` replies; Esc goes back; `?` shows the shortcuts', async ({ page }) => {
      await hub.receive({ id: 'kb-1', channel_id: 'plain', conversation_id: 'conv-kb', sender_id: 'kira-keys', message: 'Keyboard person here' });
      await logInWithLink(page, hub);
      const who = await listWho(page);
      assert.ok(who.length >= 3, `three rows: ${who}`);
      const hrefs = await page.locator('nav.list li.row a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));

      await page.evaluate(() => document.activeElement?.blur());
      await page.keyboard.press('j');
      assert.equal((await focused(page))?.href, hrefs[0], 'j: the first row');
      await page.keyboard.press('j');
      assert.equal((await focused(page))?.href, hrefs[1], 'j again: the second');
      await page.keyboard.press('j');
      assert.equal((await focused(page))?.href, hrefs[2], 'the third');
      await page.keyboard.press('k');
      assert.equal((await focused(page))?.href, hrefs[1], 'k: back to the second');
      // The focused row is visibly focused.
      const ring = await page.evaluate(() => {
        const s = getComputedStyle(document.activeElement);
        return { outline: s.outlineStyle, width: s.outlineWidth, shadow: s.boxShadow };
      });
      assert.ok((ring.outline !== 'none' && ring.width !== '0px') || ring.shadow !== 'none', `a visible focus: ${JSON.stringify(ring)}`);
      await screenshot(page, 'keyboard-focus');
      await Promise.all([page.waitForURL((u) => u.pathname === hrefs[1]), page.keyboard.press('Enter')]);
      await page.locator('main.thread h1').waitFor();

      // j/k from the open thread start at its row.
      await page.keyboard.press('j');
      assert.equal((await focused(page))?.href, hrefs[2], 'j from the open thread: the next row');

      // `/` focuses the search box, without typing a slash into it.
      await page.keyboard.press('/');
      assert.equal((await focused(page))?.name, 'q');
      assert.equal(await page.getByRole('searchbox').inputValue(), '');
      // Keys typed there are text, not shortcuts.
      await page.keyboard.type('jk');
      assert.equal(await page.getByRole('searchbox').inputValue(), 'jk');
      await page.getByRole('searchbox').fill('');
      await page.keyboard.press('Escape');
      assert.notEqual((await focused(page))?.name, 'q', 'Esc leaves the box');

      // `r` focuses the reply box (a channel with an app), `?` there is text.
      await page.goto(`${hub.url}/inbox/wa/c0`);
      await page.keyboard.press('r');
      assert.equal((await focused(page))?.id, 'message');
      assert.equal(await page.locator('form.composer textarea[name=message]').inputValue(), '', 'no r typed');
      await page.keyboard.type('?');
      assert.ok(await page.locator('.help').isHidden(), '? typed in the box does not open the help');
      await page.locator('form.composer textarea[name=message]').fill('');
      await page.keyboard.press('Escape');
      assert.notEqual((await focused(page))?.id, 'message', 'Esc leaves the box');

      // `?` opens the shortcuts; Esc closes them; `?` twice toggles.
      await page.keyboard.press('?');
      const help = page.getByRole('dialog', { name: 'Keyboard shortcuts' });
      await help.waitFor();
      assert.ok(await help.isVisible());
      assert.match(await help.innerText(), /Next \/ previous conversation/);
      assert.equal((await focused(page))?.tag, 'button', 'the dialog\'s Close has the focus');
      await screenshot(page, 'help-dialog');
      await page.keyboard.press('Escape');
      assert.ok(await help.isHidden(), 'Esc closes the help');
      assert.equal(new URL(page.url()).pathname, '/inbox/wa/c0', 'and does not leave the thread');
      await page.getByRole('button', { name: 'Shortcuts' }).click();
      assert.ok(await help.isVisible(), 'the Shortcuts button opens it too');
      await help.getByRole('button', { name: 'Close' }).click();
      assert.ok(await help.isHidden());

      // Esc (not typing) goes back to the list.
      await page.locator('main.thread h1').click();
      await Promise.all([page.waitForURL(`${hub.url}/inbox`), page.keyboard.press('Escape')]);
    });

    await t.test('a reply too long to send comes back with its text, on the filtered thread', async ({ page, expectErrorStatus }) => {
      expectErrorStatus(400, '/inbox/wa/c0/reply');
      expectErrorStatus(413, '/inbox/wa/c0/reply');
      await logInWithLink(page, hub);
      await page.goto(`${hub.url}/inbox/wa/c0?status=all`);
      const box = page.locator('form.composer textarea[name=message]');
      assert.equal(await box.getAttribute('maxlength'), '65536', 'the box takes what a message may be');

      // The most the box takes, in letters of 2 bytes: over the 64 KiB a message may be. The
      // hub answers why and the text is still there.
      const long = 'é'.repeat(65_536);
      await box.fill(long);
      await postAndFollow(page, page.getByRole('button', { name: 'Send', exact: true }), '/inbox/wa/c0/reply', 400);
      assert.match(await page.locator('.thread .error').innerText(), /the limit is 64 KiB/);
      assert.equal((await box.inputValue()).length, long.length, 'the text the hub sent back');
      assert.equal(new URL(page.url()).pathname + new URL(page.url()).search, '/inbox/wa/c0?status=all',
        'the thread\'s own address, with the filters');
      assert.equal(await page.locator('select[name=status]').inputValue(), 'all', 'the list as it was filtered');

      // A form the hub cannot read at all (a box without its limit, as an old page or another
      // client may have): nothing sent, and the page's script puts the text back.
      await page.evaluate(() => document.querySelector('form.composer textarea').removeAttribute('maxlength'));
      const huge = 'x'.repeat(700 * 1024);
      await box.fill(huge);
      await postAndFollow(page, page.getByRole('button', { name: 'Send', exact: true }), '/inbox/wa/c0/reply', 413);
      assert.match(await page.locator('.thread .error').innerText(), /far over 64 KiB/);
      assert.equal((await box.inputValue()).length, huge.length, 'the text is back in the box');
      await screenshot(page, 'thread-reply-too-long');
      await page.reload();
      assert.equal((await box.inputValue()).length, huge.length, 'a draft again: a reload keeps it');
      await box.fill('');
      await page.reload();
      assert.equal(await box.inputValue(), '', 'until it is cleared');
    });
  } finally {
    await hub.stop();
  }
}
