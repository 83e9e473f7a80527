import { chromium } from 'playwright-core';
import fs from 'node:fs'; import os from 'node:os'; import path from 'node:path';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h3p-'));
const ctx = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true,
  args: ['--headless','--no-sandbox','--disable-gpu','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'], viewport: { width: 1600, height: 1000 } });
const page = ctx.pages()[0];
await page.goto('http://127.0.0.1:8719/ui/'); await page.evaluate(() => window.bulkhead.whenReady());
const cdp = await ctx.newCDPSession(page);
await cdp.send('Profiler.enable'); await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
await cdp.send('Profiler.start');
await page.reload({ waitUntil: 'commit' });
await page.waitForFunction(() => window.bulkhead);
await page.evaluate(() => window.bulkhead.whenReady());
if (process.argv[2] === 'expand') await page.evaluate(() => window.bulkhead.expandAll());
const { profile } = await cdp.send('Profiler.stop');
const self = new Map(); const byId = new Map(profile.nodes.map(n => [n.id, n]));
const dt = profile.timeDeltas; const counts = new Map();
profile.samples.forEach((id, i) => counts.set(id, (counts.get(id) || 0) + (dt[i] || 0)));
for (const [id, t] of counts) { const n = byId.get(id); const k = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber}`; self.set(k, (self.get(k) || 0) + t); }
console.log([...self].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([k, t]) => `${(t / 1000).toFixed(1)}ms ${k}`).join('\n'));
console.log(JSON.stringify(await page.evaluate(() => window.bulkhead.timings)));
await ctx.close(); fs.rmSync(dir, { recursive: true, force: true });
