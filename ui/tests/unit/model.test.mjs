import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyLine, buildView, createState, edgeLabel, shortPolicy, worstVerdict, classesVerdict,
} from '../../src/model.js';

const T0 = 1765000000000;

function edge(src, dst, protocol, port, verdict, extra = {}) {
  const classes = extra.classes || { [verdict]: { flows: 2, packets: 20, bytes: 2000 } };
  return {
    id: `${src}>${dst}:${protocol}/${port}`, src, dst, protocol, port, verdict, classes,
    policies: extra.policies || {}, policies_truncated: false, outside_baseline: !!extra.outside,
    first_seen: extra.first ?? T0 - 60_000, last_seen: extra.last ?? T0,
  };
}

const wl = (ns, short, kind = 'Deployment') => ({
  id: `${ns}/${kind}/${short}`, namespace: ns, name: `${kind}/${short}`, kind, short, labels: { app: short },
  local: true, mode: 'enforce', quarantined: false,
});

function doc() {
  return {
    schema: 'bulkhead.map/v1', node: 'node-a', generated_at: T0,
    window: { since: T0 - 3600_000, until: T0, bucket_ms: 60000, partial: false }, revision: 1,
    namespaces: [{ name: 'shop', workloads: 3 }, { name: 'db', workloads: 1 }],
    workloads: [wl('shop', 'web'), wl('shop', 'api'), wl('shop', 'cart', 'StatefulSet'), wl('db', 'pg')],
    externals: [{ id: 'cidr:10.9.0.0/24', cidr: '10.9.0.0/24', addresses: 2 }],
    edges: [
      edge('shop/Deployment/web', 'shop/Deployment/api', 'TCP', 8080, 'allowed', { policies: { allowed: ['shop/allow-web'] } }),
      edge('shop/Deployment/web', 'shop/Deployment/api', 'TCP', 9090, 'denied', {
        classes: { allowed: { flows: 1, packets: 2, bytes: 3 }, denied: { flows: 4, packets: 8, bytes: 800 } },
        policies: { denied: ['shop/default-deny'], allowed: ['shop/allow-web'] } }),
      edge('shop/Deployment/api', 'db/Deployment/pg', 'TCP', 5432, 'allowed', { outside: true, policies: { allowed: ['db/allow-api'] } }),
      edge('shop/StatefulSet/cart', 'db/Deployment/pg', 'TCP', 5432, 'would_deny', { policies: { would_deny: ['db/audit-pg'] } }),
      edge('shop/Deployment/api', 'cidr:10.9.0.0/24', 'UDP', 53, 'allowed', { last: T0 - 50 * 60_000, first: T0 - 55 * 60_000 }),
    ],
    evicted_buckets: 0, lost_records: 3,
  };
}

test('verdict order: quarantined > denied > revoked > would_deny > allowed', () => {
  assert.equal(worstVerdict(['allowed', 'would_deny']), 'would_deny');
  assert.equal(worstVerdict(['revoked', 'would_deny', 'allowed']), 'revoked');
  assert.equal(worstVerdict(['denied', 'revoked']), 'denied');
  assert.equal(worstVerdict(['denied', 'quarantined']), 'quarantined');
  assert.equal(worstVerdict([]), 'allowed');
  assert.equal(classesVerdict({ allowed: { flows: 1 }, denied: { flows: 0 } }), 'allowed');
});

test('a document of another schema is refused', () => {
  assert.throws(() => createState({ schema: 'bulkhead.map/v2' }), /schema/);
});

