// The map model: pure functions from the agent's `bulkhead.map/v1` data
// (GET /v1/map, and the increments of GET /v1/map/follow) to the graph the UI
// draws (the "view"). No DOM, no Cytoscape: unit-tested under node.
//
// State: every workload, external group and edge the agent sent (edges keyed
// by the contract's edge id `src>dst:PROTO/port`). View: what is drawn for a
// given set of collapsed namespaces, hidden ids and filters: namespace nodes
// (compound when expanded, plain when collapsed), workloads inside expanded
// namespaces, external groups, and one drawn edge per (drawn source, drawn
// target) pair merging every port and policy of its member edges. Edges
// inside a collapsed namespace are not drawn; they are summarised on the
// namespace node (count and worst verdict).

/** Verdict classes, least severe first (the contract's order). */
export const VERDICTS = ['allowed', 'would_deny', 'revoked', 'denied', 'quarantined'];

/** Filter values for verdicts: the classes plus `outside_baseline`. */
export const VERDICT_FILTERS = [...VERDICTS, 'outside_baseline'];

const RANK = Object.fromEntries(VERDICTS.map((v, i) => [v, i]));

/**
 * The worst (most severe) verdict of a list; `allowed` for an empty one.
 * @param {Iterable<string>} verdicts
 */
export function worstVerdict(verdicts) {
  let worst = 'allowed';
  for (const v of verdicts) if ((RANK[v] ?? -1) > RANK[worst]) worst = v;
  return worst;
}

/** The verdict of an edge's classes: the worst class with flows. */
export function classesVerdict(classes) {
  return worstVerdict(Object.keys(classes || {}).filter((c) => (classes[c]?.flows ?? 0) > 0));
}

/** Namespace node id of a namespace name. */
export const nsId = (name) => `ns:${name}`;

/** Whether an id names an external address group. */
export const isExternalId = (id) => typeof id === 'string' && id.startsWith('cidr:');

/**
 * A workload object for an id the agent named but did not describe
 * (`ns/Kind/name`): enough to draw it.
 * @param {string} id
 */
export function workloadFromId(id) {
  const [namespace, ...rest] = id.split('/');
  const name = rest.join('/');
  const kind = rest.length > 1 ? rest[0] : 'Pod';
  const short = rest.length > 1 ? rest.slice(1).join('/') : name;
  return { id, namespace, name, kind, short, labels: {}, local: false, mode: null, quarantined: false };
}

/** A fresh, empty state. */
export function emptyState() {
  return {
    meta: { node: null, generated_at: null, window: null, revision: null, evicted_buckets: 0 },
    workloads: new Map(),
    externals: new Map(),
    edges: new Map(),
    lost: 0,
    updates: 0,
    // Follow lines up to `base` are in the state; `revision` is the last
    // applied; `gap` says increments were missed (refetch).
    base: 0,
    revision: 0,
    gap: false,
  };
}

/**
 * The state of a `bulkhead.map/v1` document.
 * @param {object} doc
 */
export function createState(doc) {
  if (doc?.schema !== 'bulkhead.map/v1') {
    throw new Error(`unexpected map schema ${JSON.stringify(doc?.schema)} (want bulkhead.map/v1)`);
  }
  const st = emptyState();
  st.meta = {
    node: doc.node ?? null,
    generated_at: doc.generated_at ?? null,
    window: doc.window ?? null,
    revision: doc.revision ?? null,
    evicted_buckets: doc.evicted_buckets ?? 0,
  };
  st.lost = doc.lost_records ?? 0;
  // The map's revision: follow lines of this revision or older are in it.
  st.revision = doc.revision ?? 0;
  st.base = st.revision;
  for (const w of doc.workloads || []) st.workloads.set(w.id, { ...w });
  for (const x of doc.externals || []) st.externals.set(x.id, { ...x });
  for (const e of doc.edges || []) {
    st.edges.set(e.id, normalizeEdge(e));
    ensureEndpoint(st, e.src);
    ensureEndpoint(st, e.dst);
  }
  return st;
}

