// Issue #19 item 3: the review pages at 1366×768 and 1024×768 (Debian's Chromium driven by
// playwright-core). Run by tests/it/browser.rs, which starts the gateway, seeds and
// quarantines items and makes one account holding every role (the widest menu).
//
// On each page and at each width the page itself is measured (page.evaluate):
// - nothing is wider than the viewport: the document does not scroll sideways and no
//   element's box reaches past the viewport's right edge;
// - no table cell whose text is one word of at most 8 characters (no white space) is broken
//   across lines, and no ASCII word of at most 8 characters inside any cell is either (lines
//   are counted from Range.getClientRects); item IDs and times never break;
// - the header bar and its menu are one line (middles of its children within 4 px).
// Any finding fails the run with the element it names. Screenshots: w<width>-<page>.png.
//
// Environment: BASE, ITEM (an item with a report), ALL ("name:one-time-password"), ARTIFACTS.

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
const ARTIFACTS = env('ARTIFACTS');
const [name, oneTime] = env('ALL').split(':');
const next = 'Layout-check-passphrase-7';
mkdirSync(ARTIFACTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--font-render-hinting=none',
  ],
});
const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
const page = await context.newPage();

// First login and the password change.
await page.goto(`${BASE}/login`);
await page.fill('input[name=name]', name);
await page.fill('input[name=password]', oneTime);
await page.click('form[action="/login"] button');
await page.fill('input[name=old]', oneTime);
await page.fill('input[name=new]', next);
await page.fill('input[name=again]', next);
await page.click('form[action="/password"] button');
assert.match(await page.textContent('.notice'), /パスワードを変更しました/);

// Something in the item's trail and request table: a release request through the list's
// bulk form (no script: a checkbox and a post).
await page.goto(`${BASE}/items`);
await page.check(`input[name="sel-${ITEM}"]`);
await page.selectOption('select[name=action]', 'request');
await page.fill('fieldset.bulk input[name=reason]', '取引先に電話で確認済み');
await page.click('fieldset.bulk button');
assert.match(await page.textContent('main'), /1 \/ 1/);

