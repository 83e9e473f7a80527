//! Every map of the dataplane, in one place.
//!
//! Key and value types and capacities come from `bulkhead-common`, the ABI
//! shared with userspace (which also documents the slot/revision protocol).
//! Policy maps (IDENTITIES, IDENTITIES_EXACT, POLICY_V4, POLICY_NODES, ENDPOINTS_V6) are keyed by
//! slot first (POLICY_NODES: one index range per slot) and
//! written only by the controller; the programs read them in the slot of the
//! revision they read from CONFIG at start. CT, FRAGS and DROPS are written by
//! the programs, and so are the flow accounting maps (FLOWS_0/FLOWS_1,
//! FLOW_STATS, EVENTS; see `flowlog.rs`), which the controller drains.
//! Nothing is pinned here; the loader pins (fail-static).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};

use crate::{
    parse::Parsed,
    service::{MasqClient, Pending, PendingKey},
};
use bulkhead_common::{
    CT_MAX, Config, CtEntry, CtKey, DROPS_MAX, ENDPOINTS_MAX, EVENTS_RING_BYTES, EndpointInfo,
    EndpointKey, FLOW_STATS_MAX, FLOWS_CAPACITY, FRAGS_MAX, FlowConfig, FlowKey, FlowValue,
    FragEntry, FragKey, IDENTITIES_EXACT_MAX, IDENTITIES_MAX, IdentityKey, IdentityValue,
    POLICY_MAX, POLICY_NODES_MAX, PolicyNode, PolicyNodeKey, SERVICE_CT_MAX, SERVICE_MASQ_MAX,
    SERVICE_PENDING_MAX, SERVICES_MAX, ServiceBackend, ServiceKey, ServiceValue,
};

/// (slot, address) → identity (address class), both families in one trie.
///
/// - Key: [`IdentityKey`] under an LPM prefix length: slot (8 bits) then the
///   address, IPv4 mapped into IPv6, so an IPv4 `/n` is stored with prefix
///   `8 + 96 + n`; the programs look up at `IDENTITY_PREFIX_FULL` (136).
/// - Value: [`IdentityValue`]; the identity is never `IDENTITY_ANY`. An
///   address without an entry has no identity and only matches any-peer rules.
/// - Written by: the controller (image of the compiled address partition).
/// - Capacity: `IDENTITIES_MAX` (two slots of `IDENTITIES_SLOT_CAPACITY`).
#[map]
pub static IDENTITIES: LpmTrie<IdentityKey, IdentityValue> =
    LpmTrie::with_max_entries(IDENTITIES_MAX, 0);

/// (slot, address) → identity for single addresses (ABI v11): the entries
/// of the same image whose prefix is the full address
/// (`identity_is_exact`), kept out of IDENTITIES.
///
/// - Key: [`IdentityKey`] (the full address, IPv4 mapped into IPv6).
/// - Value: [`IdentityValue`], as in IDENTITIES.
/// - Looked up first; a miss falls back to the IDENTITIES trie. A trie
///   lookup walks one node per prefix above the address, so pods under a
///   wide CIDR (a cluster-admin `networks` peer of `0.0.0.0/0` or the pod
///   range) made every new flow's lookup slower; this one is a hash lookup.
/// - Written by: the controller, with IDENTITIES (same slots, same swap).
/// - Capacity: `IDENTITIES_EXACT_MAX`; not preallocated.
#[map]
pub static IDENTITIES_EXACT: HashMap<IdentityKey, IdentityValue> =
    HashMap::with_max_entries(IDENTITIES_EXACT_MAX, BPF_F_NO_PREALLOC);

/// (slot, table, peer identity) → the root of that peer's B-tree of
/// (protocol, port) ranges and their deciding rules (ABI v4; replaces
/// `POLICY_V3`, which also held the other nodes, each level a hash lookup,
/// and the v2 LPM trie `POLICY`, whose lookups grew with the entry count).
///
/// - Key: [`PolicyNodeKey`] (exact match), `node` 0. The programs look up
///   (peer identity, then `IDENTITY_ANY`), search the root (a 4-step binary
///   search) and descend through [`POLICY_NODES`] (see `policy.rs`). An
///   absent root means "nothing allowed for that peer".
/// - Value: [`PolicyNode`] (up to `POLICY_FANOUT` ranges over
///   `policy_point(proto, port)`); an inner root's targets are node numbers
///   of POLICY_NODES.
/// - Written by: the controller (image of the compiled rule tables).
/// - Capacity: `POLICY_MAX` (two slots of `POLICY_SLOT_CAPACITY`), not
///   preallocated: a root costs memory only while it exists.
#[map]
pub static POLICY_V4: HashMap<PolicyNodeKey, PolicyNode> =
    HashMap::with_max_entries(POLICY_MAX, BPF_F_NO_PREALLOC);

