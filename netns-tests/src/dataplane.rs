//! A loaded dataplane ELF for program tests: all three programs loaded (not
//! attached), maps reachable with the ABI types, and `BPF_PROG_TEST_RUN`
//! helpers. Nothing is pinned or attached: programs and maps live as long
//! as the [`Dataplane`] and the kernel frees them when it drops, also when a
//! test fails.
//!
//! `BPF_PROG_TEST_RUN` runs TC and XDP programs on the loopback device of
//! the caller's network namespace (ifindex [`LO_IFINDEX`]), so the endpoint
//! a run sees is the ENDPOINTS entry of ifindex 1: tests switch it to the
//! pod whose veth they simulate before each run.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, lpm_trie::Key},
    programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use bulkhead_common::{
    Config, CtEntry, CtKey, DropReason, ENDPOINT_HAS_IPV4, ENDPOINT_HAS_IPV6, ENDPOINT_HAS_MAC,
    ENDPOINT_ISOLATED_EGRESS, ENDPOINT_ISOLATED_INGRESS, ENDPOINTS_MAP, EndpointInfo, EndpointKey,
    FragEntry, FragKey, IDENTITIES_EXACT_MAP, IdentityKey, IdentityValue, PROTO_ANY, PolicyNode,
    PolicyNodeKey, identity_is_exact, policy_node_index,
};
use bulkhead_dataplane::{FlowMaps, FlowTap};
use bulkhead_policy::compile::maps::{
    MapImage, PolicyLayout, abi_addr, identity_key, peer_ranges, place_policy, policy_tree,
};
use bulkhead_policy::compile::tables::Segment;
use ipnetwork::IpNetwork;

use crate::privileged_ebpf_elf;

/// Programs of ABI 9 that an older ELF (a benchmark's baseline) lacks.
const OPTIONAL_PROGRAMS: [&str; 4] = ["to_backend", "leave_node", "open_from_pod", "open_to_pod"];

/// The device `BPF_PROG_TEST_RUN` runs on (loopback).
pub const LO_IFINDEX: u32 = 1;
/// TC verdict: pass.
pub const PASS: u32 = 0;
/// TC verdict: redirect (host routing's delivery into the destination pod).
pub const REDIRECT: u32 = 7;
/// TC verdict: drop.
pub const DROP: u32 = 2;
/// XDP verdict: drop.
pub const XDP_DROP: u32 = 1;
/// XDP verdict: pass.
pub const XDP_PASS: u32 = 2;

/// The policy map (tree roots) of the ELF.
pub const POLICY_MAP: &str = "POLICY_V4";
/// The array of non-root policy tree nodes of the ELF.
pub const POLICY_NODES_MAP: &str = "POLICY_NODES";

/// What [`Dataplane::allow`] granted one (slot, table, peer): per protocol
/// (`PROTO_ANY` included) the allowed ports, each `lo → hi`.
type Grants = BTreeMap<(u8, u32, u32), BTreeMap<u8, BTreeMap<u16, u16>>>;

/// The loaded ELF.
pub struct Dataplane {
    ebpf: Ebpf,
    written: Vec<(u32, IdentityKey)>,
    /// Policy trees written, as the compiler numbers them (all slots).
    trees: BTreeMap<PolicyNodeKey, PolicyNode>,
    /// Per slot: what the maps hold of `trees` (placed).
    placed: [PolicyLayout; 2],
    grants: Grants,
    /// CONFIG's mode flags (`CONFIG_F_*`), written with every revision.
    flags: u64,
}

