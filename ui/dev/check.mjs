#!/usr/bin/env node
// A quick browser check of the UI against a running server (dev/mock-server.mjs
// or an agent's UI listener), in Debian's chromium through playwright-core
// (never downloads a browser): load → whenReady() time, label overlaps in the
// default view, a click on an edge and a workload, the exports, a screenshot.
//
// node dev/check.mjs [--url http://127.0.0.1:8719/ui/] [--runs 3] [--screenshot FILE] [--viewport 1600x1000]
//   [--details FILE] [--expanded FILE] [--workload FILE] [--wait MS]
//   [--small FILE|1]  the small map (mock-server --small 1): after --wait ms of live
//                     updates, labels whole and not overlapping again (a screenshot to FILE)
// `loads`: navigation start → whenReady() (window.bulkhead.readyAt), ms, one per
// run (the first in a fresh browser). Screenshots: the default view, after
// clicking a denied edge, everything expanded, a workload's details.
// Prints one JSON object with the measurements; exits 1 when a shown label is cut off
// or overlaps another label (`ok: false`) or the page logged errors.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, v, i, a) => (i % 2 ? acc : [...acc, [a[i].replace(/^--/, ''), a[i + 1]]]), []));
const url = args.url || 'http://127.0.0.1:8719/ui/';
const runs = Number(args.runs || 3);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bulkhead-ui-check-'));

