// A headless Chromium driven over JSON lines, for Bulkhead's Rust tests and
// the UI benchmark (testkit/src/browser.rs spawns it). Test tooling, not part
// of the bundle.
//
// It launches Debian's chromium (/usr/bin/chromium, or $BULKHEAD_CHROMIUM)
// through playwright-core, which never downloads a browser of its own, with a
// fresh profile: the directory given as `--user-data-dir DIR`, else a
// temporary one removed at exit. Then it reads one command per line on stdin
// and answers each with one line on stdout, in order:
//
//   {"cmd":"goto","url":U}            -> {"ok":true,"value":HTTP status or null}
//   {"cmd":"eval","js":EXPR}          -> {"ok":true,"value":JSON of EXPR, promises awaited}
//   {"cmd":"click","selector":S}      -> {"ok":true,"value":null}
//   {"cmd":"mouse_click","x":X,"y":Y} -> {"ok":true,"value":null} (a real click at page pixels)
//   {"cmd":"text","selector":S}       -> {"ok":true,"value":innerText of the first match}
//   {"cmd":"screenshot","path":P}     -> {"ok":true,"value":P} (PNG, the whole page)
//   {"cmd":"console"}                 -> {"ok":true,"value":[console errors and page errors so far]}
//   {"cmd":"close"}                   -> {"ok":true,"value":null}, then it exits
//
// A failure is {"ok":false,"error":MESSAGE}. Any command may carry
// "timeout_ms" (default 30000). The driver exits, closing the browser, at
// "close", at the end of stdin, and on SIGTERM/SIGINT.
//
// playwright-core is loaded with require() so that it is found in
// ui/node_modules (a devDependency of ui/) or in a directory of $NODE_PATH.

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const DEFAULT_TIMEOUT_MS = 30000;

function option(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const given = option('--user-data-dir');
const profile = given ?? mkdtempSync(join(tmpdir(), 'bulkhead-chromium-'));
let context;
let closing;

function answer(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function shutdown(code) {
  closing ??= (async () => {
    try {
      await context?.close();
    } catch {
      // The browser is gone already.
    }
    if (!given) rmSync(profile, { recursive: true, force: true });
  })();
  await closing;
  process.exit(code);
}

process.on('SIGTERM', () => shutdown(143));
process.on('SIGINT', () => shutdown(130));

const errors = [];
let page;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.BULKHEAD_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
    viewport: { width: 1440, height: 900 },
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  page = context.pages()[0] ?? (await context.newPage());
} catch (e) {
  answer({ ok: false, error: `launching chromium: ${e.message}` });
  await shutdown(1);
}
page.on('console', (m) => {
  if (m.type() === 'error') errors.push(m.text());
});
page.on('pageerror', (e) => errors.push(String(e)));
// Ready: the first line says the browser runs.
answer({ ok: true, value: { ready: true, version: context.browser()?.version() ?? null } });

async function run(c) {
  const timeout = c.timeout_ms ?? DEFAULT_TIMEOUT_MS;
  switch (c.cmd) {
    case 'goto': {
      const r = await page.goto(c.url, { waitUntil: 'load', timeout });
      return r ? r.status() : null;
    }
    case 'eval': {
      const v = await page.evaluate(c.js);
      return v === undefined ? null : v;
    }
    case 'click':
      await page.locator(c.selector).first().click({ timeout });
      return null;
    case 'mouse_click':
      await page.mouse.click(Number(c.x), Number(c.y));
      return null;
    case 'text':
      return await page.locator(c.selector).first().innerText({ timeout });
    case 'screenshot':
      await page.screenshot({ path: c.path, fullPage: true, timeout });
      return c.path;
    case 'console':
      return [...errors];
    case 'close':
      return null;
    default:
      throw new Error(`unknown command ${JSON.stringify(c.cmd)}`);
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (line.trim() === '') continue;
  let c;
  try {
    c = JSON.parse(line);
  } catch (e) {
    answer({ ok: false, error: `not a JSON command: ${e.message}` });
    continue;
  }
  try {
    const value = await run(c);
    answer({ ok: true, value });
  } catch (e) {
    answer({ ok: false, error: String(e?.message ?? e) });
  }
  if (c.cmd === 'close') break;
}
await shutdown(0);