// What is measured, in the page.
function measure() {
  const vw = document.documentElement.clientWidth;
  const problems = [];
  const describe = (el) => {
    const cls = el.className && typeof el.className === 'string' ? `.${el.className.split(' ').join('.')}` : '';
    const text = (el.innerText || el.textContent || '').trim().slice(0, 40);
    return `<${el.tagName.toLowerCase()}${cls}> "${text}"`;
  };
  if (document.documentElement.scrollWidth > vw) {
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${vw}`);
  }
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('.skip')) continue; // off-screen until focused, by design
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > vw + 0.5) problems.push(`${describe(el)} reaches x=${Math.round(r.right)} > ${vw}`);
    if (r.width > vw) problems.push(`${describe(el)} is ${Math.round(r.width)} px wide > ${vw}`);
  }
  // Distinct line boxes a range covers (tops closer than 4 px are one line).
  const lines = (range) => {
    const tops = [];
    for (const rect of range.getClientRects()) {
      if (rect.width === 0) continue;
      if (!tops.some((t) => Math.abs(t - rect.top) < 4)) tops.push(rect.top);
    }
    return tops.length;
  };
  const rangeOf = (node, start, end) => {
    const range = document.createRange();
    range.setStart(node, start);
    range.setEnd(node, end);
    return range;
  };
  for (const cell of document.querySelectorAll('td, th')) {
    if (cell.getClientRects().length === 0) continue;
    const text = cell.innerText.trim();
    const chars = [...text];
    if (text && !/\s/.test(text) && chars.length <= 8) {
      const range = document.createRange();
      range.selectNodeContents(cell);
      const n = lines(range);
      if (n > 1) problems.push(`${describe(cell)}: "${text}" is broken over ${n} lines`);
    }
    // Every ASCII word of at most 8 characters, wherever it stands in the cell.
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.parentElement || node.parentElement.closest('details:not([open]) > :not(summary)')) continue;
      const re = /[\x21-\x7e]+/g;
      let m;
      while ((m = re.exec(node.data))) {
        if (m[0].length > 8) continue;
        const n = lines(rangeOf(node, m.index, m.index + m[0].length));
        if (n > 1) problems.push(`${describe(cell)}: the word "${m[0]}" is broken over ${n} lines`);
      }
    }
  }
  // IDs and times are never broken, whatever their length.
  for (const el of document.querySelectorAll('.id, .nw')) {
    if (el.getClientRects().length === 0) continue;
    const range = document.createRange();
    range.selectNodeContents(el);
    const n = lines(range);
    if (n > 1) problems.push(`${describe(el)} is broken over ${n} lines`);
  }
  // The header bar, menu included, is one line.
  for (const bar of [document.querySelector('header'), document.querySelector('header nav')]) {
    if (!bar) continue;
    const tops = [...bar.children]
      .filter((c) => c.getClientRects().length > 0 && !c.classList.contains('skip'))
      .map((c) => { const r = c.getBoundingClientRect(); return (r.top + r.bottom) / 2; });
    if (Math.max(...tops) - Math.min(...tops) > 4) {
      problems.push(`<${bar.tagName.toLowerCase()}> wraps: tops ${tops.map(Math.round).join(', ')}`);
    }
  }
  return problems;
}

const pages = [
  ['dashboard', '/'],
  ['list', '/items'],
  ['item', `/items/${ITEM}`],
  ['audit', `/audit?id=${ITEM}`],
  ['requests', '/requests'],
  ['users', '/users'],
];
const findings = [];
for (const width of [1366, 1024]) {
  await page.setViewportSize({ width, height: 768 });
  for (const [shot, path] of pages) {
    await page.goto(`${BASE}${path}`);
    assert.equal(new URL(page.url()).pathname, path.split('?')[0], `${path} opened`);
    const problems = await page.evaluate(measure);
    for (const p of problems) findings.push(`${width} ${shot}: ${p}`);
    await page.screenshot({ path: `${ARTIFACTS}/w${width}-${shot}.png`, fullPage: true });
  }
}

// Rows of everyday items a first screen of the list shows at 1366×768 (the issue counted ~11).
await page.setViewportSize({ width: 1366, height: 768 });
await page.goto(`${BASE}/items`);
const visible = await page.evaluate(() =>
  [...document.querySelectorAll('table.items tbody tr')].filter(
    (tr) => tr.getBoundingClientRect().bottom <= window.innerHeight,
  ).length,
);
console.log(`list rows on the first screen at 1366x768: ${visible}`);
if (visible < 11) findings.push(`1366 list: only ${visible} rows on the first screen`);

// What the pages must show, besides fitting.
await page.goto(`${BASE}/`);
assert.equal(await page.locator('main svg.chart').count(), 4, 'four charts on the dashboard');
await page.goto(`${BASE}/items/${ITEM}`);
const item = await page.textContent('main');
assert.match(item, /マクロ \(VBA\)/, 'the report reads as a table');
assert.match(item, /word\/vbaProject\.bin/);
assert.match(item, /さんが解除を申請しました/, 'the trail in Japanese');
await page.goto(`${BASE}/items?sort=subject&dir=asc`);
assert.equal(await page.getAttribute('th[aria-sort]', 'aria-sort'), 'ascending');
// The skip link leads to the content.
await page.keyboard.press('Tab');
assert.equal(await page.evaluate(() => document.activeElement.getAttribute('href')), '#main');

// The same pages in English fit too.
await page.goto(`${BASE}/lang/en`);
for (const width of [1366, 1024]) {
  await page.setViewportSize({ width, height: 768 });
  for (const [shot, path] of pages) {
    await page.goto(`${BASE}${path}`);
    const problems = await page.evaluate(measure);
    for (const p of problems) findings.push(`${width} en ${shot}: ${p}`);
    await page.screenshot({ path: `${ARTIFACTS}/w${width}-en-${shot}.png`, fullPage: true });
  }
}

await browser.close();
if (findings.length) {
  console.error(findings.join('\n'));
  process.exit(1);
}
console.log('layout at 1366 and 1024: ok');
