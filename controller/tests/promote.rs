//! `bulkhead promote --dry-run` writes nothing and shows the diff it would
//! apply (the edits themselves are tested in `bulkhead-learn`).

use bulkhead_learn::promote::{self, Selection};
use bulkhead_policy::model::Mode;
use bulkhead_testkit::dir_with;

/// A NetworkPolicy document in namespace `shop` with `meta` as its
/// metadata block (lines after `metadata:`).
fn np(meta: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n{meta}spec:\n  podSelector: {{}}\n"
    )
}

#[test]
fn dry_run_writes_nothing_and_shows_a_diff() {
    let text = np("  name: web\n  namespace: shop\n  annotations:\n    bulkhead.io/mode: audit\n");
    let dir = dir_with(&[("p.yaml", &text)]);
    let args = bulkhead::cli::promote::PromoteArgs {
        manifests: dir.path().to_path_buf(),
        policies: vec!["shop/web".into()],
        all: false,
        to: Mode::Enforce,
        dry_run: true,
        output: bulkhead::cli::Output::Text,
    };
    bulkhead::cli::promote::run(&args).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("p.yaml")).unwrap(),
        text
    );
    let plan = promote::plan(
        dir.path(),
        &Selection::Policies(vec!["shop/web".into()]),
        Mode::Enforce,
    )
    .unwrap();
    let path = dir.path().join("p.yaml").display().to_string();
    assert_eq!(
        plan.diff(),
        format!(
            "--- {path}\n+++ {path}\n@@ -4,6 +4,6 @@\n   name: web\n   namespace: shop\n   annotations:\n-    bulkhead.io/mode: audit\n+    bulkhead.io/mode: enforce\n spec:\n   podSelector: {{}}\n"
        )
    );
}
