//! The conformance data set's layout, shared by `conformance.rs` (the
//! reference evaluator against the analyzer's expected output) and
//! `netns-tests/tests/conformance_lab.rs` (`lab verify` on real packets):
//! where the data is, its cases, and which tiers are in scope.

use std::path::{Path, PathBuf};

/// Tiers in scope: NetworkPolicy, the cluster-admin tiers
/// (AdminNetworkPolicy / BaselineAdminNetworkPolicy), or no policy at all.
pub const IN_SCOPE_TIERS: [&str; 5] = [
    "netpol",
    "netpol+ingress",
    "anp",
    "no-policy",
    "no-policy+ingress",
];
/// Tiers knowingly out of scope: none left.
pub const OUT_OF_SCOPE_TIERS: [&str; 0] = [];
/// Pod subnet used to run a case whose column says `NONE`.
pub const FALLBACK_POD_SUBNET: &str = "10.244.0.0/16";

/// One row of cases.tsv: the case (its folder under `tests/`), its tier, and
/// a pod subnet no policy CIDR of it covers.
#[derive(Debug)]
pub struct Case {
    /// Folder name under `tests/`.
    pub name: String,
    /// `netpol`, `anp`, ...
    pub tier: String,
    /// `None` when the column says `NONE`.
    pub pod_subnet: Option<String>,
}

/// The data folder: `$BULKHEAD_CONFORMANCE_DIR` (which must hold
/// `cases.tsv`), else `<repo>/../shared/conformance/netpol-analyzer`, else
/// `None` with a message (the caller skips).
pub fn data_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BULKHEAD_CONFORMANCE_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("cases.tsv").is_file(),
            "BULKHEAD_CONFORMANCE_DIR={} has no cases.tsv",
            dir.display()
        );
        return Some(dir);
    }
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/netpol-analyzer");
    if dir.join("cases.tsv").is_file() {
        Some(dir)
    } else {
        println!("skipped: conformance data not found at {}", dir.display());
        eprintln!("skipped: conformance data not found at {}", dir.display());
        None
    }
}

/// Every row of `cases.tsv`.
pub fn read_cases(dir: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("cases.tsv")).expect("read cases.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("cases.tsv header")
        .split('\t')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("cases.tsv has no column {name:?}"))
    };
    let (c_case, c_tier, c_subnet) = (col("case"), col("tier"), col("pod_subnet_free_of_cidrs"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let get = |i: usize| f.get(i).map(|s| s.trim()).unwrap_or_default().to_string();
            let subnet = get(c_subnet);
            Case {
                name: get(c_case),
                tier: get(c_tier),
                pod_subnet: (subnet != "NONE" && !subnet.is_empty()).then_some(subnet),
            }
        })
        .collect()
}