function normalizeEdge(e) {
  const classes = {};
  for (const [c, v] of Object.entries(e.classes || {})) {
    classes[c] = { flows: v.flows ?? 0, packets: v.packets ?? 0, bytes: v.bytes ?? 0 };
  }
  const policies = {};
  for (const [c, v] of Object.entries(e.policies || {})) policies[c] = [...v].sort();
  return {
    id: e.id,
    src: e.src,
    dst: e.dst,
    protocol: e.protocol,
    port: e.port ?? 0,
    verdict: e.verdict ?? classesVerdict(classes),
    classes,
    policies,
    policies_truncated: !!e.policies_truncated,
    outside_baseline: !!e.outside_baseline,
    first_seen: e.first_seen ?? null,
    last_seen: e.last_seen ?? null,
  };
}

function ensureEndpoint(st, id) {
  if (isExternalId(id)) {
    if (!st.externals.has(id)) {
      st.externals.set(id, { id, cidr: id.slice('cidr:'.length), addresses: 0 });
    }
  } else if (!st.workloads.has(id)) {
    st.workloads.set(id, workloadFromId(id));
  }
}

/**
 * Applies one line of `/v1/map/follow` to the state.
 * Edge lines carry increments: counts are added, policies unioned per class,
 * times widened, the verdict recomputed from the classes.
 * @param {object} st the state (changed in place)
 * @param {object} line a parsed JSON line
 * @returns {boolean} whether the state changed
 */
export function applyLine(st, line) {
  if (!line || typeof line !== 'object') return false;
  if (line.type === 'lost') {
    // Increments were dropped for this follower: the state is behind.
    st.lost += line.lost ?? 0;
    st.gap = true;
    st.updates++;
    return true;
  }
  if (typeof line.revision === 'number') {
    // Each merge raises the map's revision by one and its lines come
    // together, in order: older ones are in the state already, a skipped
    // revision means increments were missed (only a refetch repairs that).
    if (line.revision <= st.base) return false;
    if (line.revision > st.revision + 1) {
      st.gap = true;
      return false;
    }
    st.revision = line.revision;
  }
  switch (line.type) {
    case 'edge': {
      const { type, ...inc } = line;
      const cur = st.edges.get(inc.id);
      if (!cur) {
        st.edges.set(inc.id, normalizeEdge(inc));
      } else {
        for (const [c, v] of Object.entries(inc.classes || {})) {
          const k = (cur.classes[c] ||= { flows: 0, packets: 0, bytes: 0 });
          k.flows += v.flows ?? 0;
          k.packets += v.packets ?? 0;
          k.bytes += v.bytes ?? 0;
        }
        for (const [c, names] of Object.entries(inc.policies || {})) {
          const set = new Set(cur.policies[c] || []);
          for (const n of names) set.add(n);
          cur.policies[c] = [...set].sort();
        }
        cur.policies_truncated ||= !!inc.policies_truncated;
        if (inc.outside_baseline !== undefined) cur.outside_baseline = !!inc.outside_baseline;
        if (inc.first_seen != null) {
          cur.first_seen = cur.first_seen == null ? inc.first_seen : Math.min(cur.first_seen, inc.first_seen);
        }
        if (inc.last_seen != null) {
          cur.last_seen = cur.last_seen == null ? inc.last_seen : Math.max(cur.last_seen, inc.last_seen);
        }
        cur.verdict = classesVerdict(cur.classes);
      }
      ensureEndpoint(st, inc.src);
      ensureEndpoint(st, inc.dst);
      st.updates++;
      return true;
    }
    case 'workload': {
      const { type, ...w } = line;
      st.workloads.set(w.id, { ...(st.workloads.get(w.id) || {}), ...w });
      st.updates++;
      return true;
    }
    case 'external': {
      const { type, ...x } = line;
      st.externals.set(x.id, { ...(st.externals.get(x.id) || {}), ...x });
      st.updates++;
      return true;
    }
    default:
      return false;
  }
}

