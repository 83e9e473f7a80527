#!/usr/bin/env node
// A development mock of the agent's UI listener: serves ui/dist at /ui/ and a
// synthetic map (tests/synthetic.mjs) at /v1/map, with a follow stream of
// increments at /v1/map/follow and made-up edge and workload details. For UI
// work and quick checks only; the agent serves the real thing.
//
// node dev/mock-server.mjs [--port 8719] [--host 127.0.0.1] [--workloads 500]
//   [--namespaces 50] [--edges 5000] [--externals 20] [--seed 1]
//   [--rate 20]  follow lines per second (0: heartbeats only)
//   [--map FILE] serve this map document instead of a synthetic one
//   [--small 1]  serve the small map of the demo lab (5 workloads, 3 namespaces) instead
// Prints `listening on http://HOST:PORT/ui/` once ready.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { synthesize, smallLab, rng } from '../tests/synthetic.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, '..', 'dist');

function parseArgs(argv) {
  const o = { port: 8719, host: '127.0.0.1', rate: 20 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    const v = argv[i + 1];
    o[k] = k === 'map' || k === 'host' ? v : Number(v);
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const map = opts.map
  ? JSON.parse(fs.readFileSync(opts.map, 'utf8'))
  : opts.small ? smallLab({ now: Date.now() })
  : synthesize({ workloads: opts.workloads, namespaces: opts.namespaces, edges: opts.edges,
    externals: opts.externals, seed: opts.seed, now: Date.now() });
let mapText = JSON.stringify(map);
let dirty = false;
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json' };
const SECURITY = {
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
};

function json(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json', ...SECURITY });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

function serveStatic(res, rel) {
  const file = path.resolve(dist, rel || 'index.html');
  if (!file.startsWith(dist + path.sep) && file !== dist) return json(res, 404, { error: 'not found', status: 404 });
  fs.readFile(file, (err, data) => {
    if (err) return json(res, 404, { error: 'not found', status: 404 });
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
      'Cache-Control': rel ? 'public, max-age=31536000, immutable' : 'no-cache', ...SECURITY });
    res.end(data);
  });
}

function fakeFlows(edge, n) {
  const out = [];
  const [sns, , sname] = edge.src.split('/');
  const [dns, , dname] = edge.dst.split('/');
  for (let i = 0; i < n; i++) {
    const end = new Date(edge.last_seen - i * 7000);
    const verdict = edge.verdict === 'would_deny' ? 'allowed' : edge.verdict;
    out.push({
      schema: 'bulkhead.flow/v1', type: 'flow', node: map.node,
      start: new Date(end - 1200).toISOString(), end: end.toISOString(), end_reason: 'closed', ifindex: 7,
      direction: 'egress',
      src: edge.src.startsWith('cidr:') ? { ip: '203.0.113.9', port: 40000 + i, external: true }
        : { ip: `10.0.0.${i + 2}`, port: 40000 + i, namespace: sns, pod: `${sname}-${i}` },
      dst: edge.dst.startsWith('cidr:') ? { ip: '203.0.113.10', port: edge.port, external: true }
        : { ip: '10.0.1.5', port: edge.port, namespace: dns, pod: `${dname}-0` },
      protocol: edge.protocol, packets: { orig: 3, reply: 2 }, bytes: { orig: 300, reply: 200 },
      dropped: { packets: 0, bytes: 0 }, verdict,
      drop_reason: verdict === 'denied' ? 'policy_denied' : null,
      policies: (edge.policies[edge.verdict] || []).map((name) => ({ name, rule: 0 })),
      revision: 3,
      ...(edge.verdict === 'would_deny' ? { audit: { verdict: 'would_deny', policies: edge.policies.would_deny.map((name) => ({ name })) } } : {}),
    });
  }
  return out;
}

function edgeAnswer(q) {
  const id = `${q.get('src')}>${q.get('dst')}:${q.get('protocol')}/${q.get('port')}`;
  const edge = map.edges.find((e) => e.id === id);
  if (!edge) return [404, { error: `no edge ${id} in the window`, status: 404 }];
  const denied = edge.verdict === 'denied' || edge.verdict === 'quarantined';
  const pol = edge.policies[edge.verdict] || [];
  const side = (dir) => ({
    verdict: denied && dir === 'ingress' ? 'deny' : 'allow',
    policies: pol,
    rules: pol.map((p, i) => ({ policy: p, rule: i, text: `${dir} rule ${i} of ${p}` })),
  });
  return [200, {
    schema: 'bulkhead.map.edge/v1', edge,
    flows: fakeFlows(edge, Math.min(12, Object.values(edge.classes).reduce((a, c) => a + c.flows, 0))),
    explain: { egress: side('egress'), ingress: side('ingress'), verdict: denied ? 'denied' : 'allowed',
      text: `${edge.src} -> ${edge.dst} ${edge.protocol}/${edge.port}: ${denied ? 'DENIED' : 'ALLOWED'}\n  egress: allow\n  ingress: ${denied ? 'deny' : 'allow'}`,
      example: { from: `${edge.src.split('/')[0]}/x-1`, to: `${edge.dst.split('/')[0]}/y-1` } },
  }];
}

function workloadAnswer(q) {
  const id = q.get('id');
  const w = map.workloads.find((x) => x.id === id);
  if (!w) return [404, { error: `no workload ${id}`, status: 404 }];
  const name = `${w.namespace}/bulkhead-${w.short}`;
  const yaml = `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: bulkhead-${w.short}\n  namespace: ${w.namespace}\nspec:\n  podSelector:\n    matchLabels:\n      app: ${w.short}\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels:\n          app: web\n`;
  return [200, {
    schema: 'bulkhead.map.workload/v1', workload: w,
    pods: [{ name: `${w.short}-1`, ips: ['10.0.0.5'], local: true }],
    policies: [{ name: `${w.namespace}/allow-${w.short}`, kind: 'NetworkPolicy', tier: null, mode: w.mode, directions: ['ingress'] }],
    quarantine: w.quarantined ? { since: map.generated_at, reason: 'mock' } : null,
    proposal: { policy_name: name, yaml, diff: ` spec:\n   ingress:\n-  - {}\n+  - from:\n+    - podSelector: {matchLabels: {app: web}}\n`, in_force: true, changes: 3 },
    proposal_unavailable: null,
  }];
}

function followStream(req, res) {
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-cache', ...SECURITY });
  const rand = rng(Date.now() & 0xffff);
  let n = 0;
  const tick = () => {
    const lines = [''];
    const count = Math.round((opts.rate || 0) / 4);
    for (let i = 0; i < count && map.edges.length; i++) {
      n++;
      if (n % 50 === 0) {
        // A new workload talking to an existing one.
        const ns = map.namespaces[Math.floor(rand() * map.namespaces.length)].name;
        const w = { id: `${ns}/Deployment/new-${n}`, namespace: ns, name: `Deployment/new-${n}`, kind: 'Deployment',
          short: `new-${n}`, labels: { app: `new-${n}` }, local: true, mode: 'audit', quarantined: false };
        map.workloads.push(w);
        const dst = map.workloads[Math.floor(rand() * map.workloads.length)];
        const e = { id: `${w.id}>${dst.id}:TCP/8080`, src: w.id, dst: dst.id, protocol: 'TCP', port: 8080,
          verdict: 'would_deny', classes: { would_deny: { flows: 1, packets: 4, bytes: 400 } },
          policies: { would_deny: [`${ns}/default-deny`] }, policies_truncated: false, outside_baseline: false,
          first_seen: Date.now(), last_seen: Date.now() };
        map.edges.push(e);
        lines.push(JSON.stringify({ type: 'workload', ...w }), JSON.stringify({ type: 'edge', ...e }));
        continue;
      }
      const e = map.edges[Math.floor(rand() * map.edges.length)];
      const cls = rand() < 0.9 ? e.verdict : 'denied';
      const inc = { flows: 1, packets: 3, bytes: 250 };
      const c = (e.classes[cls] ||= { flows: 0, packets: 0, bytes: 0 });
      c.flows += 1; c.packets += 3; c.bytes += 250;
      if (cls === 'denied' && !e.policies.denied) e.policies.denied = [`${e.dst.split('/')[0]}/default-deny`];
      e.last_seen = Date.now();
      lines.push(JSON.stringify({ type: 'edge', id: e.id, src: e.src, dst: e.dst, protocol: e.protocol, port: e.port,
        verdict: cls, classes: { [cls]: inc }, policies: { [cls]: e.policies[cls] || [] }, policies_truncated: false,
        outside_baseline: e.outside_baseline, first_seen: e.last_seen, last_seen: e.last_seen }));
    }
    if (lines.length > 1) dirty = true;
    res.write(lines.join('\n') + '\n');
  };
  const timer = setInterval(tick, 250);
  req.on('close', () => clearInterval(timer));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  if (p === '/') {
    res.writeHead(302, { Location: '/ui/' });
    return res.end();
  }
  if (p === '/ui') {
    res.writeHead(302, { Location: '/ui/' });
    return res.end();
  }
  if (p === '/ui/') return serveStatic(res, '');
  if (p.startsWith('/ui/assets/')) return serveStatic(res, p.slice('/ui/'.length));
  if (p === '/v1/map') {
    if (dirty) {
      mapText = JSON.stringify(map);
      dirty = false;
    }
    return json(res, 200, mapText);
  }
  if (p === '/v1/map/follow') return followStream(req, res);
  if (p === '/v1/map/edge') return json(res, ...edgeAnswer(url.searchParams));
  if (p === '/v1/map/workload') return json(res, ...workloadAnswer(url.searchParams));
  if (p === '/healthz' || p === '/readyz') return json(res, 200, { status: 'ok' });
  return json(res, 404, { error: `no route ${p}`, status: 404 });
});

server.listen(opts.port, opts.host, () => {
  const a = server.address();
  console.log(`listening on http://${a.address}:${a.port}/ui/`);
});