test('expanded view: workloads inside namespaces, per-port edges merged into one drawn edge', () => {
  const st = createState(doc());
  assert.equal(st.lost, 3);
  const v = buildView(st);
  const ids = v.nodes.map((n) => n.id);
  assert.deepEqual(ids, ['ns:db', 'db/Deployment/pg', 'ns:shop', 'shop/Deployment/api', 'shop/Deployment/web',
    'shop/StatefulSet/cart', 'cidr:10.9.0.0/24']);
  const api = v.nodes.find((n) => n.id === 'shop/Deployment/api');
  assert.equal(api.parent, 'ns:shop');
  assert.equal(api.kind, 'workload');
  assert.equal(v.nodes.find((n) => n.id === 'shop/StatefulSet/cart').label, 'cart\n(StatefulSet)');
  assert.equal(v.edges.length, 4);
  const webApi = v.edges.find((e) => e.id === 'shop/Deployment/web>shop/Deployment/api');
  assert.deepEqual(webApi.ports, ['TCP/8080', 'TCP/9090']);
  assert.equal(webApi.verdict, 'denied');
  assert.equal(webApi.colorKey, 'denied');
  assert.deepEqual(webApi.members, ['shop/Deployment/web>shop/Deployment/api:TCP/8080', 'shop/Deployment/web>shop/Deployment/api:TCP/9090']);
  assert.deepEqual(webApi.policies, ['shop/allow-web', 'shop/default-deny']);
  assert.deepEqual(webApi.deciding, ['shop/allow-web', 'shop/default-deny']);
  assert.equal(webApi.flows, 2 + 1 + 4);
  assert.equal(webApi.label, 'TCP/8080,9090 · allow-web, default-deny');
  const apiPg = v.edges.find((e) => e.id === 'shop/Deployment/api>db/Deployment/pg');
  assert.equal(apiPg.outside_baseline, true);
  assert.equal(apiPg.colorKey, 'outside_baseline');
  const cartPg = v.edges.find((e) => e.id === 'shop/StatefulSet/cart>db/Deployment/pg');
  assert.equal(cartPg.colorKey, 'would_deny');
  assert.equal(v.stats.edges, 5);
  assert.equal(v.stats.drawnEdges, 4);
});

test('outside_baseline colours only an otherwise allowed edge', () => {
  const d = doc();
  d.edges.push(edge('shop/Deployment/web', 'db/Deployment/pg', 'TCP', 5432, 'denied', { outside: true }));
  const v = buildView(createState(d));
  const e = v.edges.find((x) => x.id === 'shop/Deployment/web>db/Deployment/pg');
  assert.equal(e.colorKey, 'denied');
  assert.equal(e.outside_baseline, false);
});

test('collapsed namespaces: namespace to namespace edges, inside edges summarised on the node', () => {
  const st = createState(doc());
  const v = buildView(st, { collapsed: new Set(['shop', 'db']) });
  assert.deepEqual(v.nodes.map((n) => n.id), ['ns:db', 'ns:shop', 'cidr:10.9.0.0/24']);
  const shop = v.nodes.find((n) => n.id === 'ns:shop');
  assert.equal(shop.collapsed, true);
  assert.equal(shop.label, 'shop\n3 workloads');
  assert.equal(shop.internalEdges, 2);
  assert.equal(shop.internalVerdict, 'denied');
  assert.deepEqual(v.edges.map((e) => e.id), ['ns:shop>cidr:10.9.0.0/24', 'ns:shop>ns:db']);
  const agg = v.edges.find((e) => e.id === 'ns:shop>ns:db');
  assert.equal(agg.aggregated, true);
  assert.equal(agg.verdict, 'would_deny');
  assert.equal(agg.outside_baseline, false, 'a would_deny member makes the merged edge not allowed');
  assert.deepEqual(agg.ports, ['TCP/5432']);
  assert.equal(agg.members.length, 2);

  // Expanding one: edges go from its workloads to the other (collapsed) namespace.
  const v2 = buildView(st, { collapsed: new Set(['db']) });
  assert.deepEqual(v2.edges.map((e) => e.id).sort(), [
    'shop/Deployment/api>cidr:10.9.0.0/24', 'shop/Deployment/api>ns:db',
    'shop/Deployment/web>shop/Deployment/api', 'shop/StatefulSet/cart>ns:db']);
  assert.equal(v2.edges.find((e) => e.id === 'shop/Deployment/api>ns:db').colorKey, 'outside_baseline');
});