/** The namespaces of a state, sorted by name, with their workload counts. */
export function namespacesOf(st) {
  const counts = new Map();
  for (const w of st.workloads.values()) counts.set(w.namespace, (counts.get(w.namespace) || 0) + 1);
  return [...counts.keys()].sort().map((name) => ({ name, workloads: counts.get(name) }));
}

/** `TCP/8080`, or the protocol alone when it has no port. */
export function portLabel(e) {
  return e.port ? `${e.protocol}/${e.port}` : String(e.protocol);
}

/** A policy name shortened for an edge label (the full name is in the details). */
export function shortPolicy(name, max = 22) {
  const base = name.includes('/') ? name.slice(name.indexOf('/') + 1) : name;
  return base.length > max ? `${base.slice(0, max - 1)}…` : base;
}

/**
 * The label of a drawn edge: its ports grouped by protocol (at most
 * `maxPorts`), then the deciding policies of its verdict (shortened, at most 2).
 * @param {string[]} ports sorted `PROTO/port` strings
 * @param {string[]} deciding policy names
 */
export function edgeLabel(ports, deciding, maxPorts = 4) {
  const byProto = new Map();
  for (const p of ports.slice(0, maxPorts)) {
    const [proto, port] = p.split('/');
    if (!byProto.has(proto)) byProto.set(proto, []);
    if (port !== undefined) byProto.get(proto).push(port);
  }
  let text = [...byProto].map(([proto, list]) => (list.length ? `${proto}/${list.join(',')}` : proto)).join(' ');
  if (ports.length > maxPorts) text += ` +${ports.length - maxPorts}`;
  if (deciding.length) {
    text += ` · ${deciding.slice(0, 2).map((n) => shortPolicy(n)).join(', ')}`;
    if (deciding.length > 2) text += ` +${deciding.length - 2}`;
  }
  return text;
}

function sortPorts(a, b) {
  const [pa, na] = a.split('/');
  const [pb, nb] = b.split('/');
  if (pa !== pb) return pa < pb ? -1 : 1;
  return (Number(na) || 0) - (Number(nb) || 0);
}

/**
 * Whether an edge passes the filters (not counting the namespace filter).
 * @param {object} e
 * @param {object} f normalised filter
 */
function edgePasses(e, f) {
  if (f.verdicts) {
    const ok = f.verdicts.has(e.verdict) || (f.verdicts.has('outside_baseline') && e.outside_baseline);
    if (!ok) return false;
  }
  if (f.protocols && !f.protocols.has(String(e.protocol))) return false;
  if (f.since != null && e.last_seen != null && e.last_seen < f.since) return false;
  if (f.until != null && e.first_seen != null && e.first_seen > f.until) return false;
  return true;
}

const toSet = (v) => (v == null ? null : v instanceof Set ? v : new Set(Array.isArray(v) ? v : [v]));

/**
 * Normalises a filter: arrays to sets; empty or missing means "no filter".
 * @param {object} [filter] {namespaces, verdicts, protocols, since, until}
 */
export function normalizeFilter(filter = {}) {
  const nonEmpty = (s) => (s && s.size ? s : null);
  return {
    namespaces: nonEmpty(toSet(filter.namespaces)),
    verdicts: nonEmpty(toSet(filter.verdicts)),
    protocols: nonEmpty(toSet(filter.protocols)),
    since: filter.since ?? null,
    until: filter.until ?? null,
  };
}

/** The colour key of a drawn edge: its verdict, or outside_baseline when allowed but outside. */
export function colorKey(verdict, outside) {
  return verdict === 'allowed' && outside ? 'outside_baseline' : verdict;
}