impl Dataplane {
    /// Loads the ELF and its programs (`deliver` in DELIVER); `None` when the test must skip
    /// (see [`privileged_ebpf_elf`]).
    pub fn load() -> Option<Self> {
        let elf = privileged_ebpf_elf()?;
        Some(Self::load_file(&elf).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Loads the ELF at `elf` and its programs (needs root; used by
    /// the benchmarks, which find the ELF themselves).
    pub fn load_file(elf: &Path) -> Result<Self, String> {
        let mut ebpf =
            Ebpf::load_file(elf).map_err(|e| format!("loading {}: {e:?}", elf.display()))?;
        for name in [
            "from_pod",
            "to_pod",
            "deliver",
            "to_backend",
            "leave_node",
            "open_from_pod",
            "open_to_pod",
        ] {
            // An ELF of ABI 8 and earlier (a benchmark's baseline) has
            // none of the last four.
            if OPTIONAL_PROGRAMS.contains(&name) && ebpf.program(name).is_none() {
                continue;
            }
            let p: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| format!("the ELF has no {name}"))?
                .try_into()
                .map_err(|e| format!("{name} is not a classifier: {e:?}"))?;
            p.load()
                .map_err(|e| format!("verifier rejected {name}: {e:?}"))?;
        }
        let x: &mut Xdp = ebpf
            .program_mut("xdp_prefilter")
            .ok_or("the ELF has no xdp_prefilter")?
            .try_into()
            .map_err(|e| format!("xdp_prefilter is not an XDP program: {e:?}"))?;
        x.load()
            .map_err(|e| format!("verifier rejected xdp_prefilter: {e:?}"))?;
        // Host routing's tail call (used only with CONFIG_F_HOST_ROUTING).
        let fd = ebpf
            .program("deliver")
            .ok_or("the ELF has no deliver")?
            .fd()
            .map_err(|e| format!("deliver: {e:?}"))?
            .try_clone()
            .map_err(|e| format!("deliver: {e}"))?;
        let mut array: aya::maps::ProgramArray<&mut MapData> =
            aya::maps::ProgramArray::try_from(ebpf.map_mut("DELIVER").ok_or("no DELIVER map")?)
                .map_err(|e| format!("DELIVER: {e:?}"))?;
        array
            .set(0, &fd, 0)
            .map_err(|e| format!("DELIVER: {e:?}"))?;
        // The TC programs' tail calls (see the eBPF crate's `TAIL_*`;
        // none before ABI 9).
        let tails = if ebpf.map("TAILS").is_some() {
            &["to_backend", "open_from_pod", "open_to_pod", "to_pod"][..]
        } else {
            &[][..]
        };
        for (index, name) in (0u32..).zip(tails.iter().copied()) {
            let fd = ebpf
                .program(name)
                .ok_or_else(|| format!("the ELF has no {name}"))?
                .fd()
                .map_err(|e| format!("{name}: {e:?}"))?
                .try_clone()
                .map_err(|e| format!("{name}: {e}"))?;
            let mut array: aya::maps::ProgramArray<&mut MapData> =
                aya::maps::ProgramArray::try_from(ebpf.map_mut("TAILS").ok_or("no TAILS map")?)
                    .map_err(|e| format!("TAILS: {e:?}"))?;
            array
                .set(index, &fd, 0)
                .map_err(|e| format!("TAILS: {e:?}"))?;
        }
        Ok(Self {
            ebpf,
            written: Vec::new(),
            trees: BTreeMap::new(),
            placed: Default::default(),
            grants: Grants::new(),
            flags: 0,
        })
    }

    /// The raw `Ebpf` (maps and programs by name).
    pub fn ebpf(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    fn identities(&mut self) -> LpmTrie<&mut MapData, IdentityKey, IdentityValue> {
        LpmTrie::try_from(self.ebpf.map_mut("IDENTITIES").expect("IDENTITIES")).unwrap()
    }

    /// IDENTITIES_EXACT, for an entry of prefix length `len` that goes
    /// there: a full address, and an ELF of ABI v11 or later (the
    /// benchmark's `--baseline-elf` may load an older one, whose trie holds
    /// every entry).
    fn identities_exact(
        &mut self,
        len: u32,
    ) -> Option<HashMap<&mut MapData, IdentityKey, IdentityValue>> {
        let map = self.ebpf.map_mut(IDENTITIES_EXACT_MAP)?;
        identity_is_exact(len).then(|| HashMap::try_from(map).unwrap())
    }

    /// Writes one identity entry where the agent's maps put it: full
    /// addresses into IDENTITIES_EXACT, prefixes into the IDENTITIES trie.
    fn put_identity(&mut self, len: u32, key: IdentityKey, value: IdentityValue) {
        match self.identities_exact(len) {
            Some(mut exact) => exact.insert(key, value, 0),
            None => self.identities().insert(&Key::new(len, key), value, 0),
        }
        .expect("identity insert");
        self.written.push((len, key));
    }

    /// Removes one identity entry [`Self::put_identity`] wrote.
    fn remove_identity(&mut self, len: u32, key: IdentityKey) -> Result<(), MapError> {
        match self.identities_exact(len) {
            Some(mut exact) => exact.remove(&key),
            None => self.identities().remove(&Key::new(len, key)),
        }
    }

    fn policy(&mut self) -> HashMap<&mut MapData, PolicyNodeKey, PolicyNode> {
        HashMap::try_from(self.ebpf.map_mut(POLICY_MAP).expect(POLICY_MAP)).unwrap()
    }

    fn policy_nodes(&mut self) -> Array<&mut MapData, PolicyNode> {
        Array::try_from(self.ebpf.map_mut(POLICY_NODES_MAP).expect(POLICY_NODES_MAP)).unwrap()
    }

    /// Writes `slot`'s trees (from `trees`) into the maps as the agent
    /// would place them: roots in POLICY_V4, other nodes in POLICY_NODES;
    /// only what changed since the last placement, stale roots deleted and
    /// stale nodes zeroed.
    fn place(&mut self, slot: u8) {
        let mine: Vec<(PolicyNodeKey, PolicyNode)> = self
            .trees
            .iter()
            .filter(|(k, _)| k.slot == slot)
            .map(|(k, v)| (*k, *v))
            .collect();
        let want = place_policy(&mine);
        let have = std::mem::take(&mut self.placed[slot as usize]);
        let have_roots: BTreeMap<PolicyNodeKey, PolicyNode> = have.roots.iter().copied().collect();
        let want_roots: BTreeMap<PolicyNodeKey, PolicyNode> = want.roots.iter().copied().collect();
        for key in have_roots.keys() {
            if !want_roots.contains_key(key) {
                self.policy().remove(key).expect("POLICY_V4 delete");
            }
        }
        for (key, value) in &want_roots {
            if have_roots.get(key) != Some(value) {
                self.policy()
                    .insert(key, value, 0)
                    .expect("POLICY_V4 insert");
            }
        }
        let zero = PolicyNode {
            count: 0,
            kind: 0,
            _pad: [0; 2],
            _reserved: 0,
            ranges: [Default::default(); bulkhead_common::POLICY_FANOUT],
        };
        for i in 0..want.nodes.len().max(have.nodes.len()) {
            let value = want.nodes.get(i).copied().unwrap_or(zero);
            if have.nodes.get(i).copied().unwrap_or(zero) != value {
                self.policy_nodes()
                    .set(policy_node_index(slot, i as u32), value, 0)
                    .expect("POLICY_NODES write");
            }
        }
        self.placed[slot as usize] = want;
    }

    fn endpoints(&mut self) -> HashMap<&mut MapData, EndpointKey, EndpointInfo> {
        HashMap::try_from(self.ebpf.map_mut(ENDPOINTS_MAP).expect(ENDPOINTS_MAP)).unwrap()
    }

    fn ct(&mut self) -> HashMap<&mut MapData, CtKey, CtEntry> {
        HashMap::try_from(self.ebpf.map_mut("CT").expect("CT")).unwrap()
    }

    /// Sets CONFIG's mode flags (`CONFIG_F_*`), keeping the revision.
    pub fn set_flags(&mut self, flags: u64) {
        self.flags = flags;
        let config: Array<&mut MapData, Config> =
            Array::try_from(self.ebpf.map_mut("CONFIG").expect("CONFIG")).unwrap();
        let revision = config.get(&0, 0).unwrap().revision;
        self.set_revision(revision);
    }

    /// Sets the policy revision (the switch between slots).
    pub fn set_revision(&mut self, revision: u64) {
        let flags = self.flags;
        let mut config: Array<&mut MapData, Config> =
            Array::try_from(self.ebpf.map_mut("CONFIG").expect("CONFIG")).unwrap();
        config.set(0, Config { revision, flags }, 0).unwrap();
    }

    /// Writes the identities and policy of `image` (into its slot) and
    /// remembers them for [`Self::clear_image`].
    pub fn write_image(&mut self, image: &MapImage) {
        for &(len, key, value) in &image.identities {
            self.put_identity(len, key, value);
        }
        self.trees.extend(image.policy.iter().copied());
        self.place(image.slot);
    }

    /// Removes everything [`Self::write_image`] and the `add_*` helpers wrote.
    pub fn clear_image(&mut self) {
        let mut identities = std::mem::take(&mut self.written);
        identities.sort_unstable();
        identities.dedup();
        for (len, key) in identities {
            self.remove_identity(len, key).unwrap();
        }
        self.trees.clear();
        self.place(0);
        self.place(1);
        self.grants.clear();
    }

    /// Removes what was written into `slot` (keeps the other slot).
    pub fn clear_slot(&mut self, slot: u8) {
        let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.written)
            .into_iter()
            .partition(|(_, k)| k.slot == slot);
        self.written = keep;
        self.trees.retain(|k, _| k.slot != slot);
        self.place(slot);
        self.grants.retain(|&(s, _, _), _| s != slot);
        for (len, key) in gone {
            let _ = self.remove_identity(len, key);
        }
    }

    /// Maps the prefix `net` to `identity` in `slot`.
    pub fn add_identity(&mut self, slot: u8, net: IpNetwork, identity: u32) {
        self.add_identity_flagged(slot, net, identity, 0);
    }

    /// Maps the prefix `net` to `identity` with `IDENTITY_F_*` `flags`.
    pub fn add_identity_flagged(&mut self, slot: u8, net: IpNetwork, identity: u32, flags: u32) {
        let (len, key) = identity_key(slot, net);
        self.put_identity(len, key, IdentityValue { identity, flags });
    }

    /// Allows `peer` (or `IDENTITY_ANY`) in `table` of `slot`: any protocol
    /// when `proto` is `PROTO_ANY`, else any port (`None`) or one port. The
    /// deciding rule is `100 + table`. Rewrites that peer's policy tree
    /// from everything allowed to it so far (as the compiler would).
    pub fn allow(&mut self, slot: u8, table: u32, peer: u32, proto: u8, port: Option<u16>) {
        let (lo, hi) = match (proto, port) {
            (PROTO_ANY, _) | (_, None) => (0, u16::MAX),
            (_, Some(p)) => (p, p),
        };
        let grants = self.grants.entry((slot, table, peer)).or_default();
        let end = grants.entry(proto).or_default().entry(lo).or_insert(hi);
        *end = (*end).max(hi);
        // Overlapping grants merged into disjoint segments (one rule).
        let rule = 100 + table;
        let groups: Vec<(u8, Vec<Segment>)> = grants
            .iter()
            .map(|(&proto, ports)| {
                let mut segs: Vec<Segment> = Vec::new();
                for (&lo, &hi) in ports {
                    match segs.last_mut() {
                        Some(last) if u32::from(lo) <= u32::from(last.hi) + 1 => {
                            last.hi = last.hi.max(hi)
                        }
                        _ => segs.push(Segment::allow(lo, hi, vec![rule])),
                    }
                }
                (proto, segs)
            })
            .collect();
        let groups: Vec<(u8, &[Segment])> =
            groups.iter().map(|(p, s)| (*p, s.as_slice())).collect();
        let entries = policy_tree(slot, table, peer, &peer_ranges(&groups));
        self.trees
            .retain(|k, _| (k.slot, k.table, k.identity) != (slot, table, peer));
        self.trees.extend(entries);
        self.place(slot);
    }

    /// Makes `info` the endpoint that test runs see in `slot`.
    pub fn set_endpoint(&mut self, slot: u8, info: EndpointInfo) {
        self.endpoints()
            .insert(EndpointKey::new(LO_IFINDEX, slot), info, 0)
            .unwrap();
    }

    /// Makes `info` the endpoint of device `ifindex` in `slot` (host
    /// routing: the source's and the destination's host veths).
    pub fn set_endpoint_on(&mut self, ifindex: u32, slot: u8, info: EndpointInfo) {
        self.endpoints()
            .insert(EndpointKey::new(ifindex, slot), info, 0)
            .unwrap();
    }

    /// Removes the endpoint of device `ifindex` in `slot`.
    pub fn remove_endpoint_on(&mut self, ifindex: u32, slot: u8) {
        let _ = self.endpoints().remove(&EndpointKey::new(ifindex, slot));
    }

    /// Runs `from_pod` on `frame` as received on device `ifindex` of the
    /// calling thread's network namespace (the test run's `__sk_buff`
    /// names it); returns the verdict and the frame as the program left
    /// it (host routing rewrites it before a redirect).
    pub fn from_pod_on(&mut self, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        // `struct __sk_buff` up to `ifindex` (offset 40) and the padding
        // after it; the kernel zero-fills the rest.
        let mut ctx = [0u8; 48];
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + 64];
        let p: &mut SchedClassifier = self
            .ebpf
            .program_mut("from_pod")
            .unwrap()
            .try_into()
            .unwrap();
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        };
        let r = p
            .test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN from_pod on {ifindex}: {e:?}"));
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    /// Removes the test-run endpoint of `slot` (the device is then unknown).
    pub fn remove_endpoint(&mut self, slot: u8) {
        let _ = self.endpoints().remove(&EndpointKey::new(LO_IFINDEX, slot));
    }

    fn run_tc(&mut self, name: &str, frame: &[u8]) -> u32 {
        let p: &mut SchedClassifier = self.ebpf.program_mut(name).unwrap().try_into().unwrap();
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        };
        p.test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN {name}: {e:?}"))
            .return_value
    }

