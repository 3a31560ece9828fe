// The quarantine review UI in a real browser (Debian's Chromium driven by playwright-core).
// Run by tests/browser.rs, which starts the gateway, quarantines mail over SMTP and creates
// the accounts; it passes what this script needs in the environment and checks the delivery
// afterwards. Every step asserts what a person would see; any failure exits non-zero.
//
// Environment: BASE (admin UI URL), ITEM (an item quarantined by the SMTP run), ITEM2 (a
// second one), OP / AP / BOTH / LOCKED ("name:one-time-password"), IDLE_SECS, LOCK_AFTER,
// ARTIFACTS (folder for screenshots).

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};
const BASE = env('BASE');
const ITEM = env('ITEM');
const ITEM2 = env('ITEM2');
const ARTIFACTS = env('ARTIFACTS');
const IDLE_MS = Number(env('IDLE_SECS')) * 1000;
const LOCK_AFTER = Number(env('LOCK_AFTER'));
const account = (k) => {
  const [name, password] = env(k).split(':');
  return { name, password, next: 'Passphrase-for-browser-9' };
};
const [op, ap, both, locked] = ['OP', 'AP', 'BOTH', 'LOCKED'].map(account);
mkdirSync(ARTIFACTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

async function login(page, who, password) {
  await page.goto(`${BASE}/login`);
  await page.fill('input[name=name]', who.name);
  await page.fill('input[name=password]', password);
  await page.click('form[action="/login"] button');
}

// First login: the one-time password works once and must be replaced before anything else.
async function firstLogin(context, who) {
  const page = await context.newPage();
  await login(page, who, who.password);
  assert.match(page.url(), /\/password$/, `${who.name}: first login goes to the password page`);
  await page.goto(`${BASE}/items`);
  assert.match(page.url(), /\/password$/, 'nothing else until the password is changed');
  await page.fill('input[name=old]', who.password);
  await page.fill('input[name=new]', who.next);
  await page.fill('input[name=again]', who.next);
  await page.click('form[action="/password"] button');
  assert.match(await page.textContent('.notice'), /パスワードを変更しました/);
  return page;
}

async function logout(page) {
  await page.click('form[action="/logout"] button');
  assert.match(page.url(), /\/login$/);
}

// 1. An operator finds the item the SMTP run quarantined and asks for its release.
const ctxOp = await browser.newContext();
let page = await firstLogin(ctxOp, op);
assert.match(await page.textContent('main'), /初めてのログイン/);
await page.screenshot({ path: `${ARTIFACTS}/dashboard.png`, fullPage: true });
await page.goto(`${BASE}/items?q=${encodeURIComponent(ITEM)}`);
await page.screenshot({ path: `${ARTIFACTS}/list.png`, fullPage: true });
await page.click(`a[href="/items/${ITEM}"]`);
assert.match(await page.textContent('h1'), new RegExp(ITEM));
const detail = await page.textContent('main');
assert.match(detail, /見積書\.zip/);
assert.match(detail, /パスワード付き \(暗号化\)/);
assert.match(detail, /SHA-256/);
await page.screenshot({ path: `${ARTIFACTS}/detail.png`, fullPage: true });
await page.check('input[name=target][value=original]');
await page.fill('textarea[name=reason]', '取引先からの見積書。パスワードは電話で確認済み。');
await page.click(`form[action="/items/${ITEM}/request"] button`);
assert.match(await page.textContent('.notice'), /解除を申請しました/);
await logout(page);

// 2. Someone holding both roles may ask, but never approve their own request.
const ctxBoth = await browser.newContext();
page = await firstLogin(ctxBoth, both);
await page.goto(`${BASE}/items/${ITEM2}`);
await page.fill('textarea[name=reason]', '自分で申請して自分で承認できるか');
await page.click(`form[action="/items/${ITEM2}/request"] button`);
assert.match(await page.textContent('main'), /自分の申請は承認できません/);
assert.equal(await page.locator('form[action$="/approve"]').count(), 0, 'no approve form for one\'s own request');
// A hand-made post with a valid token is refused all the same.
const token = await page.getAttribute('form[action="/logout"] input[name=csrf]', 'value');
await page.goto(`${BASE}/requests`);
const own = await page.locator('tr', { hasText: ITEM2 }).first().locator('th span.id').first().textContent();
const forged = await page.request.post(`${BASE}/requests/${own.trim()}/approve`, {
  form: { csrf: token, reason: 'self' },
  maxRedirects: 0,
});
assert.equal(forged.status(), 403, 'self-approval refused');
assert.match(await forged.text(), /兼務の禁止/);
// And without the token nothing is accepted at all.
const noToken = await page.request.post(`${BASE}/requests/${own.trim()}/reject`, {
  form: { reason: 'x' },
  maxRedirects: 0,
});
assert.equal(noToken.status(), 403, 'CSRF');
await page.goto(`${BASE}/requests`);
await page.screenshot({ path: `${ARTIFACTS}/requests.png`, fullPage: true });
await logout(page);

// 3. A separate approver approves; the item goes out through the normal sink.
const ctxAp = await browser.newContext();
page = await firstLogin(ctxAp, ap);
await page.goto(`${BASE}/requests`);
const row = page.locator('tr', { hasText: ITEM }).first();
await row.locator('input[name=reason]').first().fill('差出人に電話で確認した');
await row.locator('form[action$="/approve"] button').click();
assert.match(await page.textContent('.notice'), /承認し、配送しました/);
assert.match(await page.textContent('main'), /解除済み/);
await page.screenshot({ path: `${ARTIFACTS}/released.png`, fullPage: true });
await logout(page);

// 4. Failed logins lock the account; even the right password is refused then.
const ctxLock = await browser.newContext();
page = await ctxLock.newPage();
for (let i = 0; i < LOCK_AFTER; i++) {
  await login(page, locked, 'not-the-password');
  assert.match(await page.textContent('.error'), /違います|ロック/);
}
await login(page, locked, locked.password);
assert.match(await page.textContent('.error'), /ロック/);
await page.screenshot({ path: `${ARTIFACTS}/locked.png`, fullPage: true });

// 5. A session ends after the idle time.
page = await ctxOp.newPage();
await login(page, op, op.next);
assert.match(await page.textContent('main'), /前回のログイン/);
await page.waitForTimeout(IDLE_MS + 1000);
await page.goto(`${BASE}/items`);
assert.match(page.url(), /\/login\?expired=1$/);
assert.match(await page.textContent('.notice'), /ログアウトしました/);

// 6. The English switch.
await page.click('a[href="/lang/en"]');
await page.goto(`${BASE}/login`);
assert.match(await page.textContent('h1'), /Log in/);

await browser.close();
console.log('browser review flow: ok');
