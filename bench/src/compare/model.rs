//! What the comparison benchmark measures and records: contenders,
//! metrics, samples, and the per-cell summaries the report and the plots
//! read. Pure data, no I/O.

use serde::{Deserialize, Serialize};

use crate::run_info::RunInfo;

/// Something that enforces (or does not enforce) the allow-list on the
/// node side of the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// B0: the same veths and routing, nothing attached, no rules.
    Bare,
    /// A TC program that passes everything, on both host-side veths: the
    /// cost of the hook itself.
    HookFloor,
    /// iptables with linear chains, as kube-router and Calico's iptables
    /// mode build them (`iptables-legacy`: x_tables, rule by rule):
    /// conntrack accept of established flows first, then one ACCEPT rule
    /// per allow-list entry, then DROP.
    IptablesLinear,
    /// iptables with one `hash:net,port` ipset holding the allow-list.
    IptablesIpset,
    /// nftables: one interval set (verdict map) keyed by source prefix,
    /// protocol and port, with conntrack.
    Nftables,
    /// Bulkhead's TC programs (`from_pod`, `to_pod`), as the agent runs
    /// them (flow accounting on, host routing on).
    BulkheadTc,
    /// Bulkhead's TC programs and the XDP prefilter.
    BulkheadTcXdp,
    /// Bulkhead's TC programs with host routing off: every packet
    /// crosses the node's stack, as with the netfilter contenders.
    BulkheadTcStack,
}

impl Contender {
    /// Every contender, in report order.
    pub const ALL: [Contender; 8] = [
        Contender::Bare,
        Contender::HookFloor,
        Contender::IptablesLinear,
        Contender::IptablesIpset,
        Contender::Nftables,
        Contender::BulkheadTc,
        Contender::BulkheadTcXdp,
        Contender::BulkheadTcStack,
    ];

    /// Short name (JSON, plot legends, file names).
    pub fn key(self) -> &'static str {
        match self {
            Contender::Bare => "bare",
            Contender::HookFloor => "hook-floor",
            Contender::IptablesLinear => "iptables-linear",
            Contender::IptablesIpset => "iptables-ipset",
            Contender::Nftables => "nftables",
            Contender::BulkheadTc => "bulkhead-tc",
            Contender::BulkheadTcXdp => "bulkhead-tc-xdp",
            Contender::BulkheadTcStack => "bulkhead-tc-stack",
        }
    }

    /// Name for people (report tables, plot legends).
    pub fn name(self) -> &'static str {
        match self {
            Contender::Bare => "B0 (bare veth)",
            Contender::HookFloor => "hook floor",
            Contender::IptablesLinear => "iptables (linear)",
            Contender::IptablesIpset => "iptables + ipset",
            Contender::Nftables => "nftables",
            Contender::BulkheadTc => "Bulkhead TC",
            Contender::BulkheadTcXdp => "Bulkhead TC + XDP",
            Contender::BulkheadTcStack => "Bulkhead TC, node's stack",
        }
    }

    /// Whether it enforces the allow-list (the bare veth and the hook
    /// floor do not: they are baselines).
    pub fn enforces(self) -> bool {
        !matches!(self, Contender::Bare | Contender::HookFloor)
    }

    /// Whether it is Bulkhead.
    pub fn is_bulkhead(self) -> bool {
        matches!(
            self,
            Contender::BulkheadTc | Contender::BulkheadTcXdp | Contender::BulkheadTcStack
        )
    }
}

/// A measured quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Received packets per second of one established UDP flow (60-byte
    /// frames), millions.
    PacketRate,
    /// Machine CPU nanoseconds per received packet of that flood.
    CpuPerPacket,
    /// TCP connections opened and closed per second (connect/close loop),
    /// thousands.
    ConnectionRate,
    /// Median time of one `connect()` of that loop (SYN out, SYN-ACK back:
    /// the first packet's path through the contender's rules),
    /// microseconds.
    ConnectTime,
    /// Packets per second the sender pushes at a denied port, all dropped
    /// by the contender, millions (for the baselines: received, nothing
    /// denies).
    DenyRate,
    /// UDP ping-pong round-trip latency, median, microseconds.
    LatencyP50,
    /// UDP ping-pong round-trip latency, 99th percentile, microseconds.
    LatencyP99,
    /// Bulk TCP throughput (iperf3), Gbit/s.
    Throughput,
    /// Time from adding one allow-list entry to the first packet it lets
    /// through, milliseconds.
    UpdateOne,
    /// Time to load the whole N-entry allow-list until it is enforced,
    /// milliseconds.
    UpdateFull,
    /// Packets of an allowed flow lost while the full allow-list is
    /// reloaded repeatedly.
    UpdateDrops,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 11] = [
        Metric::PacketRate,
        Metric::CpuPerPacket,
        Metric::ConnectionRate,
        Metric::ConnectTime,
        Metric::DenyRate,
        Metric::LatencyP50,
        Metric::LatencyP99,
        Metric::Throughput,
        Metric::UpdateOne,
        Metric::UpdateFull,
        Metric::UpdateDrops,
    ];

    /// Short name (JSON, file names).
    pub fn key(self) -> &'static str {
        match self {
            Metric::PacketRate => "packet_rate",
            Metric::CpuPerPacket => "cpu_per_packet",
            Metric::ConnectionRate => "connection_rate",
            Metric::ConnectTime => "connect_time",
            Metric::DenyRate => "deny_rate",
            Metric::LatencyP50 => "latency_p50",
            Metric::LatencyP99 => "latency_p99",
            Metric::Throughput => "throughput",
            Metric::UpdateOne => "update_one",
            Metric::UpdateFull => "update_full",
            Metric::UpdateDrops => "update_drops",
        }
    }

    /// Title for people.
    pub fn title(self) -> &'static str {
        match self {
            Metric::PacketRate => "Packet rate, established UDP flow",
            Metric::CpuPerPacket => "CPU per packet, established UDP flow",
            Metric::ConnectionRate => "New TCP connections per second",
            Metric::ConnectTime => "New TCP connection: connect() time, median",
            Metric::DenyRate => "Deny path: packets dropped per second",
            Metric::LatencyP50 => "UDP round trip, median",
            Metric::LatencyP99 => "UDP round trip, 99th percentile",
            Metric::Throughput => "Bulk TCP throughput (iperf3)",
            Metric::UpdateOne => "Update: one entry until enforced",
            Metric::UpdateFull => "Update: full allow-list until enforced",
            Metric::UpdateDrops => "Allowed-flow packets lost during reloads",
        }
    }

    /// Unit of the values.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::PacketRate | Metric::DenyRate => "Mpps",
            Metric::CpuPerPacket => "ns",
            Metric::ConnectionRate => "k conn/s",
            Metric::LatencyP50 | Metric::LatencyP99 | Metric::ConnectTime => "µs",
            Metric::Throughput => "Gbit/s",
            Metric::UpdateOne | Metric::UpdateFull => "ms",
            Metric::UpdateDrops => "packets",
        }
    }

    /// Whether more is better.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::PacketRate | Metric::ConnectionRate | Metric::DenyRate | Metric::Throughput
        )
    }

    /// Whether the baselines (bare, hook floor) have a value: they enforce
    /// nothing, so they have no update times and no deny path.
    pub fn applies_to(self, c: Contender) -> bool {
        c.enforces()
            || !matches!(
                self,
                Metric::DenyRate | Metric::UpdateOne | Metric::UpdateFull | Metric::UpdateDrops
            )
    }
}

