//! Deltas on the agent's own pinned maps: a sequence of policies made live
//! by `Dataplane::apply_delta` (the change only, into the inactive slot,
//! no read-back), and after each switch the kernel's verdicts
//! (`BPF_PROG_TEST_RUN` of the pinned `from_pod` and `to_pod`) equal the
//! reference evaluator's, and the active slot read back from the kernel
//! equals the image the syncer keeps. The models: random ones losing a
//! policy or a pod or replaced step by step, and a policy whose port list
//! grows past one policy tree node (to three levels) and shrinks; and the
//! incremental compiler's own deltas over random pod and policy changes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use bulkhead_common::active_slot;
use bulkhead_dataplane::slotcache::node_image;
use bulkhead_dataplane::{Dataplane as Agent, ImageDelta, NodeImage, PinDir, SlotMaps, TcMode};
use bulkhead_netns_tests::{
    dataplane::{LO_IFINDEX, PASS},
    packet::frame,
    privileged_ebpf_elf,
    probe::Probe,
};
use bulkhead_policy::compile::incremental::{Change, Incremental, LocalPod, Outcome, full_image};
use bulkhead_policy::compile::{Compiled, compile};
use bulkhead_policy::model::Model;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::load_dir;
use bulkhead_testkit::{Rng, probe_addresses, random_model, random_tiered_model};

/// A frame's source MAC (no endpoint of these images checks one).
const MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
/// ifindex of pod `i` in the images (never [`LO_IFINDEX`]).
const IFINDEX_BASE: u32 = 100;

/// A private bpffs, unmounted on drop.
struct Bpffs(tempfile::TempDir);

