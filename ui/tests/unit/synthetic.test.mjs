import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { synthesize, smallLab } from '../synthetic.mjs';
import { VERDICTS, classesVerdict, buildView, createState } from '../../src/model.js';

test('the default synthetic map: 500 workloads, 50 namespaces, 5,000 distinct edges', () => {
  const d = synthesize();
  assert.equal(d.schema, 'bulkhead.map/v1');
  assert.equal(d.workloads.length, 500);
  assert.equal(d.namespaces.length, 50);
  assert.equal(d.edges.length, 5000);
  assert.equal(new Set(d.workloads.map((w) => w.id)).size, 500);
  assert.equal(new Set(d.edges.map((e) => e.id)).size, 5000);
  const ids = new Set([...d.workloads.map((w) => w.id), ...d.externals.map((x) => x.id)]);
  for (const ns of d.namespaces) assert.equal(ns.workloads, 10);
  const seen = new Set();
  for (const e of d.edges) {
    assert.equal(e.id, `${e.src}>${e.dst}:${e.protocol}/${e.port}`);
    assert.ok(ids.has(e.src) && ids.has(e.dst), e.id);
    assert.equal(e.verdict, classesVerdict(e.classes), e.id);
    assert.ok(!e.outside_baseline || e.verdict === 'allowed');
    assert.ok(e.first_seen <= e.last_seen && e.last_seen <= d.generated_at);
    seen.add(e.verdict);
  }
  assert.deepEqual([...seen].sort(), [...VERDICTS].sort(), 'every verdict class occurs');
  assert.ok(d.edges.some((e) => e.outside_baseline));
});

test('deterministic: same options, same document; another seed, another one', () => {
  assert.equal(JSON.stringify(synthesize({ seed: 4 })), JSON.stringify(synthesize({ seed: 4 })));
  assert.notEqual(JSON.stringify(synthesize({ seed: 4 })), JSON.stringify(synthesize({ seed: 5 })));
  const small = synthesize({ workloads: 20, namespaces: 4, edges: 40, externals: 2, seed: 1 });
  assert.equal(small.workloads.length, 20);
  assert.equal(small.edges.length, 40);
});

test('the CLI prints the same document', () => {
  const script = fileURLToPath(new URL('../synthetic.mjs', import.meta.url));
  const out = execFileSync(process.execPath, [script, '--workloads', '30', '--namespaces', '3', '--edges', '60', '--seed', '9'],
    { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out), synthesize({ workloads: 30, namespaces: 3, edges: 60, seed: 9 }));
});

test('the small lab map: 5 workloads in 3 namespaces, 4 edges, one denied by shop/db-from-api', () => {
  const d = smallLab({ now: 1765000000000 });
  assert.equal(d.schema, 'bulkhead.map/v1');
  assert.deepEqual(d.namespaces.map((n) => [n.name, n.workloads]), [['kube-system', 1], ['sandbox', 1], ['shop', 3]]);
  assert.deepEqual(d.workloads.map((w) => w.id).sort(), ['kube-system/Deployment/coredns', 'sandbox/Pod/stray',
    'shop/Deployment/api', 'shop/Deployment/frontend', 'shop/StatefulSet/db']);
  const ids = new Set(d.workloads.map((w) => w.id));
  for (const e of d.edges) {
    assert.equal(e.id, `${e.src}>${e.dst}:${e.protocol}/${e.port}`);
    assert.ok(ids.has(e.src) && ids.has(e.dst), e.id);
    assert.equal(e.verdict, classesVerdict(e.classes), e.id);
  }
  const denied = d.edges.filter((e) => e.verdict === 'denied');
  assert.deepEqual(denied.map((e) => [e.id, e.policies.denied]),
    [['sandbox/Pod/stray>shop/StatefulSet/db:TCP/5432', ['shop/db-from-api']]]);
  // Small: every namespace expanded by default, every edge drawn between workloads.
  const v = buildView(createState(d), { collapsed: new Set() });
  assert.equal(v.nodes.filter((n) => n.kind === 'workload').length, 5);
  assert.equal(v.edges.length, 4);
});
