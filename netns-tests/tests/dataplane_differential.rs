//! The differential test: for random policies (the compiler's own
//! random model generator) and random packets (IPv4/IPv6 × TCP, UDP, SCTP,
//! ICMP echo), the kernel's verdict through `from_pod` (the source pod's
//! veth) and `to_pod` (the destination pod's veth) equals the reference
//! evaluator's `Compiled::allowed`. Also checked on the way: `xdp_prefilter`
//! drops exactly the new connections the source's egress denies, and the
//! reply of every allowed connection passes both programs by conntrack.
//! Half the models give their policies random modes (enforce, audit,
//! learn): the enforced verdict must then follow the enforce-mode policies
//! only, and the audit verdict each program leaves in the connection's CT
//! entry must equal the evaluator's `Compiled::audit`.

use std::collections::BTreeMap;
use std::time::Instant;

use bulkhead_common::DropReason;
use bulkhead_netns_tests::{
    dataplane::{Dataplane, PASS, XDP_DROP, XDP_PASS, audit_bits},
    packet::frame,
    probe::{Case, Probe},
};

/// MAC of a non-pod sender (only `to_pod` sees its frames).
const EXTERNAL_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];

#[test]
fn kernel_verdicts_equal_the_reference_evaluator() {
    let Some(mut dp) = Dataplane::load() else {
        return;
    };
    dp.set_revision(0);
    let start = Instant::now();
    let mut cases = 0usize;
    let mut allowed = 0usize;
    let mut by_kind: BTreeMap<(bool, &str), (usize, usize)> = BTreeMap::new();
    let mut next_port: u16 = 1024; // fresh CT tuples: every case its own source port / echo id
    let denied_before = dp.drops(DropReason::PolicyDenied);
    let mut kernel_denials = 0u64;
    // Passed cases the audit view allows (and some side has one) / denies.
    let (mut audited, mut would_deny) = (0usize, 0usize);
    let mut xdp_drops = 0u64;
    for seed in 0..800u64 {
        let Case {
            rng: mut r,
            compiled: c,
            image,
            addrs,
        } = Case::new(seed, 7919, 1);
        dp.write_image(&image);
        for _ in 0..30 {
            let src = *r.pick(&addrs);
            let dst = *r.pick(&addrs);
            let (sp, dpod) = (c.pod_of(src), c.pod_of(dst));
            if src == dst || src.is_ipv4() != dst.is_ipv4() || (sp.is_none() && dpod.is_none()) {
                continue;
            }
            let sport = next_port;
            next_port = next_port.checked_add(1).expect("fewer than 64k cases");
            let dport = 76 + r.below(12) as u16;
            let probe = Probe::new(&c, src, dst, r.below(4), sport, dport);
            let described = probe.describe(seed);
            let ctx = || described.as_str();
            let Probe {
                v6,
                l4,
                name,
                want,
                verdict,
                audit,
                tuple,
                ..
            } = probe;

            let src_mac = sp.map_or(EXTERNAL_MAC, |p| image.endpoints[p].1.mac);
            let pkt = frame(src_mac, src, dst, l4);
            let mut pass = true;
            if let Some(p) = sp {
                dp.set_endpoint(0, image.endpoints[p].1);
                let x = dp.xdp(&pkt);
                let want_x = if verdict.egress.allows() {
                    XDP_PASS
                } else {
                    XDP_DROP
                };
                assert_eq!(x, want_x, "xdp_prefilter: {}", ctx());
                xdp_drops += u64::from(x == XDP_DROP);
                pass = dp.from_pod(&pkt) == PASS;
                assert_eq!(pass, verdict.egress.allows(), "from_pod: {}", ctx());
                if pass {
                    let e = dp.ct_get(&tuple).expect("CT entry of a passed packet");
                    assert_eq!(
                        e.audit_egress,
                        audit_bits(audit.egress),
                        "from_pod audit: {}",
                        ctx()
                    );
                }
            }
            if pass && let Some(d) = dpod {
                dp.set_endpoint(0, image.endpoints[d].1);
                pass = dp.to_pod(&pkt) == PASS;
                if pass {
                    let e = dp.ct_get(&tuple).expect("CT entry of a passed packet");
                    assert_eq!(
                        e.audit_ingress,
                        audit_bits(audit.ingress),
                        "to_pod audit: {}",
                        ctx()
                    );
                }
            }
            assert_eq!(pass, want, "kernel vs evaluator: {}", ctx());
            kernel_denials += u64::from(!pass);

            if pass {
                // The reply passes both veths by conntrack, whatever the
                // policy says about the reverse direction.
                let reply_mac = dpod.map_or(EXTERNAL_MAC, |p| image.endpoints[p].1.mac);
                let reply = frame(reply_mac, dst, src, l4.reply());
                if let Some(d) = dpod {
                    dp.set_endpoint(0, image.endpoints[d].1);
                    assert_eq!(dp.xdp(&reply), XDP_PASS, "reply xdp: {}", ctx());
                    assert_eq!(dp.from_pod(&reply), PASS, "reply from_pod: {}", ctx());
                }
                if let Some(s) = sp {
                    dp.set_endpoint(0, image.endpoints[s].1);
                    assert_eq!(dp.to_pod(&reply), PASS, "reply to_pod: {}", ctx());
                }
            }
            cases += 1;
            allowed += usize::from(want);
            let has_audit = audit.egress.is_some() || audit.ingress.is_some();
            audited += usize::from(want && has_audit && !audit.would_deny());
            would_deny += usize::from(want && audit.would_deny());
            let e = by_kind.entry((v6, name)).or_default();
            e.0 += 1;
            e.1 += usize::from(want);
        }
        dp.clear_image();
    }
    dp.remove_endpoint(0);
    let elapsed = start.elapsed();
    eprintln!(
        "differential: {cases} cases ({allowed} allowed) in {:.2} s; by (v6, protocol): {by_kind:?}",
        elapsed.as_secs_f64()
    );
    assert!(cases >= 5000, "only {cases} cases");
    eprintln!(
        "differential: of the passed cases, {audited} audited and allowed, {would_deny} would be denied"
    );
    assert!(
        would_deny >= 100 && audited >= 50,
        "the modes must give passed cases that the audit view allows and denies"
    );
    assert!(
        allowed > cases / 10 && allowed < cases * 9 / 10,
        "{allowed} of {cases} allowed: the generator must produce both answers"
    );
    for v6 in [false, true] {
        for name in ["TCP", "UDP", "SCTP", "ICMP"] {
            let (n, a) = by_kind.get(&(v6, name)).copied().unwrap_or_default();
            assert!(
                n >= 200 && a > 0 && a < n,
                "{name} v6={v6}: {a} of {n} allowed"
            );
        }
    }
    // Every denial was counted once, by the one notify path.
    assert_eq!(
        dp.drops(DropReason::PolicyDenied) - denied_before,
        kernel_denials + xdp_drops,
        "PolicyDenied counter (TC and XDP drops)"
    );
}