impl Bpffs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        nix::mount::mount(
            Some("bpf"),
            dir.path(),
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .expect("mount a private bpffs");
        Self(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The agent's dataplane on a private bpffs, and its pinned TC programs.
struct Kernel {
    agent: Agent,
    from_pod: SchedClassifier,
    to_pod: SchedClassifier,
    switches: usize,
    _bpffs: Bpffs,
}

impl Kernel {
    fn open(elf: &Path) -> Self {
        let bpffs = Bpffs::mount();
        let pins = PinDir::prepare(&bpffs.0.path().join("bulkhead")).unwrap();
        let elf = std::fs::read(elf).unwrap();
        let (agent, _) =
            Agent::open(pins.clone(), Some(&elf), Duration::ZERO, TcMode::Auto).unwrap();
        let prog = |name| SchedClassifier::from_pin(pins.prog(name)).unwrap();
        Self {
            from_pod: prog("from_pod"),
            to_pod: prog("to_pod"),
            agent,
            switches: 0,
            _bpffs: bpffs,
        }
    }

    /// Applies `delta`; the kernel's active slot then reads back as the
    /// syncer's image.
    fn apply(&mut self, delta: &ImageDelta) {
        self.agent.apply_delta(delta).unwrap();
        self.switches += 1;
    }

    /// The kernel's active slot equals `want` (one full read-back).
    fn assert_active(&mut self, want: &NodeImage, what: &str) {
        let maps = self.agent.maps();
        let slot = active_slot(maps.revision().unwrap());
        let read = node_image(&maps.read_slot(slot).unwrap());
        assert!(read == *want, "{what}: the kernel's slot {slot} differs");
        assert_eq!(self.agent.active_image().unwrap(), want, "{what}");
    }

    /// Makes `info` (an endpoint of the active image) the endpoint of the
    /// test-run device.
    fn test_endpoint(&mut self, info: bulkhead_common::EndpointInfo) {
        let mut d = ImageDelta::default();
        d.endpoints.insert(LO_IFINDEX, Some(info));
        self.apply(&d);
    }

    fn run(&self, from: bool, pkt: &[u8]) -> u32 {
        let p = if from { &self.from_pod } else { &self.to_pod };
        p.test_run(TestRunOptions {
            data_in: Some(pkt),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN")
        .return_value
    }
}

/// The node image of `c`: every pod local, pod `i` at `IFINDEX_BASE + i`.
fn image_of(c: &Compiled, pods: usize) -> NodeImage {
    let local: Vec<(usize, u32)> = (0..pods).map(|i| (i, IFINDEX_BASE + i as u32)).collect();
    c.node_image(&local, &BTreeMap::new()).0
}

/// Makes `m` live by a delta from the active image, then checks `probes`
/// random probes between `addrs` (and `extra`, each (src, dst, kind,
/// port)) against the evaluator.
#[allow(clippy::too_many_arguments)]
fn step(
    k: &mut Kernel,
    m: &Model,
    r: &mut Rng,
    probes: usize,
    extra: &[(IpAddr, IpAddr, usize, u16)],
    sport: &mut u16,
    what: &str,
) -> usize {
    let c = compile(m);
    let want = image_of(&c, m.pods.len());
    let delta = k.agent.active_image().unwrap().diff(&want);
    k.apply(&delta);
    k.assert_active(&want, what);
    let ifindex = |p: usize| Some(IFINDEX_BASE + p as u32);
    check_probes(k, (m, &c, &want), &ifindex, r, probes, extra, sport, what)
}

/// Checks `probes` random probes between the addresses of `m` (compiled
/// to `c`, whose image `want` is live; pod `p`'s endpoint at `ifindex(p)`,
/// `None` if not local: not probed), and `extra`, against the evaluator.
#[allow(clippy::too_many_arguments)]
fn check_probes(
    k: &mut Kernel,
    (m, c, want): (&Model, &Compiled, &NodeImage),
    ifindex: &dyn Fn(usize) -> Option<u32>,
    r: &mut Rng,
    probes: usize,
    extra: &[(IpAddr, IpAddr, usize, u16)],
    sport: &mut u16,
    what: &str,
) -> usize {
    let addrs = probe_addresses(m, c);
    let mut cases: Vec<(IpAddr, IpAddr, usize, u16)> = extra.to_vec();
    for _ in 0..probes {
        let (src, dst) = (*r.pick(&addrs), *r.pick(&addrs));
        cases.push((src, dst, r.below(4), 76 + r.below(12) as u16));
    }
    let mut checked = 0;
    for (src, dst, kind, dport) in cases {
        let (sp, dp) = (c.pod_of(src), c.pod_of(dst));
        let local = |p: Option<usize>| p.is_none_or(|p| ifindex(p).is_some());
        if src == dst
            || src.is_ipv4() != dst.is_ipv4()
            || (sp.is_none() && dp.is_none())
            || !local(sp)
            || !local(dp)
        {
            continue;
        }
        *sport = sport.checked_add(1).expect("fewer than 64k probes");
        let probe = Probe::new(c, src, dst, kind, *sport, dport);
        let ctx = format!("{what}: {}", probe.describe(0));
        let pkt = frame(MAC, src, dst, probe.l4);
        let mut pass = true;
        if let Some(p) = sp.and_then(ifindex) {
            k.test_endpoint(want.endpoints[&p]);
            pass = k.run(true, &pkt) == PASS;
            assert_eq!(pass, probe.verdict.egress.allows(), "from_pod: {ctx}");
        }
        if pass && let Some(d) = dp.and_then(ifindex) {
            k.test_endpoint(want.endpoints[&d]);
            pass = k.run(false, &pkt) == PASS;
        }
        assert_eq!(pass, probe.want, "kernel vs evaluator: {ctx}");
        checked += 1;
    }
    // Back to the image without the test-run endpoint.
    let mut d = ImageDelta::default();
    d.endpoints.insert(LO_IFINDEX, None);
    k.apply(&d);
    k.assert_active(want, what);
    checked
}

#[test]
fn random_models_changed_by_deltas_are_enforced_as_evaluated() {
    let Some(elf) = privileged_ebpf_elf() else {
        return;
    };
    let mut k = Kernel::open(&elf);
    let mut sport = 1024u16;
    let mut checked = 0;
    for seed in 0..12u64 {
        let mut r = Rng(seed * 104_729 + 3);
        let mut m = if seed % 3 == 2 {
            random_tiered_model(&mut r)
        } else {
            random_model(&mut r)
        };
        for change in 0..5 {
            let what = format!("seed {seed} change {change}");
            checked += step(&mut k, &m, &mut r, 25, &[], &mut sport, &what);
            match r.below(3) {
                0 if !m.policies.is_empty() => {
                    let i = r.below(m.policies.len());
                    m.policies.remove(i);
                }
                1 if m.pods.len() > 2 => {
                    let i = r.below(m.pods.len());
                    m.pods.remove(i);
                }
                _ => {
                    // Another model's policies over these pods.
                    let other = random_model(&mut r);
                    m.policies = other.policies;
                }
            }
        }
    }
    eprintln!(
        "{checked} probes checked over {} switches (deltas)",
        k.switches
    );
    assert!(checked > 300, "{checked} probes");
}

fn yaml_model(ports: usize, pods: usize) -> Model {
    let mut y = String::new();
    for i in 0..pods {
        y += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: x, labels: {{app: p{i}}}}}\n\
             status: {{podIP: 10.1.0.{}}}\n",
            i + 1
        );
    }
    if ports > 0 {
        let list: Vec<String> = (0..ports)
            .map(|i| format!("{{port: {}}}", 1000 + 2 * i))
            .collect();
        y += &format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {{name: many, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{app: p0}}}}\n  \
             ingress: [{{from: [{{podSelector: {{matchLabels: {{app: p1}}}}}}], ports: [{}]}}]\n",
            list.join(", ")
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yaml"), y).unwrap();
    load_dir(dir.path(), &AddressPlan::default()).unwrap()
}

#[test]
fn a_policy_tree_growing_past_one_node_and_shrinking_is_enforced_as_evaluated() {
    let Some(elf) = privileged_ebpf_elf() else {
        return;
    };
    let mut k = Kernel::open(&elf);
    let mut sport = 1024u16;
    let mut r = Rng(77);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (p0, p1, p2) = (ip("10.1.0.1"), ip("10.1.0.2"), ip("10.1.0.3"));
    for (ports, pods) in [
        (3, 3),
        (40, 3),
        (300, 4),
        (300, 2),
        (20, 3),
        (600, 3),
        (0, 3),
    ] {
        let m = yaml_model(ports, pods);
        // Granted ports, the gaps between them, and past the last.
        let mut extra = Vec::new();
        for i in [0, 1, 15, 16, 17, 39, 40, 255, 256, 257, 299, 300, 599, 600] {
            for (src, dport) in [(p1, 1000 + 2 * i), (p1, 1001 + 2 * i), (p2, 1000 + 2 * i)] {
                extra.push((src, p0, 0, dport as u16));
            }
        }
        let what = format!("{ports} ports, {pods} pods");
        let nodes = image_of(&compile(&m), pods).counts().nodes;
        assert_eq!(
            nodes > 0,
            ports > 16,
            "{what}: {nodes} POLICY_NODES entries"
        );
        step(&mut k, &m, &mut r, 10, &extra, &mut sport, &what);
    }
}

/// One random change for the incremental compiler: a replica of a pod
/// arriving (local, on a new veth), a pod leaving, or a policy getting
/// one of the model's rules appended or its last rule dropped.
fn incremental_change(r: &mut Rng, inc: &mut Incremental, k: &mut u8) -> Outcome {
    let pods = inc.model().pods.clone();
    let policies = inc.model().policies.clone();
    *k += 1;
    match r.below(4) {
        0 | 1 if !pods.is_empty() => {
            let mut pod = r.pick(&pods).clone();
            pod.name = format!("r{k}");
            pod.ips = pod
                .ips
                .iter()
                .map(|a| match a {
                    IpAddr::V4(v4) => {
                        let o = v4.octets();
                        IpAddr::from([o[0], o[1], o[2], 100 + *k])
                    }
                    IpAddr::V6(v6) => {
                        let mut s = v6.segments();
                        s[7] = 0x100 + u16::from(*k);
                        IpAddr::from(s)
                    }
                })
                .collect();
            let key = pod.key();
            let arrived = inc.apply(Change::PodUpsert(pod));
            let mut local = inc.local().clone();
            let ifindex = IFINDEX_BASE + 200 + u32::from(*k);
            local.insert(key, LocalPod { ifindex, mac: None });
            merge(arrived, inc.set_local(local))
        }
        2 if !pods.is_empty() => {
            let pod = r.pick(&pods);
            inc.apply(Change::PodDelete {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            })
        }
        _ if !policies.is_empty() => {
            let mut p = r.pick(&policies).clone();
            let donors: Vec<_> = policies
                .iter()
                .flat_map(|q| q.ingress.clone().unwrap_or_default())
                .collect();
            if let Some(rules) = &mut p.ingress {
                if donors.is_empty() || r.chance(30) {
                    rules.pop();
                } else {
                    rules.push(r.pick(&donors).clone());
                }
            }
            inc.apply(Change::PolicyUpsert(p))
        }
        _ => Outcome::Full,
    }
}

/// Two outcomes in a row as one.
fn merge(a: Outcome, b: Outcome) -> Outcome {
    match (a, b) {
        (Outcome::Delta(mut a), Outcome::Delta(b)) => {
            a.extend(&b);
            Outcome::Delta(a)
        }
        _ => Outcome::Full,
    }
}

/// The incremental compiler's deltas, written by `apply_delta` alone,
/// are enforced as the reference evaluator judges the changed model: after
/// every change the kernel's active slot reads back as the incremental
/// image (which equals the full compile's) and test-run verdicts equal the
/// evaluator's. A full outcome is written as the diff of the images.
#[test]
fn the_incremental_compilers_deltas_are_enforced_as_evaluated() {
    let Some(elf) = privileged_ebpf_elf() else {
        return;
    };
    let mut k = Kernel::open(&elf);
    let (mut sport, mut checked, mut fast) = (1024u16, 0, 0);
    for seed in 0..10u64 {
        let mut r = Rng(seed * 7_919 + 11);
        let m = if seed % 3 == 2 {
            random_tiered_model(&mut r)
        } else {
            random_model(&mut r)
        };
        let local: BTreeMap<String, LocalPod> = m
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let ifindex = IFINDEX_BASE + i as u32;
                (p.key(), LocalPod { ifindex, mac: None })
            })
            .collect();
        let node_ips = m.node_ips.clone();
        let mut inc = Incremental::new(m, node_ips, local);
        // The model's first image, as a full sync would write it.
        let first = k.agent.active_image().unwrap().diff(inc.image());
        k.apply(&first);
        let mut n = 0u8;
        for change in 0..8 {
            let what = format!("seed {seed} change {change}");
            let delta = match incremental_change(&mut r, &mut inc, &mut n) {
                Outcome::Delta(d) => {
                    fast += 1;
                    d
                }
                Outcome::Full => k.agent.active_image().unwrap().diff(inc.image()),
            };
            k.apply(&delta);
            k.assert_active(inc.image(), &what);
            let c = compile(inc.model());
            let want = full_image(inc.model(), &c, inc.local());
            assert!(want == *inc.image(), "{what}: the full compile's image");
            let keys: Vec<String> = inc.model().pods.iter().map(|p| p.key()).collect();
            let ifindex = |p: usize| inc.local().get(&keys[p]).map(|l| l.ifindex);
            checked += check_probes(
                &mut k,
                (inc.model(), &c, &want),
                &ifindex,
                &mut r,
                20,
                &[],
                &mut sport,
                &what,
            );
        }
    }
    eprintln!("{checked} probes checked; {fast} changes on the fast path");
    assert!(checked > 300 && fast > 20, "{checked} probes, {fast} fast");
}
