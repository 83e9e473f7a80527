import { chromium } from 'playwright-core';
import fs from 'node:fs'; import os from 'node:os'; import path from 'node:path';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h3p-'));
const ctx = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true,
  args: ['--headless','--no-sandbox','--disable-gpu','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'], viewport: { width: 1600, height: 1000 } });
const page = ctx.pages()[0];
for (let i = 0; i < 3; i++) {
  await page.goto(process.argv[2] || 'http://127.0.0.1:8719/ui/', { waitUntil: 'commit' });
  await page.waitForFunction(() => window.bulkhead);
  const r = await page.evaluate(async () => { await window.bulkhead.whenReady(); return { readyAt: window.bulkhead.readyAt, t: window.bulkhead.timings, res: performance.getEntriesByType('resource').map(e => [e.name.slice(-30), Math.round(e.startTime), Math.round(e.duration)]) }; });
  console.log(JSON.stringify(r));
}
await ctx.close(); fs.rmSync(dir, { recursive: true, force: true });