const context = await chromium.launchPersistentContext(dir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  viewport: { width: Number((args.viewport || '1600x1000').split('x')[0]), height: Number((args.viewport || '1600x1000').split('x')[1]) },
});
const out = { url, loads: [] };
const errors = [];
try {
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  const requests = new Set();
  page.on('request', (r) => requests.add(new URL(r.url()).origin));
  for (let i = 0; i < runs; i++) {
    await page.goto(url, { waitUntil: 'commit' });
    await page.waitForFunction(() => window.bulkhead && window.bulkhead.whenReady, null, { timeout: 20000 });
    const r = await page.evaluate(async () => {
      await window.bulkhead.whenReady();
      const nav = performance.getEntriesByType('navigation')[0];
      return { readyAt: window.bulkhead.readyAt, navStart: nav ? nav.startTime : 0, domContentLoaded: nav?.domContentLoadedEventEnd };
    });
    out.loads.push(Math.round(r.readyAt - r.navStart));
  }
  out.origins = [...requests];
  out.view = await page.evaluate(() => {
    const v = window.bulkhead.view();
    return { nodes: v.nodes.length, edges: v.edges.length, labelsShown: v.edges.filter((e) => e.labelShown).length,
      kinds: v.nodes.reduce((a, n) => ((a[n.kind] = (a[n.kind] || 0) + 1), a), {}),
      colors: [...new Set(v.edges.map((e) => `${e.verdict}${e.outside_baseline ? '+outside' : ''}=${e.color}`))].sort() };
  });
  out.overlaps = await page.evaluate(() => window.bulkhead.labelOverlaps().length);
  // Every shown edge label whole: the box Cytoscape sizes the label's texture from is
  // at least as wide as its text (a box measured from older, shorter text cuts it off).
  // Checked again after live updates changed some labels (--wait ms), the small map
  // (mock-server --small 1) the case where that showed.
  const clipped = () => page.evaluate(async () => {
    // After a frame: the label boxes the renderer drew from (read before anything, even a
    // style lookup, could refresh them).
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    const edges = window.bulkhead.cy.edges().filter((e) => e.data('shown'));
    const drawn = edges.map((e) => e._private.labelBounds.main
      || e.boundingBox({ includeLabels: true, includeNodes: false, includeEdges: false }) && e._private.labelBounds.main);
    const ctx = document.createElement('canvas').getContext('2d');
    const bad = [];
    edges.forEach((e, i) => {
      const text = e.data('shown');
      const s = (p) => e.pstyle(p).strValue;
      ctx.font = `${s('font-style')} ${s('font-weight')} ${e.pstyle('font-size').pfValue}px ${s('font-family')}`;
      const want = ctx.measureText(text).width;
      const lb = drawn[i];
      if (!lb || lb.w + 0.5 < want) bad.push(`${e.id()}: ${text} (${Math.round(want)} px in a ${Math.round(lb?.w ?? 0)} px box)`);
    });
    return bad;
  });
  out.clipped = await clipped();
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  if (args.small) {
    await page.waitForTimeout(Number(args.wait || 1500));
    out.smallAfterUpdates = { updates: await page.evaluate(() => window.bulkhead.updates), clipped: await clipped(),
      overlaps: await page.evaluate(() => window.bulkhead.labelOverlaps().length) };
    if (args.small !== '1') await page.screenshot({ path: args.small });
  }
  // Click the first denied edge (through the hook; a real click on its midpoint too).
  out.edgeClick = await page.evaluate(async () => {
    const e = window.bulkhead.view().edges.find((x) => x.verdict === 'denied') || window.bulkhead.view().edges[0];
    if (!e) return null;
    const t0 = performance.now();
    await window.bulkhead.select(e.id);
    const d = document.getElementById('details');
    return { id: e.id, ms: Math.round(performance.now() - t0), kind: d.dataset.kind,
      flows: d.querySelectorAll('[data-testid=flows] tr').length,
      egress: !!d.querySelector('[data-testid=explain-egress]'), policies: d.querySelector('[data-testid=policies]')?.textContent.slice(0, 120) };
  });
  if (args.details) await page.screenshot({ path: args.details });
  // A real mouse click on the middle of a (short-labelled) edge opens its details.
  await page.evaluate(() => document.querySelector('#details .close')?.click());
  const target = await page.evaluate(() => {
    const cy = window.bulkhead.cy;
    const e = cy.edges().filter((x) => x.data('shown')).sort((a, b) => b.data('shown').length - a.data('shown').length)[0];
    if (!e) return null;
    const p = e.renderedMidpoint();
    const r = cy.container().getBoundingClientRect();
    return { id: e.id(), x: r.left + p.x, y: r.top + p.y };
  });
  if (target) {
    await page.mouse.click(target.x, target.y);
    await page.waitForFunction(() => !document.getElementById('details').hidden
      && document.getElementById('details').dataset.kind === 'edge'
      && document.querySelector('#details [data-testid=explain-egress]'), null, { timeout: 10000 });
    out.mouseClick = await page.evaluate(() => document.getElementById('details').dataset.id);
    out.mouseClickWanted = target.id;
  }
  out.expand = await page.evaluate(async () => {
    const t0 = performance.now();
    await window.bulkhead.expandAll();
    const v = window.bulkhead.view();
    const ms = Math.round(performance.now() - t0);
    const t1 = performance.now();
    const overlaps = window.bulkhead.labelOverlaps().length;
    return { ms, nodes: v.nodes.length, edges: v.edges.length, overlaps, overlapCheckMs: Math.round(performance.now() - t1) };
  });
  if (args.expanded) await page.screenshot({ path: args.expanded });
  out.workloadClick = await page.evaluate(async () => {
    const w = window.bulkhead.view().nodes.find((n) => n.kind === 'workload');
    await window.bulkhead.select(w.id);
    const d = document.getElementById('details');
    return { id: w.id, kind: d.dataset.kind, mode: d.querySelector('[data-testid=mode]')?.textContent,
      diffAdds: d.querySelectorAll('[data-testid=diff] .add').length };
  });
  if (args.workload) await page.screenshot({ path: args.workload });
  out.filters = await page.evaluate(async () => {
    const b = window.bulkhead;
    await b.setFilter({ verdicts: ['denied'] });
    const denied = b.view().edges;
    const ok = denied.every((e) => e.verdict === 'denied');
    const overlapsDenied = b.labelOverlaps().length;
    await b.setFilter({ verdicts: null, protocols: ['UDP'] });
    const udp = b.view().edges.every((e) => e.ports.every((p) => p.startsWith('UDP')));
    await b.setFilter({ protocols: null });
    const w = b.view().nodes.find((n) => n.kind === 'workload');
    const before = b.view().edges.length;
    await b.hide(w.id);
    const hidden = b.view();
    const gone = !hidden.edges.some((e) => e.source === w.id || e.target === w.id)
      && hidden.nodes.find((n) => n.id === w.id)?.hidden === true;
    await b.unhide(w.id);
    return { deniedOnly: ok, denied: denied.length, overlapsDenied, udpOnly: udp, hideRemovesEdges: gone,
      restored: b.view().edges.length >= before };
  });
  await page.evaluate(() => window.bulkhead.collapseAll());
  out.exports = await page.evaluate(async () => {
    const png = await window.bulkhead.exportPNG();
    const svg = await window.bulkhead.exportSVG();
    const json = window.bulkhead.exportJSON();
    return { png: png.slice(0, 22), pngBytes: png.length, svg: svg.slice(0, 40), svgBytes: svg.length, jsonEdges: json.edges.length };
  });
  await page.waitForTimeout(Number(args.wait || 1500));
  out.updates = await page.evaluate(() => window.bulkhead.updates);
  out.status = await page.textContent('#status');
  // The label checks: shown labels whole, none overlapping (a node's label included).
  out.ok = out.overlaps === 0 && out.clipped.length === 0
    && (!out.smallAfterUpdates || (out.smallAfterUpdates.overlaps === 0 && out.smallAfterUpdates.clipped.length === 0));
} finally {
  out.errors = errors;
  await context.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(out, null, 2));
if (!out.ok || errors.length) process.exitCode = 1;