/// Node index → a non-root node of the POLICY_V4 trees (ABI v4).
///
/// - Index: `policy_node_index(slot, node)`: slot `s` owns indexes
///   `s * POLICY_NODES_SLOT_CAPACITY ..` `(s + 1) * POLICY_NODES_SLOT_CAPACITY`;
///   `node` is an inner range's `target`, relative to the slot's range.
///   Descending a level is an array access the verifier inlines (no helper
///   call, no hashing), then a 4-step binary search.
/// - Value: [`PolicyNode`] (inner nodes' targets: node numbers again; a
///   leaf's: rules). Entries no tree reaches are unused (zeroed when freed).
/// - Written by: the controller, together with the roots of the slot.
/// - Capacity: `POLICY_NODES_MAX` (two slots of
///   `POLICY_NODES_SLOT_CAPACITY`), preallocated (an array).
#[map]
pub static POLICY_NODES: Array<PolicyNode> = Array::with_max_entries(POLICY_NODES_MAX, 0);

/// (ifindex, slot) → local pod: table bindings (enforced and audit views),
/// isolation, MAC and addresses. ABI v6 (`ENDPOINTS` before: its value
/// lacked the audit tables).
///
/// - Key: [`EndpointKey`]: ifindex of the pod's host-side veth (the device
///   the programs run on) and the slot.
/// - Value: [`EndpointInfo`].
/// - Written by: the controller, for every local pod in both slots (tables
///   are renumbered per image). An unknown ifindex is not enforced at all.
/// - Capacity: `ENDPOINTS_MAX`.
#[map]
pub static ENDPOINTS_V6: HashMap<EndpointKey, EndpointInfo> =
    HashMap::with_max_entries(ENDPOINTS_MAX, 0);

/// Index 0 → [`Config`]: the policy revision (active slot = revision % 2).
///
/// - Written by: the controller, one update per policy switch, after the
///   inactive slot holds the complete new image. Read once per packet.
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Conntrack: original-direction 5-tuple → [`CtEntry`].
///
/// - Key: [`CtKey`] (both families, echo identifiers as ports).
/// - Value: [`CtEntry`]: per side the revision it was checked under and the
///   allowing rule, TCP flags seen per direction, last-seen time.
/// - Written by: the TC programs (create on an allowed new connection,
///   update on every packet, delete on revocation); XDP only reads it. The
///   controller may read and delete (idle GC, `status`).
/// - LRU: when full the least recently used connection is evicted (its next
///   packet is checked as new).
#[map]
pub static CT: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(CT_MAX, 0);

/// Fragment tracking: (src, dst, id, proto, ifindex, hook) → [`FragEntry`].
///
/// - Written by: the TC programs when a first fragment passes; read for the
///   later fragments of the same datagram at the same hook (see `parse.rs`).
/// - LRU: old datagrams fall out; their late fragments are dropped.
#[map]
pub static FRAGS: LruHashMap<FragKey, FragEntry> = LruHashMap::with_max_entries(FRAGS_MAX, 0);

/// Per-CPU drop counters, indexed by `DropReason` (`u64` packets).
///
/// - Written by: every program, through the one notify path (`notify.rs`).
/// - Read by: the controller (sum over CPUs) for metrics and `status`.
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROPS_MAX, 0);

