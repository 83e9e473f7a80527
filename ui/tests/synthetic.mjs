#!/usr/bin/env node
// A deterministic synthetic `bulkhead.map/v1` document (the JSON contract of
// `GET /v1/map`, see /v1/map in the agent docs), for the UI benchmark and
// development: `workloads` workloads spread evenly over `namespaces`
// namespaces, `edges` distinct edges (src, dst, protocol, port), some external
// address groups, every verdict class and some edges outside the baseline.
// Seeded: the same options give the same document, byte for byte.
//
// CLI: node tests/synthetic.mjs [--workloads 500] [--namespaces 50]
//        [--edges 5000] [--externals 20] [--seed 1] [--now MS]
// prints the document as JSON on stdout.

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NS_WORDS = ['payments', 'checkout', 'catalog', 'search', 'identity', 'billing', 'shipping',
  'orders', 'inventory', 'reviews', 'ads', 'mail', 'notify', 'reports', 'ledger', 'fraud',
  'pricing', 'media', 'profile', 'support', 'monitoring', 'logging', 'ingress', 'gateway', 'auth'];
const WL_WORDS = ['api', 'web', 'worker', 'db', 'cache', 'queue', 'scheduler', 'frontend',
  'backend', 'indexer', 'exporter', 'proxy', 'sync', 'cron', 'gateway', 'admin', 'collector',
  'writer', 'reader', 'resolver'];
const KINDS = ['Deployment', 'Deployment', 'Deployment', 'StatefulSet', 'DaemonSet'];
const PORTS = [['TCP', 80], ['TCP', 443], ['TCP', 8080], ['TCP', 5432], ['TCP', 6379],
  ['TCP', 9090], ['TCP', 9092], ['UDP', 53], ['TCP', 3306], ['TCP', 8443], ['UDP', 514],
  ['SCTP', 3868]];

/** The verdict classes, least severe first (the contract's order). */
const CLASSES = ['allowed', 'would_deny', 'revoked', 'denied', 'quarantined'];

/**
 * Generates the document.
 * @param {{workloads?: number, namespaces?: number, edges?: number, externals?: number,
 *          seed?: number, now?: number}} [opts]
 * @returns {object} a `bulkhead.map/v1` document
 */
export function synthesize(opts = {}) {
  const nWl = opts.workloads ?? 500;
  const nNs = opts.namespaces ?? 50;
  const nEdges = opts.edges ?? 5000;
  const nExt = opts.externals ?? 20;
  const now = opts.now ?? 1765000000000;
  const rand = rng(opts.seed ?? 1);
  const pick = (arr) => arr[Math.floor(rand() * arr.length)];
  const since = now - 3600_000;

  const namespaces = [];
  for (let i = 0; i < nNs; i++) {
    const word = NS_WORDS[i % NS_WORDS.length];
    namespaces.push({ name: `${word}-${String(i).padStart(2, '0')}`, workloads: 0 });
  }
  const workloads = [];
  const byNs = namespaces.map(() => []);
  for (let i = 0; i < nWl; i++) {
    const nsIdx = i % nNs;
    const ns = namespaces[nsIdx];
    const k = byNs[nsIdx].length;
    const short = k < WL_WORDS.length ? WL_WORDS[k] : `${WL_WORDS[k % WL_WORDS.length]}-${Math.floor(k / WL_WORDS.length)}`;
    const kind = pick(KINDS);
    const r = rand();
    const wl = {
      id: `${ns.name}/${kind}/${short}`,
      namespace: ns.name,
      name: `${kind}/${short}`,
      kind,
      short,
      labels: { app: short, team: ns.name.split('-')[0] },
      local: rand() < 0.5,
      mode: r < 0.7 ? 'enforce' : r < 0.9 ? 'audit' : r < 0.98 ? 'learn' : null,
      quarantined: rand() < 0.01,
      // Each workload serves one to three ports.
      ports: Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(PORTS)),
    };
    byNs[nsIdx].push(wl);
    workloads.push(wl);
    ns.workloads++;
  }
  const externals = [];
  for (let i = 0; i < nExt; i++) {
    const cidr = i % 5 === 4 ? `2001:db8:${i.toString(16)}::/64` : `203.0.${i}.0/24`;
    externals.push({ id: `cidr:${cidr}`, cidr, addresses: 1 + Math.floor(rand() * 8) });
  }
  // A few hub namespaces most cross-namespace traffic goes to (DNS, databases, monitoring).
  const hubs = byNs.slice(0, Math.max(1, Math.floor(nNs / 10))).filter((l) => l.length);

  const edges = new Map();
  let tries = 0;
  while (edges.size < nEdges && tries < nEdges * 50 && nWl > 1) {
    tries++;
    const src = workloads[Math.floor(rand() * nWl)];
    const srcNs = byNs[namespaces.findIndex((n) => n.name === src.namespace)];
    const r = rand();
    let dst;
    let proto;
    let port;
    if (r < 0.6 && srcNs.length > 1) {
      dst = pick(srcNs);
    } else if (r < 0.85 && hubs.length) {
      dst = pick(pick(hubs));
    } else if (r < 0.95 || !externals.length) {
      dst = workloads[Math.floor(rand() * nWl)];
    } else {
      const ext = pick(externals);
      [proto, port] = pick(PORTS);
      dst = { id: ext.id, namespace: null, ports: [[proto, port]] };
    }
    if (dst.id === src.id) continue;
    [proto, port] = pick(dst.ports);
    const inbound = dst.namespace !== null && rand() < 0.04 && externals.length;
    const from = inbound ? pick(externals).id : src.id;
    const id = `${from}>${dst.id}:${proto}/${port}`;
    if (edges.has(id)) continue;
    const v = rand();
    const verdict = v < 0.8 ? 'allowed' : v < 0.88 ? 'denied' : v < 0.94 ? 'would_deny'
      : v < 0.97 ? 'revoked' : 'quarantined';
    const classes = {};
    const policies = {};
    const ns = dst.namespace ?? src.namespace;
    const dstShort = dst.short ?? 'external';
    const addClass = (cls) => {
      const flows = 1 + Math.floor(rand() * 40);
      const packets = flows * (2 + Math.floor(rand() * 20));
      classes[cls] = { flows, packets, bytes: packets * (60 + Math.floor(rand() * 1400)) };
      policies[cls] = cls === 'allowed' ? [`${ns}/allow-${dstShort}`]
        : cls === 'denied' ? [`${ns}/default-deny`]
          : cls === 'would_deny' ? [`${ns}/audit-${dstShort}-restricted-ingress`]
            : cls === 'revoked' ? [`${ns}/allow-${dstShort}`]
              : [`quarantine/${dstShort}`];
    };
    addClass(verdict);
    if (verdict !== 'allowed' && rand() < 0.5) addClass('allowed');
    const first = since + Math.floor(rand() * 3000_000);
    const last = first + Math.floor(rand() * (now - first));
    edges.set(id, {
      id, src: from, dst: dst.id, protocol: proto, port, verdict,
      classes: Object.fromEntries(CLASSES.filter((c) => classes[c]).map((c) => [c, classes[c]])),
      policies: Object.fromEntries(CLASSES.filter((c) => policies[c]).map((c) => [c, policies[c]])),
      policies_truncated: false,
      outside_baseline: verdict === 'allowed' && rand() < 0.05,
      first_seen: first, last_seen: last,
    });
  }
  return {
    schema: 'bulkhead.map/v1',
    node: 'synthetic',
    generated_at: now,
    window: { since, until: now, bucket_ms: 60000, partial: false },
    revision: 1,
    namespaces,
    workloads: workloads.map(({ ports, ...w }) => w),
    externals,
    edges: [...edges.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
    evicted_buckets: 0,
    lost_records: 0,
  };
}