test('filters: verdicts, protocols, namespaces (with their peers), time', () => {
  const st = createState(doc());
  let v = buildView(st, { filter: { verdicts: ['denied'] } });
  assert.deepEqual(v.edges.map((e) => e.id), ['shop/Deployment/web>shop/Deployment/api']);
  assert.deepEqual(v.edges[0].ports, ['TCP/9090']);
  v = buildView(st, { filter: { verdicts: ['outside_baseline'] } });
  assert.deepEqual(v.edges.map((e) => e.id), ['shop/Deployment/api>db/Deployment/pg']);
  v = buildView(st, { filter: { protocols: ['UDP'] } });
  assert.deepEqual(v.edges.map((e) => e.id), ['shop/Deployment/api>cidr:10.9.0.0/24']);
  v = buildView(st, { filter: { namespaces: ['db'] } });
  assert.deepEqual(v.edges.map((e) => e.id).sort(), ['shop/Deployment/api>db/Deployment/pg', 'shop/StatefulSet/cart>db/Deployment/pg']);
  assert.deepEqual(v.nodes.map((n) => n.id), ['ns:db', 'db/Deployment/pg', 'ns:shop', 'shop/Deployment/api', 'shop/StatefulSet/cart'],
    'the peers of db are drawn, not the rest of shop nor the external group');
  v = buildView(st, { filter: { since: T0 - 10 * 60_000 } });
  assert.ok(!v.edges.some((e) => e.target === 'cidr:10.9.0.0/24'), 'an edge last seen before the window is not drawn');
  v = buildView(st, { filter: { until: T0 - 58 * 60_000 } });
  assert.equal(v.edges.length, 0);
  v = buildView(st, { filter: { verdicts: [], protocols: null } });
  assert.equal(v.edges.length, 4, 'an empty filter is no filter');
});

test('hidden workloads, externals and namespaces take their edges with them', () => {
  const st = createState(doc());
  let v = buildView(st, { hidden: new Set(['shop/Deployment/api']) });
  assert.ok(!v.nodes.some((n) => n.id === 'shop/Deployment/api'));
  assert.deepEqual(v.hiddenNodes.map((n) => [n.id, n.hidden]), [['shop/Deployment/api', true]]);
  assert.deepEqual(v.edges.map((e) => e.id), ['shop/StatefulSet/cart>db/Deployment/pg']);
  v = buildView(st, { hidden: new Set(['ns:db', 'cidr:10.9.0.0/24']) });
  assert.deepEqual(v.edges.map((e) => e.id), ['shop/Deployment/web>shop/Deployment/api']);
  assert.deepEqual(v.hiddenNodes.map((n) => n.id).sort(), ['cidr:10.9.0.0/24', 'ns:db']);
  assert.equal(v.stats.hidden, 2);
});