/// Flow table 0: (connection, endpoint, side) → what the current interval
/// saw of it (written while FLOW_CONFIG's `slot` is 0).
///
/// - Key: [`FlowKey`]: the connection's original-direction tuple (CT's
///   key; for packets that never became a connection, the tuple as sent),
///   the ifindex of the endpoint's host-side veth, and the side
///   (`FLOW_SIDE_EGRESS`: the endpoint's pod opened the connection).
/// - Value: [`FlowValue`]: passed packets and bytes per direction, dropped
///   packets and bytes with the last reason, first/last seen, TCP flags per
///   direction, the rule of this side and its revision, `FLOW_F_*` flags.
///   Counters are updated with atomic adds (several CPUs share an entry).
/// - Written by: every program through `flowlog::account` (insert with
///   `BPF_NOEXIST`, then atomic updates), only while FLOW_CONFIG enables
///   accounting and selects this table. Drained (lookup and delete of every
///   entry) by the controller after it switched `slot` to the other table
///   and waited a grace period, so no program writes it while drained.
/// - Capacity: `FLOWS_CAPACITY`, preallocated (an insert never allocates;
///   a full table sends the record to EVENTS instead).
#[map]
pub static FLOWS_0: HashMap<FlowKey, FlowValue> = HashMap::with_max_entries(FLOWS_CAPACITY, 0);

/// Flow table 1: as [`FLOWS_0`], written while FLOW_CONFIG's `slot` is 1.
#[map]
pub static FLOWS_1: HashMap<FlowKey, FlowValue> = HashMap::with_max_entries(FLOWS_CAPACITY, 0);

/// Index 0 → [`FlowConfig`]: which flow table the programs write (`slot`)
/// and what they do (`flags`: `FLOW_CONFIG_ACCOUNTING`, `_EVENTS_NEW`,
/// `_EVENTS_DROP`).
///
/// - Written by: the controller (the agent sets the flags at start; every
///   drain flips `slot`). All zero as loaded: nothing is accounted.
/// - Read by: every program, once per packet it accounts.
#[map]
pub static FLOW_CONFIG: Array<FlowConfig> = Array::with_max_entries(1, 0);

/// Per-CPU flow accounting counters, indexed by `FlowStat` (`u64`).
///
/// - Written by: `flowlog::account` (packets and bytes accounted, entries
///   created, full table, failed inserts, fallback records sent or lost,
///   notification events sent or lost).
/// - Read by: the controller (sum over CPUs): metrics and the accounting
///   identity (see `bulkhead-common`).
/// - Capacity: `FLOW_STATS_MAX` slots (room to grow).
#[map]
pub static FLOW_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(FLOW_STATS_MAX, 0);

/// Ring buffer of [`FlowEvent`](bulkhead_common::FlowEvent) records:
/// `NewFlow` and `Drop` notifications (when FLOW_CONFIG asks for them) and
/// `FlowRecord`s, the deltas a full flow table could not take.
///
/// - Written by: `flowlog::account` (reserve, fill, submit); a full ring is
///   counted (`EventsLost`, or `FallbackLost` with its packets and bytes).
/// - Read by: the controller (memory-mapped consumer, woken by poll(2)).
/// - Size: `EVENTS_RING_BYTES`.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

/// Per-CPU scratch space for a packet's parse result (keeps it off the
/// 512-byte stack). Index `SCRATCH_TC` for the TC programs, `SCRATCH_XDP`
/// for XDP. Internal to the programs: not ABI, never read by userspace.
///
/// verifier: the parse result, CT keys and LPM keys together exceed the BPF
/// stack limit when inlined into one program.
#[map]
pub static SCRATCH: PerCpuArray<Parsed> = PerCpuArray::with_max_entries(2, 0);

/// Index 0 → the `deliver` program: `from_pod`'s tail call for host
/// routing (`CONFIG_F_HOST_ROUTING`).
///
/// - Written by: the loader, once per load (the pin keeps the entry).
/// - A tail call rather than a function: the destination's judgement and
///   accounting inlined after the source's exceed the verifier's
///   complexity limit, and a tail-called program is verified on its own.
///   An empty slot makes the tail call fail, and `from_pod` passes the
///   packet to the stack as without host routing.
#[map]
pub static DELIVER: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// (slot, protocol, port, address) → a Service frontend kube-proxy
/// translates (see `service.rs`).
///
/// - Key: [`ServiceKey`]; value: [`ServiceValue`] (presence counts).
/// - Written by: the controller, with the policy image of the slot (the
///   frontends of every Service, NodePorts on the node's addresses).
/// - Read by: `from_pod` (a new connection to a frontend is deferred to
///   the program after the translation) and `xdp_prefilter` (leaves it to
///   `from_pod`).
/// - Capacity: `SERVICES_MAX` (two slots), not preallocated.
#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> =
    HashMap::with_max_entries(SERVICES_MAX, BPF_F_NO_PREALLOC);

