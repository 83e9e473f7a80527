import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildView, createState, namespacesOf } from '../../src/model.js';
import {
  layout, placeLabels, overlappingPairs, overlaps, edgeAnchor, estimateWidth, labelSize,
} from '../../src/layout.js';
import { synthesize } from '../synthetic.mjs';

const big = createState(synthesize({ workloads: 500, namespaces: 50, edges: 5000, seed: 7 }));
const allNs = new Set(namespacesOf(big).map((n) => n.name));

/** Every pair of label boxes (and label vs another node's body) that overlap. */
function collisions(lay) {
  const boxes = [
    ...lay.labels.map((b) => ({ ...b, id: `label:${b.id}`, owner: b.id })),
    ...lay.bodies.map((b) => ({ ...b, id: `body:${b.id}`, owner: b.id })),
  ];
  const owner = new Map(boxes.map((b) => [b.id, b.owner]));
  return overlappingPairs(boxes).filter(([a, b]) => owner.get(a) !== owner.get(b));
}

test('layout is deterministic', () => {
  for (const collapsed of [allNs, new Set(), new Set([...allNs].slice(5))]) {
    const v = buildView(big, { collapsed });
    const a = layout(v);
    const b = layout(buildView(big, { collapsed: new Set(collapsed) }));
    assert.deepEqual([...a.positions], [...b.positions]);
    assert.deepEqual(a.labels, b.labels);
  }
});

test('all-namespaces view (50 collapsed namespaces, externals): no two labels or nodes overlap', () => {
  const v = buildView(big, { collapsed: allNs });
  const lay = layout(v);
  assert.equal(lay.positions.size, 50 + 20);
  assert.deepEqual(collisions(lay), []);
  // A landscape picture.
  assert.ok(lay.width > lay.height * 0.8, `${lay.width}x${lay.height}`);
});

test('everything expanded (500 workloads in 50 namespace blocks): no overlaps, blocks disjoint', () => {
  const v = buildView(big, {});
  const lay = layout(v);
  assert.equal([...lay.positions.keys()].filter((id) => !id.startsWith('cidr:')).length, 500);
  assert.deepEqual(collisions(lay), []);
  // The extent of each namespace (its label and everything of its workloads) is disjoint from the others'.
  const ext = new Map();
  const nsOfId = new Map(v.nodes.map((n) => [n.id, n.kind === 'namespace' ? n.id : n.parent]));
  for (const b of [...lay.labels, ...lay.bodies]) {
    const ns = nsOfId.get(b.id);
    if (!ns) continue;
    const e = ext.get(ns) || { id: ns, x1: Infinity, y1: Infinity, x2: -Infinity, y2: -Infinity };
    ext.set(ns, { id: ns, x1: Math.min(e.x1, b.x1), y1: Math.min(e.y1, b.y1), x2: Math.max(e.x2, b.x2), y2: Math.max(e.y2, b.y2) });
  }
  assert.equal(ext.size, 50);
  assert.deepEqual(overlappingPairs([...ext.values()]), []);
});

test('mixed: a few namespaces expanded among collapsed ones, with long names', () => {
  const st = createState(synthesize({ workloads: 120, namespaces: 12, edges: 600, seed: 3 }));
  st.workloads.set('x/Deployment/a-workload-with-a-really-long-name-indeed', {
    id: 'x/Deployment/a-workload-with-a-really-long-name-indeed', namespace: 'x', kind: 'Deployment',
    short: 'a-workload-with-a-really-long-name-indeed', name: 'Deployment/a-workload-with-a-really-long-name-indeed' });
  const names = namespacesOf(st).map((n) => n.name);
  const v = buildView(st, { collapsed: new Set(names.filter((_, i) => i % 3)) });
  assert.ok(v.nodes.some((n) => n.kind === 'namespace' && !n.collapsed));
  assert.ok(v.nodes.some((n) => n.kind === 'namespace' && n.collapsed));
  assert.deepEqual(collisions(layout(v)), []);
});

test('spacing follows the label widths: neighbours are at least the widest label apart', () => {
  const st = createState(synthesize({ workloads: 30, namespaces: 1, edges: 50, seed: 2 }));
  const v = buildView(st);
  for (const k of [1, 3]) {
    const measure = (t, f) => k * estimateWidth(t, f);
    const lay = layout(v, measure);
    const widest = Math.max(...v.nodes.filter((n) => n.kind === 'workload').map((n) => labelSize(n.label, '10px x', 12, measure).w));
    const rows = new Map();
    for (const n of v.nodes.filter((x) => x.kind === 'workload')) {
      const p = lay.positions.get(n.id);
      if (!rows.has(p.y)) rows.set(p.y, []);
      rows.get(p.y).push(p.x);
    }
    let minGap = Infinity;
    for (const xs of rows.values()) {
      xs.sort((a, b) => a - b);
      for (let i = 1; i < xs.length; i++) minGap = Math.min(minGap, xs[i] - xs[i - 1]);
    }
    assert.ok(rows.size > 1 && minGap < Infinity);
    assert.ok(minGap >= widest, `k=${k}: gap ${minGap} < widest label ${widest}`);
    assert.deepEqual(collisions(lay), []);
  }
});

test('layout of 500 workloads is fast', () => {
  const v = buildView(big, {});
  const t0 = performance.now();
  layout(v);
  const ms = performance.now() - t0;
  assert.ok(ms < 500, `${ms} ms`);
});

test('labelSize: widest line, one line height per line', () => {
  assert.deepEqual(labelSize('ab\nabcd', '10px x', 12, (t) => t.length * 5), { w: 20, h: 24 });
});

test('placeLabels: greedy by priority, avoiding obstacles and placed labels', () => {
  const box = (x, y, w = 10, h = 4) => ({ x1: x, y1: y, x2: x + w, y2: y + h });
  const placed = placeLabels([
    { id: 'low', box: box(5, 0), priority: 1 },
    { id: 'high', box: box(0, 0), priority: 5 },
    { id: 'free', box: box(40, 0), priority: 0 },
    { id: 'blocked', box: box(100, 100), priority: 9 },
    { id: 'empty', box: box(200, 0, 0, 0), priority: 9 },
  ], [{ id: 'node', ...box(95, 98, 10, 10) }]);
  assert.deepEqual([...placed].sort(), ['free', 'high']);
  assert.equal(overlaps(box(0, 0), box(10, 0)), false, 'touching is not overlapping');
});

test('overlappingPairs: each overlapping pair once, sorted', () => {
  const b = (id, x, y) => ({ id, x1: x, y1: y, x2: x + 10, y2: y + 10 });
  assert.deepEqual(overlappingPairs([b('c', 0, 0), b('a', 5, 5), b('b', 100, 0), b('d', 8, 0)]),
    [['a', 'c'], ['a', 'd'], ['c', 'd']]);
  assert.deepEqual(overlappingPairs([b('x', 0, 0), b('y', 500, 500)]), []);
});

test('edgeAnchor: the middle of the visible segment between node outlines', () => {
  const a = { x: 0, y: 0, hw: 50, hh: 10, round: false };
  const b = { x: 200, y: 0, hw: 10, hh: 10, round: true };
  const m = edgeAnchor(a, b);
  assert.equal(m.x, (50 + 190) / 2);
  assert.equal(m.y, 0);
  assert.equal(edgeAnchor(a, { ...b, x: 30 }), null);
});