test('live increments: counts added, policies unioned, times widened, verdict recomputed', () => {
  const st = createState(doc());
  const id = 'shop/Deployment/web>shop/Deployment/api:TCP/8080';
  assert.equal(applyLine(st, { type: 'edge', id, src: 'shop/Deployment/web', dst: 'shop/Deployment/api', protocol: 'TCP', port: 8080,
    verdict: 'denied', classes: { denied: { flows: 1, packets: 3, bytes: 180 }, allowed: { flows: 2, packets: 4, bytes: 5 } },
    policies: { denied: ['shop/deny-all'], allowed: ['shop/allow-more'] }, outside_baseline: false,
    first_seen: T0 - 120_000, last_seen: T0 + 1000 }), true);
  const e = st.edges.get(id);
  assert.deepEqual(e.classes.allowed, { flows: 4, packets: 24, bytes: 2005 });
  assert.deepEqual(e.classes.denied, { flows: 1, packets: 3, bytes: 180 });
  assert.equal(e.verdict, 'denied');
  assert.deepEqual(e.policies.allowed, ['shop/allow-more', 'shop/allow-web']);
  assert.deepEqual(e.policies.denied, ['shop/deny-all']);
  assert.equal(e.first_seen, T0 - 120_000);
  assert.equal(e.last_seen, T0 + 1000);
  // A new workload, then an edge naming it; and one naming an unknown workload and external.
  applyLine(st, { type: 'workload', ...wl('pay', 'ledger') });
  applyLine(st, { type: 'edge', ...edge('pay/Deployment/ledger', 'db/Deployment/pg', 'TCP', 5432, 'allowed') });
  applyLine(st, { type: 'edge', ...edge('ops/Pod/debug', 'cidr:192.0.2.0/24', 'ICMP', 0, 'quarantined') });
  applyLine(st, { type: 'lost', lost: 7 });
  assert.equal(applyLine(st, { type: 'nonsense' }), false);
  assert.equal(st.lost, 10);
  assert.equal(st.updates, 5);
  const v = buildView(st);
  assert.ok(v.nodes.some((n) => n.id === 'ns:pay'));
  const dbg = v.nodes.find((n) => n.id === 'ops/Pod/debug');
  assert.equal(dbg.parent, 'ns:ops');
  assert.ok(v.nodes.some((n) => n.id === 'cidr:192.0.2.0/24'));
  const q = v.edges.find((x) => x.id === 'ops/Pod/debug>cidr:192.0.2.0/24');
  assert.equal(q.colorKey, 'quarantined');
  assert.deepEqual(q.ports, ['ICMP']);
});

test('follow lines by revision: those in the map skipped, a merge applied whole, a skipped revision is a gap', () => {
  const st = createState(doc()); // revision 1
  const id = 'shop/Deployment/web>shop/Deployment/api:TCP/8080';
  const inc = (revision) => ({ type: 'edge', revision, ...edge('shop/Deployment/web', 'shop/Deployment/api', 'TCP', 8080, 'allowed', {
    classes: { allowed: { flows: 1, packets: 1, bytes: 1 } } }) });
  const flows = () => st.edges.get(id).classes.allowed.flows;
  const before = flows();
  assert.equal(applyLine(st, inc(1)), false, 'a line of the map\'s own revision is in it already');
  assert.equal(flows(), before);
  assert.equal(applyLine(st, inc(2)), true);
  assert.equal(applyLine(st, { type: 'workload', revision: 2, ...wl('pay', 'ledger') }), true, 'more lines of the same merge');
  assert.equal(applyLine(st, inc(3)), true);
  assert.equal(flows(), before + 2);
  assert.equal(st.gap, false);
  assert.equal(applyLine(st, inc(5)), false, 'revision 4 was missed');
  assert.equal(st.gap, true);
  assert.equal(flows(), before + 2);
  const lost = createState(doc());
  applyLine(lost, { type: 'lost', lost: 3 });
  assert.equal(lost.gap, true, 'lost increments need a refetch too');
});

test('edge labels: ports grouped by protocol, long lists and names shortened', () => {
  assert.equal(edgeLabel(['TCP/80', 'TCP/443', 'UDP/53'], []), 'TCP/80,443 UDP/53');
  assert.equal(edgeLabel(['TCP/1', 'TCP/2', 'TCP/3', 'TCP/4', 'TCP/5', 'TCP/6'], ['a/p', 'b/q', 'c/r']), 'TCP/1,2,3,4 +2 · p, q +1');
  assert.equal(shortPolicy('shop/a-very-long-policy-name-that-goes-on'), 'a-very-long-policy-na…');
  assert.equal(shortPolicy('shop/a-very-long-policy-name-that-goes-on').length, 22);
  assert.equal(edgeLabel(['ICMP'], ['shop/x']), 'ICMP · x');
});