/**
 * The view: what to draw.
 * @param {object} st the state
 * @param {{collapsed?: Set<string>, hidden?: Set<string>, filter?: object}} [opts]
 *   collapsed: namespace names drawn collapsed; hidden: workload, external or
 *   namespace (`ns:name`) ids not drawn (nor their edges)
 * @returns {{nodes: object[], edges: object[], hiddenNodes: object[], stats: object}}
 */
export function buildView(st, opts = {}) {
  const collapsed = opts.collapsed || new Set();
  const hidden = opts.hidden || new Set();
  const f = normalizeFilter(opts.filter);

  const nsOf = (id) => (isExternalId(id) ? null : st.workloads.get(id)?.namespace ?? workloadFromId(id).namespace);
  const isHidden = (id) => {
    if (hidden.has(id)) return true;
    const ns = nsOf(id);
    return ns != null && hidden.has(nsId(ns));
  };
  const drawnId = (id) => {
    const ns = nsOf(id);
    return ns != null && collapsed.has(ns) ? nsId(ns) : id;
  };
  const inNsFilter = (id) => {
    if (!f.namespaces) return true;
    const ns = nsOf(id);
    return ns != null && f.namespaces.has(ns);
  };

  // Edges: filter, then merge by drawn (source, target).
  const merged = new Map();
  const internal = new Map(); // ns name -> {edges, verdicts[]}
  const peers = new Set();
  let rawKept = 0;
  for (const e of st.edges.values()) {
    if (isHidden(e.src) || isHidden(e.dst)) continue;
    if (!inNsFilter(e.src) && !inNsFilter(e.dst)) continue;
    if (!edgePasses(e, f)) continue;
    rawKept++;
    const a = drawnId(e.src);
    const b = drawnId(e.dst);
    peers.add(e.src);
    peers.add(e.dst);
    if (a === b) {
      // Inside a collapsed namespace (or a workload talking to itself).
      const key = a.startsWith('ns:') ? a.slice(3) : a;
      const s = internal.get(key) || { edges: 0, verdict: 'allowed', outside: false, flows: 0 };
      s.edges++;
      s.verdict = worstVerdict([s.verdict, e.verdict]);
      s.outside ||= e.outside_baseline && e.verdict === 'allowed';
      s.flows += sumFlows(e);
      internal.set(key, s);
      continue;
    }
    const id = `${a}>${b}`;
    let m = merged.get(id);
    if (!m) {
      m = { id, source: a, target: b, members: [], ports: new Set(), policies: new Set(), deciding: new Set(),
        verdicts: [], outside: false, flows: 0, packets: 0, bytes: 0, first_seen: null, last_seen: null,
        aggregated: a.startsWith('ns:') || b.startsWith('ns:') };
      merged.set(id, m);
    }
    m.members.push(e.id);
    m.ports.add(portLabel(e));
    for (const names of Object.values(e.policies)) for (const n of names) m.policies.add(n);
    for (const n of e.policies[e.verdict] || []) m.deciding.add(n);
    m.verdicts.push(e.verdict);
    m.outside ||= e.outside_baseline && e.verdict === 'allowed';
    for (const c of Object.values(e.classes)) {
      m.flows += c.flows;
      m.packets += c.packets;
      m.bytes += c.bytes;
    }
    if (e.first_seen != null) m.first_seen = m.first_seen == null ? e.first_seen : Math.min(m.first_seen, e.first_seen);
    if (e.last_seen != null) m.last_seen = m.last_seen == null ? e.last_seen : Math.max(m.last_seen, e.last_seen);
  }

  const edges = [];
  for (const m of merged.values()) {
    const verdict = worstVerdict(m.verdicts);
    const ports = [...m.ports].sort(sortPorts);
    const deciding = [...m.deciding].sort();
    const outside = verdict === 'allowed' && m.outside;
    edges.push({
      id: m.id,
      source: m.source,
      target: m.target,
      verdict,
      outside_baseline: outside,
      colorKey: colorKey(verdict, outside),
      label: edgeLabel(ports, deciding),
      ports,
      policies: [...m.policies].sort(),
      deciding,
      members: m.members.sort(),
      aggregated: m.aggregated,
      flows: m.flows,
      packets: m.packets,
      bytes: m.bytes,
      first_seen: m.first_seen,
      last_seen: m.last_seen,
    });
  }
  edges.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));

  // Nodes.
  const nodes = [];
  const hiddenNodes = [];
  const namespaces = namespacesOf(st);
  const nsShown = new Set();
  const wlByNs = new Map();
  for (const w of [...st.workloads.values()].sort((x, y) => (x.id < y.id ? -1 : 1))) {
    if (!inNsFilter(w.id) && !peers.has(w.id)) continue;
    if (isHidden(w.id)) {
      if (!hidden.has(nsId(w.namespace))) hiddenNodes.push(workloadNode(w, collapsed, true));
      continue;
    }
    if (!wlByNs.has(w.namespace)) wlByNs.set(w.namespace, []);
    wlByNs.get(w.namespace).push(w);
    nsShown.add(w.namespace);
  }
  for (const ns of namespaces) {
    const id = nsId(ns.name);
    const isCollapsed = collapsed.has(ns.name);
    const s = internal.get(ns.name);
    const node = {
      id,
      kind: 'namespace',
      label: isCollapsed ? `${ns.name}\n${ns.workloads} workload${ns.workloads === 1 ? '' : 's'}` : ns.name,
      namespace: ns.name,
      parent: null,
      collapsed: isCollapsed,
      hidden: false,
      workloads: ns.workloads,
      internalEdges: s?.edges ?? 0,
      internalVerdict: s ? colorKey(s.verdict, s.outside) : null,
    };
    if (hidden.has(id)) {
      hiddenNodes.push({ ...node, hidden: true });
      continue;
    }
    if (!nsShown.has(ns.name)) continue;
    nodes.push(node);
    if (!isCollapsed) for (const w of wlByNs.get(ns.name) || []) nodes.push(workloadNode(w, collapsed, false));
  }
  for (const x of [...st.externals.values()].sort((p, q) => (p.id < q.id ? -1 : 1))) {
    if (f.namespaces && !peers.has(x.id)) continue;
    const node = { id: x.id, kind: 'external', label: x.cidr, namespace: null, parent: null,
      collapsed: false, hidden: false, addresses: x.addresses };
    if (hidden.has(x.id)) hiddenNodes.push({ ...node, hidden: true });
    else nodes.push(node);
  }

  const drawn = new Set(nodes.map((n) => n.id));
  const keptEdges = edges.filter((e) => drawn.has(e.source) && drawn.has(e.target));
  return {
    nodes,
    edges: keptEdges,
    hiddenNodes,
    stats: {
      namespaces: nodes.filter((n) => n.kind === 'namespace').length,
      workloads: nodes.filter((n) => n.kind === 'workload').length,
      externals: nodes.filter((n) => n.kind === 'external').length,
      edges: rawKept,
      drawnEdges: keptEdges.length,
      hidden: hiddenNodes.length,
      totalWorkloads: st.workloads.size,
      totalEdges: st.edges.size,
    },
  };
}

function sumFlows(e) {
  let n = 0;
  for (const c of Object.values(e.classes)) n += c.flows;
  return n;
}

function workloadNode(w, collapsed, isHidden) {
  return {
    id: w.id,
    kind: 'workload',
    label: w.kind && w.kind !== 'Deployment' ? `${w.short}\n(${w.kind})` : w.short,
    namespace: w.namespace,
    parent: nsId(w.namespace),
    collapsed: collapsed.has(w.namespace),
    hidden: isHidden,
    mode: w.mode ?? null,
    quarantined: !!w.quarantined,
  };
}