    /// Runs `name` (`from_pod` or `to_pod`) `repeat` times on `frame` in
    /// one `BPF_PROG_TEST_RUN`: the verdict of the last run.
    pub fn run_tc_repeat(&mut self, name: &str, frame: &[u8], repeat: u32) -> u32 {
        let p: &mut SchedClassifier = self.ebpf.program_mut(name).unwrap().try_into().unwrap();
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        };
        p.test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN {name}: {e:?}"))
            .return_value
    }

    /// Takes the flow maps out of the ELF (once) as a [`FlowTap`].
    pub fn flow_tap(&mut self) -> FlowTap {
        self.try_flow_tap()
            .expect("the ELF has no flow maps (ABI v5), or they were taken")
    }

    /// Takes the flow maps out of the ELF (once) as a [`FlowTap`]; `None`
    /// when the ELF has none (built before ABI v5) or they were taken.
    pub fn try_flow_tap(&mut self) -> Option<FlowTap> {
        let names = ["FLOWS_0", "FLOWS_1", "FLOW_CONFIG", "FLOW_STATS", "EVENTS"];
        if !names.iter().all(|n| self.ebpf.map(n).is_some()) {
            return None;
        }
        let mut take = |name: &str| self.ebpf.take_map(name).expect("checked above");
        let maps = FlowMaps {
            flows_0: take(names[0]),
            flows_1: take(names[1]),
            config: take(names[2]),
            stats: take(names[3]),
            events: take(names[4]),
            service_ct: self.ebpf.take_map("SERVICE_CT"),
        };
        Some(FlowTap::from_maps(maps).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Runs `from_pod` on `frame`: [`PASS`] or [`DROP`].
    pub fn from_pod(&mut self, frame: &[u8]) -> u32 {
        self.run_tc("from_pod", frame)
    }

    /// Runs `to_pod` on `frame`: [`PASS`] or [`DROP`].
    pub fn to_pod(&mut self, frame: &[u8]) -> u32 {
        self.run_tc("to_pod", frame)
    }

    /// Runs `xdp_prefilter` on `frame`: [`XDP_PASS`] or [`XDP_DROP`].
    pub fn xdp(&mut self, frame: &[u8]) -> u32 {
        let p: &mut Xdp = self
            .ebpf
            .program_mut("xdp_prefilter")
            .unwrap()
            .try_into()
            .unwrap();
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        };
        p.test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN xdp_prefilter: {e:?}"))
            .return_value
    }

    /// The drop counter of `reason`, summed over CPUs.
    pub fn drops(&mut self, reason: DropReason) -> u64 {
        let drops: PerCpuArray<&mut MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map_mut("DROPS").expect("DROPS")).unwrap();
        drops.get(&(reason as u32), 0).unwrap().iter().sum()
    }

    /// The CT entry of an original-direction tuple.
    pub fn ct_get(&mut self, key: &CtKey) -> Option<CtEntry> {
        self.ct().get(key, 0).ok()
    }

    /// Removes the CT entry of an original-direction tuple, if any.
    pub fn ct_remove(&mut self, key: &CtKey) {
        let _ = self.ct().remove(key);
    }

    /// Number of CT entries.
    pub fn ct_len(&mut self) -> usize {
        self.ct().keys().count()
    }

    /// Empties CT.
    pub fn ct_clear(&mut self) {
        let keys: Vec<CtKey> = self.ct().keys().map(|k| k.unwrap()).collect();
        for k in keys {
            let _ = self.ct().remove(&k);
        }
    }

    /// Number of FRAGS entries.
    pub fn frags_len(&mut self) -> usize {
        let frags: HashMap<&mut MapData, FragKey, FragEntry> =
            HashMap::try_from(self.ebpf.map_mut("FRAGS").expect("FRAGS")).unwrap();
        frags.keys().count()
    }
}

