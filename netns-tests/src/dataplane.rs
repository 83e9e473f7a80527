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

use std::net::IpAddr;

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, lpm_trie::Key},
    programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use bulkhead::compile::maps::{MapImage, abi_addr, identity_key};
use bulkhead_common::{
    Config, CtEntry, CtKey, DropReason, ENDPOINT_HAS_IPV4, ENDPOINT_HAS_IPV6, ENDPOINT_HAS_MAC,
    ENDPOINT_ISOLATED_EGRESS, ENDPOINT_ISOLATED_INGRESS, EndpointInfo, EndpointKey, FragEntry,
    FragKey, IdentityKey, IdentityValue, POLICY_PREFIX_ANY_PROTO, POLICY_PREFIX_FULL,
    POLICY_PREFIX_PROTO, PROTO_ANY, PolicyKey, PolicyValue,
};
use ipnetwork::IpNetwork;

use crate::privileged_ebpf_elf;

/// The device `BPF_PROG_TEST_RUN` runs on (loopback).
pub const LO_IFINDEX: u32 = 1;
/// TC verdict: pass.
pub const PASS: u32 = 0;
/// TC verdict: drop.
pub const DROP: u32 = 2;
/// XDP verdict: drop.
pub const XDP_DROP: u32 = 1;
/// XDP verdict: pass.
pub const XDP_PASS: u32 = 2;

/// The loaded ELF.
pub struct Dataplane {
    ebpf: Ebpf,
    written: Vec<(u32, IdentityKey)>,
    written_policy: Vec<(u32, PolicyKey)>,
}

impl Dataplane {
    /// Loads the ELF and its three programs; `None` when the test must skip
    /// (see [`privileged_ebpf_elf`]).
    pub fn load() -> Option<Self> {
        let elf = privileged_ebpf_elf()?;
        let mut ebpf =
            Ebpf::load_file(&elf).unwrap_or_else(|e| panic!("loading {}: {e:?}", elf.display()));
        for name in ["from_pod", "to_pod"] {
            let p: &mut SchedClassifier = ebpf
                .program_mut(name)
                .unwrap_or_else(|| panic!("the ELF has no {name}"))
                .try_into()
                .expect("a classifier");
            p.load()
                .unwrap_or_else(|e| panic!("verifier rejected {name}: {e:?}"));
        }
        let x: &mut Xdp = ebpf
            .program_mut("xdp_prefilter")
            .expect("the ELF has xdp_prefilter")
            .try_into()
            .expect("an XDP program");
        x.load()
            .unwrap_or_else(|e| panic!("verifier rejected xdp_prefilter: {e:?}"));
        Some(Self {
            ebpf,
            written: Vec::new(),
            written_policy: Vec::new(),
        })
    }

    /// The raw `Ebpf` (maps and programs by name).
    pub fn ebpf(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    fn identities(&mut self) -> LpmTrie<&mut MapData, IdentityKey, IdentityValue> {
        LpmTrie::try_from(self.ebpf.map_mut("IDENTITIES").expect("IDENTITIES")).unwrap()
    }

    fn policy(&mut self) -> LpmTrie<&mut MapData, PolicyKey, PolicyValue> {
        LpmTrie::try_from(self.ebpf.map_mut("POLICY").expect("POLICY")).unwrap()
    }

    fn endpoints(&mut self) -> HashMap<&mut MapData, EndpointKey, EndpointInfo> {
        HashMap::try_from(self.ebpf.map_mut("ENDPOINTS").expect("ENDPOINTS")).unwrap()
    }

    fn ct(&mut self) -> HashMap<&mut MapData, CtKey, CtEntry> {
        HashMap::try_from(self.ebpf.map_mut("CT").expect("CT")).unwrap()
    }

    /// Sets the policy revision (the switch between slots).
    pub fn set_revision(&mut self, revision: u64) {
        let mut config: Array<&mut MapData, Config> =
            Array::try_from(self.ebpf.map_mut("CONFIG").expect("CONFIG")).unwrap();
        config
            .set(
                0,
                Config {
                    revision,
                    _reserved: 0,
                },
                0,
            )
            .unwrap();
    }

    /// Writes the identities and policy of `image` (into its slot) and
    /// remembers them for [`Self::clear_image`].
    pub fn write_image(&mut self, image: &MapImage) {
        for &(len, key, value) in &image.identities {
            self.identities()
                .insert(&Key::new(len, key), value, 0)
                .expect("IDENTITIES insert");
            self.written.push((len, key));
        }
        for &(len, key, value) in &image.policy {
            self.policy()
                .insert(&Key::new(len, key), value, 0)
                .expect("POLICY insert");
            self.written_policy.push((len, key));
        }
    }

    /// Removes everything [`Self::write_image`] and the `add_*` helpers wrote.
    pub fn clear_image(&mut self) {
        let mut identities = std::mem::take(&mut self.written);
        identities.sort_unstable();
        identities.dedup();
        for (len, key) in identities {
            self.identities().remove(&Key::new(len, key)).unwrap();
        }
        let mut policy = std::mem::take(&mut self.written_policy);
        policy.sort_unstable();
        policy.dedup();
        for (len, key) in policy {
            self.policy().remove(&Key::new(len, key)).unwrap();
        }
    }

    /// Removes what was written into `slot` (keeps the other slot).
    pub fn clear_slot(&mut self, slot: u8) {
        let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.written)
            .into_iter()
            .partition(|(_, k)| k.slot == slot);
        self.written = keep;
        let (gone_policy, keep_policy): (Vec<_>, Vec<_>) = std::mem::take(&mut self.written_policy)
            .into_iter()
            .partition(|(_, k)| k.slot == slot);
        self.written_policy = keep_policy;
        for (len, key) in gone {
            let _ = self.identities().remove(&Key::new(len, key));
        }
        for (len, key) in gone_policy {
            let _ = self.policy().remove(&Key::new(len, key));
        }
    }

    /// Maps the prefix `net` to `identity` in `slot`.
    pub fn add_identity(&mut self, slot: u8, net: IpNetwork, identity: u32) {
        let (len, key) = identity_key(slot, net);
        let value = IdentityValue {
            identity,
            _reserved: 0,
        };
        self.identities()
            .insert(&Key::new(len, key), value, 0)
            .unwrap();
        self.written.push((len, key));
    }

    /// Allows `peer` (or `IDENTITY_ANY`) in `table` of `slot`: any protocol
    /// when `proto` is `PROTO_ANY`, else any port (`None`) or one port.
    pub fn allow(&mut self, slot: u8, table: u32, peer: u32, proto: u8, port: Option<u16>) {
        let (len, key) = match (proto, port) {
            (PROTO_ANY, _) => (
                POLICY_PREFIX_ANY_PROTO,
                PolicyKey::new(slot, table, peer, PROTO_ANY, 0),
            ),
            (_, None) => (
                POLICY_PREFIX_PROTO,
                PolicyKey::new(slot, table, peer, proto, 0),
            ),
            (_, Some(p)) => (
                POLICY_PREFIX_FULL,
                PolicyKey::new(slot, table, peer, proto, p),
            ),
        };
        let value = PolicyValue {
            rule: 100 + table,
            _reserved: 0,
        };
        self.policy().insert(&Key::new(len, key), value, 0).unwrap();
        self.written_policy.push((len, key));
    }

    /// Makes `info` the endpoint that test runs see in `slot`.
    pub fn set_endpoint(&mut self, slot: u8, info: EndpointInfo) {
        self.endpoints()
            .insert(EndpointKey::new(LO_IFINDEX, slot), info, 0)
            .unwrap();
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
