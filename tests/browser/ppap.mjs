// The recipients' PPAP password page in a real browser (Debian's Chromium driven by
// playwright-core). Run by tests/it/browser.rs, which starts the gateway with
// [ppap] public_url, holds two password-protected ZIPs over SMTP and reads each recipient's
// one-time link from the notice it was mailed; it checks the delivery afterwards.
//
// Environment: BASE (admin listener URL), LINK, LOCK_LINK and EXPIRED_LINK (paths
// /ppap/<token> of three links, the last past its validity), PASSWORD (LINK's right password), LOCK_PASSWORD (LOCK_LINK's), ARTIFACTS.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};
const BASE = env('BASE');
const LINK = env('LINK');
const LOCK_LINK = env('LOCK_LINK');
const EXPIRED_LINK = env('EXPIRED_LINK');
const PASSWORD = env('PASSWORD');
const LOCK_PASSWORD = env('LOCK_PASSWORD');
const ARTIFACTS = env('ARTIFACTS');
mkdirSync(ARTIFACTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
// No account: a fresh context with no cookies, as a recipient's browser would be.
const context = await browser.newContext();
const page = await context.newPage();
const problems = [];
// Statuses the pages answer on purpose (410, 403, the favicon's 404) are logged as failed
// loads; anything else — a CSP violation above all — is a problem.
page.on('console', (m) => {
  if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push(m.text());
});
page.on('pageerror', (e) => problems.push(String(e)));

// 1. The link opens the page: sender, subject, file and its member names, a password field.
await page.goto(`${BASE}${LINK}`);
assert.doesNotMatch(page.url(), /\/login/, 'no login needed');
assert.match(await page.textContent('h1'), /パスワードの入力/);
const main = await page.textContent('main');
assert.match(main, /sender@example\.invalid/);
assert.match(main, /見積書の送付/);
assert.match(main, /見積書\.zip/);
assert.match(main, /見積書\.docm/);
assert.equal(await page.locator('input[type=password][name=password]').count(), 1);
await page.screenshot({ path: `${ARTIFACTS}/ppap-form.png`, fullPage: true });

// 2. A wrong password: told so, with the tries left, and the form again.
await page.fill('input[name=password]', 'not-the-password');
await page.click('main form button');
assert.match(await page.textContent('.error'), /パスワードが違います。あと 4 回/);
assert.equal(await page.inputValue('input[name=password]'), '', 'the password is not echoed back');
await page.screenshot({ path: `${ARTIFACTS}/ppap-wrong.png`, fullPage: true });

// 3. The right one: unlocked, and mailed to this recipient.
await page.fill('input[name=password]', PASSWORD);
await page.click('main form button');
assert.match(await page.textContent('h1'), /解除しました/);
assert.match(await page.textContent('.notice'), /無害化した結果を .* 宛てにメールでお送りしました/);
assert.doesNotMatch(await page.content(), new RegExp(PASSWORD));
await page.screenshot({ path: `${ARTIFACTS}/ppap-unlocked.png`, fullPage: true });

// 4. The link works once.
const again = await page.goto(`${BASE}${LINK}`);
assert.equal(again.status(), 410);
assert.match(await page.textContent('main'), /使用済み/);

// 5. Another link: five wrong passwords lock it; the right one is refused afterwards.
await page.goto(`${BASE}${LOCK_LINK}`);
const nonce = await page.getAttribute('input[name=nonce]', 'value');
for (let left = 4; left >= 1; left--) {
  await page.fill('input[name=password]', `guess-${left}`);
  await page.click('main form button');
  assert.match(await page.textContent('.error'), new RegExp(`あと ${left} 回`));
}
await page.fill('input[name=password]', 'guess-0');
await page.click('main form button');
assert.match(await page.textContent('.error'), /ロックされました/);
assert.equal(await page.locator('input[name=password]').count(), 0, 'no form on a locked link');
await page.screenshot({ path: `${ARTIFACTS}/ppap-locked.png`, fullPage: true });
const sixth = await page.request.post(`${BASE}${LOCK_LINK}`, {
  form: { nonce, password: LOCK_PASSWORD },
  maxRedirects: 0,
});
assert.equal(sixth.status(), 403, 'locked even with the right password');
assert.match(await sixth.text(), /ロック/);

// 6. A link past its validity: refused with a Japanese page and no form.
const expired = await page.goto(`${BASE}${EXPIRED_LINK}`);
assert.equal(expired.status(), 410);
assert.match(await page.textContent('main'), /有効期限が切れています/);
assert.equal(await page.locator('input[name=password]').count(), 0, 'no form on an expired link');
await page.screenshot({ path: `${ARTIFACTS}/ppap-expired.png`, fullPage: true });

assert.deepEqual(problems, [], 'no script errors or CSP violations');
await browser.close();
console.log('browser PPAP flow: ok');