/// An endpoint value for a pod with these addresses and MAC, isolated for
/// ingress with `ingress` and for egress with `egress` when `Some`.
pub fn endpoint(
    addrs: &[IpAddr],
    mac: [u8; 6],
    ingress: Option<u32>,
    egress: Option<u32>,
) -> EndpointInfo {
    let mut info = EndpointInfo {
        ingress_table: ingress.unwrap_or(0),
        egress_table: egress.unwrap_or(0),
        flags: ENDPOINT_HAS_MAC,
        _reserved: 0,
        mac,
        _pad: [0; 2],
        ipv4: [0; 16],
        ipv6: [0; 16],
        audit_ingress_table: 0,
        audit_egress_table: 0,
    };
    if ingress.is_some() {
        info.flags |= ENDPOINT_ISOLATED_INGRESS;
    }
    if egress.is_some() {
        info.flags |= ENDPOINT_ISOLATED_EGRESS;
    }
    for &a in addrs {
        if a.is_ipv4() {
            info.ipv4 = abi_addr(a);
            info.flags |= ENDPOINT_HAS_IPV4;
        } else {
            info.ipv6 = abi_addr(a);
            info.flags |= ENDPOINT_HAS_IPV6;
        }
    }
    info
}

/// The CT key of a packet from `src` to `dst` with ports as `CtKey` defines.
pub fn ct_key(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> CtKey {
    CtKey {
        src: abi_addr(src),
        dst: abi_addr(dst),
        sport,
        dport,
        proto,
        _pad: [0; 3],
    }
}

/// The two-pod fixture the program tests share: pod A and pod B with their
/// MACs, identities, an external identity, and rule table numbers.
pub mod fixture {
    use std::net::IpAddr;

    /// Parses an address literal.
    pub fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Pod A's MAC.
    pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
    /// Pod B's MAC.
    pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
    /// Pod A's identity.
    pub const ID_A: u32 = 1;
    /// Pod B's identity.
    pub const ID_B: u32 = 2;
    /// The external addresses' identity.
    pub const ID_EXT: u32 = 3;
    /// Pod A's ingress table.
    pub const A_IN: u32 = 1;
    /// Pod A's egress table.
    pub const A_EG: u32 = 2;
    /// Pod B's ingress table.
    pub const B_IN: u32 = 3;
    /// Pod B's egress table.
    pub const B_EG: u32 = 4;
}

/// The `FLOW_F_AUDITED` / `FLOW_F_AUDIT_DENY` bits a CT entry holds for a
/// side whose audit verdict the evaluator gives as `side` (`None`: no
/// audit view; `Some(allowed)`).
pub fn audit_bits(side: Option<bool>) -> u8 {
    match side {
        None => 0,
        Some(true) => bulkhead_common::FLOW_F_AUDITED,
        Some(false) => bulkhead_common::FLOW_F_AUDITED | bulkhead_common::FLOW_F_AUDIT_DENY,
    }
}