/** Parses `--name value` CLI options into numbers. */
function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v)) throw new Error(`option ${argv[i]} needs a number`);
    out[k] = v;
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(JSON.stringify(synthesize(parseArgs(process.argv.slice(2)))) + '\n');
}

/**
 * A small map equivalent to the demo lab: 5 workloads in 3 namespaces
 * (kube-system: coredns; shop: api, frontend, db; sandbox: a bare pod), three
 * allowed edges and one denied by shop/db-from-api. The map where a few labels
 * have lots of room, unlike the synthetic ones.
 * @param {{now?: number}} opts
 * @returns {object} a `bulkhead.map/v1` document
 */
export function smallLab(opts = {}) {
  const now = opts.now ?? 1765000000000;
  const since = now - 6 * 3600 * 1000;
  const wl = (namespace, kind, short) => ({
    id: `${namespace}/${kind}/${short}`, namespace, name: `${kind}/${short}`, kind, short,
    labels: kind === 'Pod' ? { run: short } : { app: short }, local: true, mode: 'enforce', quarantined: false,
  });
  const workloads = [
    wl('kube-system', 'Deployment', 'coredns'),
    wl('shop', 'Deployment', 'api'),
    wl('shop', 'Deployment', 'frontend'),
    wl('shop', 'StatefulSet', 'db'),
    wl('sandbox', 'Pod', 'stray'),
  ];
  const edge = (src, dst, port, verdict, policies, flows) => ({
    id: `${src}>${dst}:TCP/${port}`, src, dst, protocol: 'TCP', port, verdict,
    classes: { [verdict]: { flows, packets: flows * 6, bytes: flows * 500 } },
    policies: policies.length ? { [verdict]: policies } : {}, policies_truncated: false,
    outside_baseline: false, first_seen: now - 60000, last_seen: now - 1000,
  });
  const edges = [
    edge('shop/Deployment/frontend', 'shop/Deployment/api', 8080, 'allowed', [], 12),
    edge('shop/Deployment/frontend', 'kube-system/Deployment/coredns', 53, 'allowed', [], 6),
    edge('shop/Deployment/api', 'shop/StatefulSet/db', 5432, 'allowed', ['shop/db-from-api'], 9),
    edge('sandbox/Pod/stray', 'shop/StatefulSet/db', 5432, 'denied', ['shop/db-from-api'], 3),
  ];
  const count = (ns) => workloads.filter((w) => w.namespace === ns).length;
  return {
    schema: 'bulkhead.map/v1', node: 'vm', generated_at: now,
    window: { since, until: now, bucket_ms: 60000, partial: false }, revision: 1,
    namespaces: ['kube-system', 'sandbox', 'shop'].map((name) => ({ name, workloads: count(name) })),
    workloads, externals: [], edges, evicted_buckets: 0, lost_records: 0,
  };
}
