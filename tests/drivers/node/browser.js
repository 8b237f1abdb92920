// tests/edge.rs: a real browser (Debian's Chromium, driven by playwright-core) loads a page
// through the edge and waits, in real time, for the page's script to finish; prints the
// text of its #result element. Usage: node browser.js URL CHROMIUM_PATH
'use strict';
const { chromium } = require('playwright-core');

(async () => {
  const [url, executablePath] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(url, { timeout: 30000 });
    await page.waitForFunction(() => document.title === 'done', null, { timeout: 30000 });
    console.log('RESULT ' + (await page.textContent('#result')));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error('browser: ' + e);
  process.exit(1);
});