/// A Service connection's original tuple (client → frontend) → the backend
/// the node translated it to ([`ServiceBackend`]).
///
/// - Written by: the programs after the translation (`to_pod`,
///   `leave_node`), for every judged first packet, allowed or not.
/// - Read by: the client's programs when they re-judge the connection's
///   egress under a new revision (`conntrack.rs`), and by the controller,
///   which names the backend in the client's flow records.
/// - LRU: an evicted entry makes the client's next packet re-judged from
///   scratch (its connection is looked up as new and deferred again).
#[map]
pub static SERVICE_CT: LruHashMap<CtKey, ServiceBackend> =
    LruHashMap::with_max_entries(SERVICE_CT_MAX, 0);

/// Per-CPU hand-off from `from_pod` to the program after the node's
/// translation: the deferred packet's original tuple and client, for a
/// translation that masqueraded the client (its source is then the node's,
/// so SERVICE_PENDING_BY_CLIENT cannot find it); also where [`take`]
/// copies a record it found there. Internal to the programs, never read by
/// userspace.
///
/// The node usually forwards a packet synchronously from the TC ingress
/// hook of the client's veth to the TC egress hook of the device it leaves
/// by (one softirq on one CPU), so the entry is the packet's own;
/// `service.rs` checks it still. Not when the packet waits in the node's
/// neighbour queue (the backend's address not resolved yet): meanwhile
/// other packets may take or overwrite it.
///
/// [`take`]: crate::service::take
#[map]
pub static SERVICE_PENDING: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

/// The same hand-off keyed by the client's (address, port, protocol), which
/// the node's translation keeps unless it masquerades: found by the
/// translated packet after it waited in the node (a neighbour queue, up to
/// `service::take`'s 10 s bound) or left on another CPU, however many other
/// deferred packets passed meanwhile. Internal to the programs, never read
/// by userspace.
///
/// - Written by: `from_pod`, for every deferred packet (`service::defer`).
/// - Taken (read and deleted) by: `to_backend` (`to_pod`'s tail call) and
///   `leave_node`, on the translated packet (`service::take`).
/// - LRU: a record whose packet never arrives (dropped in the node) is
///   evicted in time, or overwritten by its client's next attempt.
#[map]
pub static SERVICE_PENDING_BY_CLIENT: LruHashMap<PendingKey, Pending> =
    LruHashMap::with_max_entries(SERVICE_PENDING_MAX, 0);

/// The client of each masqueraded Service connection to a backend on this
/// node, keyed by the connection's tuple as it reaches the backend (from
/// the node's address and port: kube-proxy masquerades a pod reaching
/// itself through its Service, and every client under `masqueradeAll`).
/// The backend's ingress side is judged on this client, so a policy
/// cannot be bypassed through the node's address, which is always let in
/// (`CT_MASQUERADED`). Internal to the programs, never read by userspace.
///
/// - Written by: `to_backend`, when the client's egress allowed a
///   connection whose translated source is not the client's
///   (`service::record_masquerade`).
/// - Read by: `to_pod`'s `open_to_pod` when it opens the connection at the
///   backend, and the backend's programs when they re-judge its ingress
///   under a new revision (`conntrack.rs`).
/// - Written anew for each masqueraded connection on the tuple. A record
///   (like the tuple's CT entry: both are LRU, nothing ends them with the
///   connection) outlives its connection: a later connection of the
///   node's own on exactly that tuple (address, port, backend and port)
///   would be judged on the old client.
/// - LRU: an evicted record makes the next re-judging deny the connection
///   (nothing names its client any more).
#[map]
pub static SERVICE_MASQ: LruHashMap<CtKey, MasqClient> =
    LruHashMap::with_max_entries(SERVICE_MASQ_MAX, 0);

/// The TC programs the TC programs tail-call, by index (`programs`):
/// `TAIL_TO_BACKEND` → `to_backend`, `TAIL_OPEN_FROM_POD` →
/// `open_from_pod`, `TAIL_OPEN_TO_POD` → `open_to_pod`, `TAIL_TO_POD` →
/// `to_pod`.
///
/// - Written by: the loader, once per load (the pins keep the entries).
/// - Tail calls, as for DELIVER: each program is verified on its own, so
///   `from_pod` and `to_pod` keep only what established connections need
///   and stay well within the verifier's complexity limit. An empty entry
///   drops the packet (`TailCallFailed`).
#[map]
pub static TAILS: ProgramArray = ProgramArray::with_max_entries(4, 0);