/// One measurement of one metric, for one contender at one rule count,
/// in one round (rounds interleave every contender, so that the machine's
/// drift hits all alike).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// Who.
    pub contender: Contender,
    /// Allow-list entries (N).
    pub rules: usize,
    /// What.
    pub metric: Metric,
    /// Round (0-based).
    pub round: usize,
    /// The value, in `metric.unit()`.
    pub value: f64,
}

/// The median of one (contender, N, metric) cell and its ratios.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// Who.
    pub contender: Contender,
    /// N.
    pub rules: usize,
    /// What.
    pub metric: Metric,
    /// Median over rounds.
    pub median: f64,
    /// Smallest and largest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Samples.
    pub samples: usize,
    /// Median over rounds of (this / bare) in the same round, when bare
    /// has the metric (pairing cancels drift between rounds).
    pub ratio_to_bare: Option<f64>,
    /// `median` over the best contender's median at this N and metric
    /// (best by `higher_is_better`), when this contender enforces.
    pub ratio_to_best: Option<f64>,
}

/// How much the run measures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Allow-list sizes (N), ascending.
    pub rules: Vec<usize>,
    /// Rounds: every (contender, N) measured once per round, in a rotating
    /// order.
    pub rounds: usize,
    /// Seconds of one rate measurement (floods, connection loop, ping-pong,
    /// iperf3).
    pub seconds: f64,
    /// Contenders run.
    pub contenders: Vec<Contender>,
    /// Metrics measured.
    pub metrics: Vec<Metric>,
}

/// Where an established packet's time goes at one N, for the report's
/// explanation when a target is missed: CPU per packet of the baselines
/// and of Bulkhead on the veth, and the programs' own cost measured by
/// `BPF_PROG_TEST_RUN` in the same run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Breakdown {
    /// N.
    pub rules: usize,
    /// Machine CPU ns per packet: bare veth.
    pub bare_ns: f64,
    /// Machine CPU ns per packet: the hook floor (TC hooks, empty program).
    pub hook_floor_ns: f64,
    /// Machine CPU ns per packet: Bulkhead TC through the node's stack
    /// (host routing off), the path `from_pod` + `to_pod` describe.
    pub bulkhead_tc_ns: f64,
    /// `from_pod`, established flow, ns per run (`BPF_PROG_TEST_RUN`).
    pub from_pod_ns: f64,
    /// `to_pod`, established flow, ns per run.
    pub to_pod_ns: f64,
    /// Kernel symbols' shares of the CPU samples while Bulkhead TC floods
    /// (`perf record -a`), largest first; empty when perf is missing.
    pub profile: Vec<ProfileShare>,
}

/// One symbol's share of a profile.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileShare {
    /// Kernel symbol (`bpf_prog_…_from_pod` for our programs).
    pub symbol: String,
    /// Percent of all samples.
    pub percent: f64,
}

/// The whole run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompareResult {
    /// Command, machine, time.
    #[serde(flatten)]
    pub run: RunInfo,
    /// What was measured.
    pub plan: Plan,
    /// Versions of the tools used (`iptables-legacy`, `nft`, `ipset`,
    /// `sockperf`, `iperf3`), as they print them.
    pub tools: Vec<(String, String)>,
    /// Every sample, in the order taken.
    pub samples: Vec<Sample>,
    /// Per (contender, N, metric): medians and ratios.
    pub cells: Vec<Cell>,
    /// Where the time goes (established flow), per N.
    pub breakdown: Vec<Breakdown>,
    /// Things the reader must know (a tool missing, a measurement that
    /// failed and why).
    pub notes: Vec<String>,
}
