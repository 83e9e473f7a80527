//! The programs' own cost on the comparison's allow-list, by
//! `BPF_PROG_TEST_RUN`: the established flood flow through `from_pod`
//! (leaving the client) and `to_pod` (entering the server, whose ingress
//! holds the N entries), flow accounting on. The report subtracts it from
//! what the veth path costs with Bulkhead attached.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, ensure};
use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use bulkhead_common::{FLOW_CONFIG_ACCOUNTING, FLOW_CONFIG_EVENTS_DROP, FLOW_CONFIG_EVENTS_NEW};
use bulkhead_netns_tests::dataplane::{Dataplane, PASS};
use bulkhead_netns_tests::packet::{L4, frame};
use bulkhead_policy::compile::compile;

use super::allowlist::{self, FLOOD_PORT};
use crate::dataplane::netns::{CLIENT_IP, SERVER_IP};

/// Runs per `BPF_PROG_TEST_RUN`.
const REPEAT: u32 = 200_000;
/// Source port of the measured flow.
const SPORT: u16 = 40000;

/// Established-path ns per run of (`from_pod`, `to_pod`) with `entries`
/// allowed; the median of `samples` runs of [`REPEAT`] each.
pub fn established(elf: &Path, entries: &[allowlist::Entry], samples: usize) -> Result<(f64, f64)> {
    let mut dp = Dataplane::load_file(elf).map_err(|e| anyhow!(e))?;
    let model = allowlist::model(entries);
    let image = compile(&model).map_image(0);
    image.check_fits()?;
    dp.write_image(&image);
    dp.set_revision(0);
    let mut tap = dp.flow_tap();
    tap.set_config(FLOW_CONFIG_ACCOUNTING | FLOW_CONFIG_EVENTS_NEW | FLOW_CONFIG_EVENTS_DROP)?;
    let endpoint = |name: &str| {
        let (pod, _) = model
            .pod(&format!("{}/{name}", allowlist::NAMESPACE))
            .context("allow-list pod")?;
        image
            .endpoints
            .iter()
            .find(|(p, _)| *p == pod)
            .map(|(_, info)| *info)
            .context("endpoint of the image")
    };
    let (client, server) = (endpoint("client")?, endpoint("server")?);
    let pkt = frame(
        client.mac,
        IpAddr::V4(CLIENT_IP),
        IpAddr::V4(SERVER_IP),
        L4::Udp {
            sport: SPORT,
            dport: FLOOD_PORT,
        },
    );
    let mut cost = |name: &str, info| -> Result<f64> {
        dp.set_endpoint(0, info);
        // The first run creates the CT entry: every later one is established.
        ensure!(
            dp.run_tc_repeat(name, &pkt, 1) == PASS,
            "{name} drops the allowed flow"
        );
        let mut ns: Vec<f64> = (0..samples.max(1))
            .map(|_| run(&mut dp, name, &pkt))
            .collect::<Result<_>>()?;
        ns.sort_by(f64::total_cmp);
        Ok(ns[ns.len() / 2])
    };
    let from = cost("from_pod", client)?;
    let to = cost("to_pod", server)?;
    dp.remove_endpoint(0);
    Ok((from, to))
}

/// Mean ns per run of `REPEAT` runs of `name` on `pkt`.
fn run(dp: &mut Dataplane, name: &str, pkt: &[u8]) -> Result<f64> {
    let p: &mut SchedClassifier = dp
        .ebpf()
        .program_mut(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()?;
    let r = p
        .test_run(TestRunOptions {
            data_in: Some(pkt),
            repeat: REPEAT,
            ..TestRunOptions::default()
        })
        .with_context(|| format!("BPF_PROG_TEST_RUN {name}"))?;
    ensure!(
        r.return_value == PASS,
        "{name} dropped the established flow"
    );
    Ok(r.duration.as_nanos() as f64)
}
