use super::*;
use crate::dataplane::rules::RuleFacts;

fn facts(nominal: usize) -> RuleFacts {
    RuleFacts {
        nominal,
        blocks: 0,
        ports: 0,
        segments: nominal,
        ingress_table_segments: nominal / 2,
        egress_table_segments: nominal / 2,
        policy_entries: 2,
        ingress_table_entries: 1,
        egress_table_entries: 1,
        tree_depth: 1,
        identity_entries: 2,
        identities: 2,
        compile_ms: 0.0,
        admin_policies: 0,
        admin_rules: 0,
        tiered: false,
        deny_segments: 0,
        image_bytes: 0,
    }
}

/// A case whose every (program, path) has the samples `ns(prog, path)`.
fn case(nominal: usize, ns: impl Fn(Prog, PathKind) -> Vec<f64>) -> CaseCost {
    let mut measurements = Vec::new();
    for prog in Prog::ALL {
        for path in PathKind::ALL {
            measurements.push(Measurement {
                prog,
                path,
                ns: Summary::new(ns(prog, path)),
                single_new_ns: None,
                single_established_ns: None,
                derived_ns: None,
            });
        }
    }
    CaseCost {
        facts: facts(nominal),
        measurements,
    }
}

fn flat(v: f64) -> impl Fn(Prog, PathKind) -> Vec<f64> {
    move |_, _| vec![v, v, v]
}

#[test]
fn ratios_pair_rounds_and_skip_empty_baselines() {
    assert_eq!(
        round_ratios(&[100.0, 0.0, 200.0], &[110.0, 50.0, 180.0]),
        [1.1, 0.9]
    );
    // A round only one side has is no pair.
    assert_eq!(round_ratios(&[100.0, 100.0], &[120.0]), [1.2]);
    assert!(round_ratios(&[], &[1.0]).is_empty());
}

#[test]
fn ratio_is_the_median_of_per_round_ratios() {
    // Rounds drift together: 100/110, 200/180, 100/105. The medians'
    // quotient says ×1.10; the paired rounds say ×1.05.
    let base = case(10, |_, _| vec![100.0, 200.0, 100.0]);
    let this = case(10, |_, _| vec![110.0, 180.0, 105.0]);
    let rows = compare(&[this], &[base]);
    assert_eq!(rows.len(), Prog::ALL.len() * PathKind::ALL.len());
    let r = &rows[0];
    assert_eq!(
        (r.prog, r.path, r.rules),
        (Prog::FromPod, PathKind::Established, 10)
    );
    assert_eq!((r.baseline_ns, r.ns), (100.0, 110.0));
    assert!((r.ratio.median - 1.05).abs() < 1e-12, "{}", r.ratio.median);
    assert!((r.ratio.min - 0.9).abs() < 1e-12);
    assert!((r.ratio.max - 1.1).abs() < 1e-12);
    assert!(!r.regressed());
}

#[test]
fn rows_follow_program_path_then_case_and_match_cases_by_rules() {
    let this = [
        case(10, flat(100.0)),
        case(1000, flat(100.0)),
        case(5, flat(1.0)),
    ];
    // The baseline lacks the 5-rule case and lists the others backwards.
    let base = [case(1000, flat(100.0)), case(10, flat(100.0))];
    let rows = compare(&this, &base);
    let keys: Vec<(Prog, PathKind, usize)> = rows
        .iter()
        .take(4)
        .map(|r| (r.prog, r.path, r.rules))
        .collect();
    assert_eq!(
        keys,
        [
            (Prog::FromPod, PathKind::Established, 10),
            (Prog::FromPod, PathKind::Established, 1000),
            (Prog::FromPod, PathKind::NewAllowed, 10),
            (Prog::FromPod, PathKind::NewAllowed, 1000),
        ]
    );
    assert_eq!(rows.len(), 2 * 9);
    assert!(rows.iter().all(|r| r.ratio.median == 1.0));
}

#[test]
fn no_regression_summary_names_the_largest_ratios() {
    let base = case(10, flat(100.0));
    let this = case(10, |prog, path| match (prog, path) {
        (Prog::ToPod, PathKind::Established) => vec![102.0; 3],
        (Prog::XdpPrefilter, PathKind::Denied) => vec![104.0; 3],
        _ => vec![100.0; 3],
    });
    let b = BaselineCost::new(&[this], vec![base]);
    assert!(b.regressions().is_empty());
    let mut s = String::new();
    b.target_line(&mut s);
    assert_eq!(
        s,
        "- Against the baseline ELF (same run, measurements interleaved; median of per-round ratios, this / baseline): \
         established path (CT hit) largest ×1.020 (`to_pod`, 10 rules: 100 → 102 ns; rounds 1.020–1.020); \
         every path largest ×1.040 (`xdp_prefilter` new flow, denied, 10 rules: 100 → 104 ns; rounds 1.040–1.040); \
         **no regression** (no row over ×1.05).\n"
    );
}

#[test]
fn regressions_are_counted_listed_and_flagged() {
    let base = case(100_000, flat(100.0));
    let this = case(100_000, |prog, path| {
        if prog == Prog::FromPod && path == PathKind::NewAllowed {
            vec![106.0, 107.0, 108.0]
        } else {
            vec![100.0; 3]
        }
    });
    let b = BaselineCost::new(&[this], vec![base]);
    assert_eq!(b.regressions().len(), 1);
    let mut s = String::new();
    b.target_line(&mut s);
    assert!(
        s.ends_with(
            "**regression**: 1 of 9 rows over ×1.05: ×1.070 (`from_pod` new flow, allowed, 100,000 rules: 100 → 107 ns; rounds 1.060–1.080).\n"
        ),
        "{s}"
    );
    let mut md = String::new();
    b.markdown(&mut md);
    assert!(md.starts_with("## Against the baseline ELF\n\n"), "{md}");
    assert!(md.contains(
        "| from_pod | new flow, allowed | 100,000 | 100 ns | 107 ns | ×1.070 (1.060–1.080) **over ×1.05** |\n"
    ));
    assert!(md.contains(
        "| from_pod | established (CT hit) | 100,000 | 100 ns | 100 ns | ×1.000 (1.000–1.000) |\n"
    ));
    assert!(md.contains("| new flow, allowed | 3 | ×1.000 | ×1.000 | ×1.070 |\n"));
    assert!(md.ends_with("|\n\n"));
}

#[test]
fn nothing_comparable_says_so() {
    let b = BaselineCost::new(&[case(10, flat(1.0))], vec![case(1000, flat(1.0))]);
    assert!(b.rows.is_empty());
    let mut s = String::new();
    b.target_line(&mut s);
    assert_eq!(
        s,
        "- Against the baseline ELF: no comparable measurements.\n"
    );
    let zero = BaselineCost::new(&[case(10, flat(1.0))], vec![case(10, flat(0.0))]);
    assert!(zero.rows.iter().all(|r| !r.measured() && !r.regressed()));
    let mut md = String::new();
    zero.markdown(&mut md);
    assert!(md.contains("| 0 ns | 1 ns | – |\n"));
}

#[test]
fn the_report_has_the_section_only_with_a_baseline() {
    use crate::dataplane::report::Report;
    use crate::run_info::RunInfo;
    let cases = vec![case(10, flat(100.0)), case(100_000, flat(100.0))];
    let mut report = Report {
        run: RunInfo::start(
            "dataplane",
            "dataplane_bench",
            false,
            std::time::Instant::now(),
        ),
        cost_plan: None,
        prog_cost: cases.clone(),
        veth: None,
        baseline: None,
        admin: None,
    };
    let without = report.markdown();
    assert!(!without.contains("baseline"), "{without}");
    let json = serde_json::to_value(&report).unwrap();
    assert!(json.get("baseline").is_none());

    let old = vec![case(10, flat(100.0)), case(100_000, flat(50.0))];
    report.baseline = Some(BaselineCost::new(&cases, old));
    let with = report.markdown();
    let at = |needle: &str| {
        with.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in {with}"))
    };
    // The target line right after the program-cost one, the section after
    // the cost tables and before the method.
    assert!(at("- Program cost at") < at("- Against the baseline ELF (same run"));
    assert!(at("- Against the baseline ELF (same run") < at("- Packet rate: not measured"));
    assert!(at("### New-flow method") < at("## Against the baseline ELF\n"));
    assert!(at("## Against the baseline ELF\n") < at("## Method and reading"));
    assert!(with.contains("**regression**: 9 of 18 rows over ×1.05"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["baseline"]["rows"].as_array().unwrap().len(), 18);
    assert_eq!(json["baseline"]["cases"].as_array().unwrap().len(), 2);
}
