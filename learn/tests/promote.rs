//! `promote` tests: each edit is checked byte for byte, loaded back through
//! the manifest loader, and every refusal leaves the files untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bulkhead_learn::promote::edit::Refusal;
use bulkhead_learn::promote::verify::VerifyError;
use bulkhead_learn::promote::write::WriteError;
use bulkhead_learn::promote::*;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{MODE_ANNOTATION, Mode, Model};
use bulkhead_policy::source::manifest;
use bulkhead_testkit::dir_with;

const NS_AUDIT: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  annotations:\n    bulkhead.io/mode: audit\n";

/// A NetworkPolicy document in namespace `shop` with `meta` as its
/// metadata block (lines after `metadata:`).
fn np(meta: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n{meta}spec:\n  podSelector: {{}}\n"
    )
}

fn load(dir: &Path) -> Model {
    manifest::load_dir(dir, &AddressPlan::default()).unwrap()
}

fn policies(names: &[&str]) -> Selection {
    Selection::Policies(names.iter().map(|s| s.to_string()).collect())
}

/// `text` (as `p.yaml`, beside a namespace in audit) with `policy` set to
/// `to`: the verified edited text, or why not. Writes nothing.
fn promote_text(text: &str, policy: &str, to: Mode) -> Result<String, PromoteError> {
    let dir = dir_with(&[("ns.yaml", NS_AUDIT), ("p.yaml", text)]);
    let plan = plan(dir.path(), &policies(&[policy]), to)?;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("p.yaml")).unwrap(),
        text,
        "planning writes nothing"
    );
    Ok(plan
        .files
        .first()
        .map_or_else(|| text.to_string(), |f| f.after.clone()))
}

fn refusal(text: &str, policy: &str) -> Refusal {
    match promote_text(text, policy, Mode::Enforce) {
        Err(PromoteError::Unsafe(v)) => {
            assert_eq!(v.len(), 1);
            v[0].reason.clone()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn replaces_an_existing_value_keeping_quotes_and_comments() {
    for (value, want) in [
        ("audit", "enforce"),
        ("\"audit\"", "\"enforce\""),
        ("'audit'", "'enforce'"),
        (
            "audit   # staged on 2024-05-01",
            "enforce   # staged on 2024-05-01",
        ),
        ("\"audit\" # why", "\"enforce\" # why"),
    ] {
        let meta = |v: &str| {
            format!(
                "  name: web\n  namespace: shop\n  annotations:\n    owner: team-a\n    bulkhead.io/mode: {v}\n    other: \"x: y\"\n"
            )
        };
        let out = promote_text(&np(&meta(value)), "shop/web", Mode::Enforce).unwrap();
        assert_eq!(out, np(&meta(want)), "{value}");
    }
    // A quoted key is found too.
    let meta = |v: &str| {
        format!("  name: web\n  namespace: shop\n  annotations:\n    \"bulkhead.io/mode\": {v}\n")
    };
    let out = promote_text(&np(&meta("audit")), "shop/web", Mode::Learn).unwrap();
    assert_eq!(out, np(&meta("learn")));
}

#[test]
fn inserts_an_annotations_map_in_the_documents_indentation() {
    let out = promote_text(
        &np("  name: web\n  namespace: shop\n"),
        "shop/web",
        Mode::Enforce,
    )
    .unwrap();
    assert_eq!(
        out,
        np("  annotations:\n    bulkhead.io/mode: enforce\n  name: web\n  namespace: shop\n")
    );
    // Four-space indentation, labels, a comment under metadata.
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:  # who\n    # the name\n    name: web\n    namespace: shop\n    labels:\n        app: web\nspec:\n    podSelector: {}\n";
    let out = promote_text(text, "shop/web", Mode::Enforce).unwrap();
    assert_eq!(
        out,
        text.replace(
            "metadata:  # who\n",
            "metadata:  # who\n    annotations:\n        bulkhead.io/mode: enforce\n"
        )
    );
}

#[test]
fn inserts_into_existing_annotations() {
    // Another annotation's block scalar is passed over, not misread.
    let meta = "  name: web\n  namespace: shop\n  annotations:\n    note: |\n      bulkhead.io/mode: learn\n      multi-line\n    owner: team-a\n";
    let out = promote_text(&np(meta), "shop/web", Mode::Enforce).unwrap();
    assert_eq!(
        out,
        np(&meta.replace(
            "  annotations:\n",
            "  annotations:\n    bulkhead.io/mode: enforce\n"
        ))
    );
    // `annotations: {}`, null and empty become a block mapping.
    for (empty, header) in [
        ("annotations: {}", "annotations:"),
        ("annotations: {}  # none yet", "annotations: # none yet"),
        ("annotations: null", "annotations:"),
        ("annotations:", "annotations:"),
    ] {
        let meta = |a: &str| format!("  name: web\n  namespace: shop\n  {a}\n");
        let out = promote_text(&np(&meta(empty)), "shop/web", Mode::Enforce).unwrap();
        assert_eq!(
            out,
            np(&meta(&format!("{header}\n    bulkhead.io/mode: enforce"))),
            "{empty}"
        );
    }
}

#[test]
fn only_the_policys_document_changes() {
    let doc = |name: &str, mode: &str| {
        np(&format!(
            "  name: {name}\n  namespace: shop\n  annotations:\n    bulkhead.io/mode: {mode}\n"
        ))
    };
    // A leading comment, a leading `---`, an empty document, a `...`.
    let text = format!(
        "# shop\n---\n{}---\n---\n{}...\n---\n{}",
        doc("a", "audit"),
        doc("b", "audit"),
        doc("c", "audit")
    );
    let dir = dir_with(&[("p.yaml", &text)]);
    let plan = plan(dir.path(), &policies(&["shop/b"]), Mode::Enforce).unwrap();
    let want = format!(
        "# shop\n---\n{}---\n---\n{}...\n---\n{}",
        doc("a", "audit"),
        doc("b", "enforce"),
        doc("c", "audit")
    );
    assert_eq!(plan.files[0].after, want);
    let p = &plan.promotions[0];
    assert_eq!(
        (p.policy.as_str(), p.from, p.to, p.line, p.changed),
        ("shop/b", Mode::Audit, Mode::Enforce, 20, true)
    );
    assert_eq!(want.lines().nth(19), Some("    bulkhead.io/mode: enforce"));
    plan.write().unwrap();
    let m = load(dir.path());
    let modes: Vec<(String, Mode)> = m.policies.iter().map(|p| (p.key(), m.mode_of(p))).collect();
    assert_eq!(
        modes,
        [
            ("shop/a".to_string(), Mode::Audit),
            ("shop/b".to_string(), Mode::Enforce),
            ("shop/c".to_string(), Mode::Audit)
        ]
    );
}

#[test]
fn crlf_and_a_missing_final_newline_are_kept() {
    let text = np("  name: web\n  namespace: shop\n").replace('\n', "\r\n");
    let out = promote_text(&text, "shop/web", Mode::Enforce).unwrap();
    assert_eq!(
        out,
        np("  annotations:\n    bulkhead.io/mode: enforce\n  name: web\n  namespace: shop\n")
            .replace('\n', "\r\n")
    );
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nspec:\n  podSelector: {}\nmetadata:\n  name: web\n  namespace: shop\n  annotations:";
    let out = promote_text(text, "shop/web", Mode::Enforce).unwrap();
    assert_eq!(out, format!("{text}\n    bulkhead.io/mode: enforce\n"));
}

#[test]
fn a_namespace_in_audit_is_overridden_for_that_policy_only() {
    let pols = format!(
        "{}---\n{}",
        np("  name: web\n  namespace: shop\n"),
        np("  name: api\n  namespace: shop\n")
    );
    let dir = dir_with(&[("ns.yaml", NS_AUDIT), ("p.yaml", &pols)]);
    let plan = plan(dir.path(), &policies(&["shop/web"]), Mode::Enforce).unwrap();
    assert_eq!(plan.promotions.len(), 1);
    assert_eq!(plan.promotions[0].from, Mode::Audit);
    plan.write().unwrap();
    let m = load(dir.path());
    let web = &m.policies[1];
    assert_eq!((web.name.as_str(), web.mode), ("web", Some(Mode::Enforce)));
    assert_eq!(m.mode_of(&m.policies[0]), Mode::Audit, "api still inherits");
    assert_eq!(m.namespaces["shop"].mode, Some(Mode::Audit));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ns.yaml")).unwrap(),
        NS_AUDIT
    );
}

#[test]
fn unsafe_layouts_are_refused_with_the_place_to_edit_by_hand() {
    let base = "  name: web\n  namespace: shop\n";
    let cases: Vec<(String, Refusal)> = vec![
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec: {podSelector: {}}\n".into(),
            Refusal::FlowMetadata { line: 3 },
        ),
        (
            np(&format!("{base}  annotations: {{bulkhead.io/mode: audit}}\n")),
            Refusal::FlowAnnotations { line: 6 },
        ),
        (
            np(&format!("{base}  annotations: &a\n    bulkhead.io/mode: audit\n")),
            Refusal::Indirect {
                what: "metadata.annotations",
                line: 6,
            },
        ),
        (
            np(&format!("{base}  annotations:\n    bulkhead.io/mode: audit\n    bulkhead.io/mode: audit\n")),
            Refusal::Duplicate {
                key: MODE_ANNOTATION,
                first: 7,
                second: 8,
            },
        ),
        (
            np(&format!("{base}  annotations:\n    bulkhead.io/mode: >-\n      audit\n")),
            Refusal::NotOneLine {
                what: "the mode annotation",
                line: 7,
            },
        ),
        (
            np(&format!("{base}  annotations:\n    bulkhead.io/mode: \"\\x61udit\"\n")),
            Refusal::NotOneLine {
                what: "the mode annotation",
                line: 7,
            },
        ),
        (
            "{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\", \"metadata\": {\"name\": \"web\", \"namespace\": \"shop\"}, \"spec\": {\"podSelector\": {}}}\n".into(),
            Refusal::FlowDocument { line: 1 },
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata:\n    name: web\n    namespace: shop\n  spec:\n    podSelector: {}\n".into(),
            Refusal::InList,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(refusal(&text, "shop/web"), want, "{text}");
    }
    // JSON files, and the message says where and what to do.
    let json = "{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\", \"metadata\": {\"name\": \"web\", \"namespace\": \"shop\"}, \"spec\": {\"podSelector\": {}}}";
    let dir = dir_with(&[("ns.yaml", NS_AUDIT), ("p.json", json)]);
    let err = plan(dir.path(), &Selection::Audit, Mode::Enforce).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("p.json (document 1): NetworkPolicy shop/web: cannot edit safely: the file is JSON; set metadata.annotations[\"bulkhead.io/mode\"] to \"enforce\" there by hand"),
        "{text}"
    );
}

#[test]
fn one_refusal_means_nothing_is_written() {
    let good = np("  name: good\n  namespace: shop\n");
    let bad = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: shop}\nspec: {podSelector: {}}\n";
    let dir = dir_with(&[
        ("ns.yaml", NS_AUDIT),
        ("good.yaml", &good),
        ("bad.yaml", bad),
    ]);
    let err = plan(dir.path(), &Selection::Audit, Mode::Enforce).unwrap_err();
    assert!(
        matches!(&err, PromoteError::Unsafe(v) if v.len() == 1 && v[0].policy == "shop/bad"),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("good.yaml")).unwrap(),
        good
    );
    // Named alone, the good one goes through.
    let plan = plan(dir.path(), &policies(&["shop/good"]), Mode::Enforce).unwrap();
    assert_eq!(plan.files.len(), 1);
}

#[test]
fn all_promotes_every_policy_in_audit_and_only_those() {
    let own = |name: &str, ns: &str, mode: &str| {
        let ann = if mode.is_empty() {
            String::new()
        } else {
            format!("  annotations:\n    bulkhead.io/mode: {mode}\n")
        };
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\n{ann}spec:\n  podSelector: {{}}\n"
        )
    };
    let dir = dir_with(&[
        ("ns.yaml", NS_AUDIT),
        ("a/own-audit.yaml", &own("own-audit", "other", "audit")),
        ("a/inherits.yaml", &own("inherits", "shop", "")),
        ("b/enforced.yaml", &own("enforced", "shop", "enforce")),
        ("b/learns.yaml", &own("learns", "shop", "learn")),
        ("b/plain.yaml", &own("plain", "other", "")),
    ]);
    let before = load(dir.path());
    let plan = plan(dir.path(), &Selection::Audit, Mode::Enforce).unwrap();
    let names: Vec<&str> = plan.promotions.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(names, ["other/own-audit", "shop/inherits"]);
    assert_eq!(plan.files.len(), 2);
    plan.write().unwrap();
    let after = load(dir.path());
    for (b, a) in before.policies.iter().zip(&after.policies) {
        let want = match before.mode_of(b) {
            Mode::Audit => Mode::Enforce,
            m => m,
        };
        assert_eq!(after.mode_of(a), want, "{}", a.key());
    }
    // Nothing left in audit.
    let again =
        bulkhead_learn::promote::plan(dir.path(), &Selection::Audit, Mode::Enforce).unwrap();
    assert!(again.promotions.is_empty() && again.files.is_empty());
}

#[test]
fn a_policy_already_in_the_mode_is_reported_not_edited() {
    let text =
        np("  name: web\n  namespace: shop\n  annotations:\n    bulkhead.io/mode: enforce\n");
    let dir = dir_with(&[
        ("p.yaml", &text),
        ("q.yaml", &np("  name: q\n  namespace: x\n")),
    ]);
    let plan = plan(dir.path(), &policies(&["shop/web", "x/q"]), Mode::Enforce).unwrap();
    assert!(plan.files.is_empty());
    let lines: Vec<String> = plan.promotions.iter().map(|p| p.to_string()).collect();
    let file = |f: &str| dir.path().join(f).display().to_string();
    assert_eq!(
        lines,
        [
            format!("shop/web: already enforce ({}:7)", file("p.yaml")),
            format!("x/q: already enforce ({}:1)", file("q.yaml")),
        ]
    );
}

#[test]
fn bad_and_unknown_names_are_errors() {
    let dir = dir_with(&[("p.yaml", &np("  name: web\n  namespace: shop\n"))]);
    let err = plan(
        dir.path(),
        &policies(&["shop/web", "shop/nope", "shop/nope"]),
        Mode::Enforce,
    )
    .unwrap_err();
    assert!(
        matches!(&err, PromoteError::Unknown(v) if v == &["shop/nope"]),
        "{err:?}"
    );
    let err = plan(dir.path(), &policies(&["web"]), Mode::Enforce).unwrap_err();
    assert!(matches!(err, PromoteError::BadName(_)), "{err:?}");
    let broken = dir_with(&[("p.yaml", "kind: NetworkPolicy\nmetadata: [\n")]);
    let err = plan(broken.path(), &Selection::Audit, Mode::Enforce).unwrap_err();
    assert!(matches!(err, PromoteError::Manifests(_)), "{err:?}");
}

#[test]
fn the_text_check_catches_more_than_the_annotation_changing() {
    let old = format!(
        "{}---\n{}",
        np("  name: a\n  namespace: shop\n"),
        np("  name: b\n  namespace: shop\n")
    );
    let modes = BTreeMap::from([(0, Mode::Enforce)]);
    let good = old.replacen(
        "metadata:\n",
        "metadata:\n  annotations:\n    bulkhead.io/mode: enforce\n",
        1,
    );
    verify::check_text(&old, &good, &modes).unwrap();
    // The annotation landed in the other document.
    let wrong_doc = old.replace(
        "  name: b\n",
        "  name: b\n  annotations:\n    bulkhead.io/mode: enforce\n",
    );
    assert!(matches!(
        verify::check_text(&old, &wrong_doc, &modes),
        Err(VerifyError::Document { document: 1 })
    ));
    // Something else changed with it.
    let also = good.replacen("podSelector: {}", "podSelector: {matchLabels: {a: b}}", 1);
    assert!(matches!(
        verify::check_text(&old, &also, &modes),
        Err(VerifyError::Document { document: 1 })
    ));
    let split = good.replacen("spec:", "---\nspec:", 1);
    assert!(matches!(
        verify::check_text(&old, &split, &modes),
        Err(VerifyError::DocumentCount { .. })
    ));
}

#[test]
fn the_model_check_catches_more_than_the_modes_changing() {
    let dir = dir_with(&[
        ("ns.yaml", NS_AUDIT),
        (
            "p.yaml",
            &format!(
                "{}---\n{}",
                np("  name: a\n  namespace: shop\n"),
                np("  name: b\n  namespace: shop\n")
            ),
        ),
    ]);
    let before = load(dir.path());
    let promoted = BTreeSet::from(["shop/a".to_string()]);
    let mut after = before.clone();
    after.policies[0].mode = Some(Mode::Enforce);
    verify::check_model(&before, &after, &promoted, Mode::Enforce).unwrap();
    // The other policy's mode moved too (e.g. the namespace was edited).
    let mut both = after.clone();
    both.namespaces.get_mut("shop").unwrap().mode = Some(Mode::Enforce);
    assert_eq!(
        verify::check_model(&before, &both, &promoted, Mode::Enforce),
        Err(verify::ModelDiff::Mode {
            policy: "shop/b".into(),
            expected: Mode::Audit,
            found: Mode::Enforce
        })
    );
    // A rule changed.
    let mut rule = after.clone();
    rule.policies[0].egress = Some(vec![]);
    assert_eq!(
        verify::check_model(&before, &rule, &promoted, Mode::Enforce),
        Err(verify::ModelDiff::Policy {
            policy: "shop/a".into()
        })
    );
    // The promoted policy did not get its own annotation.
    assert!(verify::check_model(&before, &before, &promoted, Mode::Enforce).is_err());
    let mut gone = after.clone();
    gone.policies.pop();
    assert_eq!(
        verify::check_model(&before, &gone, &promoted, Mode::Enforce),
        Err(verify::ModelDiff::PolicySet)
    );
    // The staged reload maps origins back: an unedited directory reloads
    // into the same model.
    let same = verify::reload(dir.path(), &AddressPlan::default(), &BTreeMap::new()).unwrap();
    assert_eq!(same, before);
}

#[test]
fn documents_are_split_as_the_parser_splits_them() {
    for text in [
        "",
        "# only a comment\n",
        "---\n",
        "---\n---\n",
        "a: 1\n",
        "# c\n---\na: 1\n",
        "a: 1\n---\n",
        "a: 1\n---\nb: 2\n",
        "a: 1\n...\n---\nb: 2\n",
        "a: 1\n...\n# trailing\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: 1\n--- # c\nb: 2\n",
        "a: 1\n---\n# only comment\n---\nb: 1\n",
        "a: |\n  ---x\n---\nb: 1\n",
    ] {
        let lines = documents::lines(text);
        assert_eq!(documents::join(&lines), text);
        let docs = documents::documents(&lines);
        let parsed = documents::parse(text).unwrap();
        assert_eq!(docs.len(), parsed.len(), "{text:?}");
        for (d, v) in docs.iter().zip(&parsed) {
            let alone = documents::parse(&documents::join(&lines[d.body.clone()])).unwrap();
            assert_eq!(alone, std::slice::from_ref(v), "{text:?}");
        }
    }
}

#[test]
fn writes_keep_permissions_follow_links_and_refuse_changed_files() {
    use std::os::unix::fs::PermissionsExt;
    let real = dir_with(&[("p.yaml", &np("  name: web\n  namespace: shop\n"))]);
    let path = real.path().join("p.yaml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&path, dir.path().join("p.yaml")).unwrap();
    let plan = plan(dir.path(), &policies(&["shop/web"]), Mode::Audit).unwrap();
    plan.write().unwrap();
    assert!(
        dir.path().join("p.yaml").is_symlink(),
        "the link stays a link"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("bulkhead.io/mode: audit"), "{text}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let entries: Vec<_> = std::fs::read_dir(real.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "no temporary file left");
    // Someone edited the file after it was read: not overwritten.
    let err = plan.write().unwrap_err();
    assert!(
        matches!(
            err,
            PromoteError::Write {
                source: WriteError::Changed { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn kubectl_style_output_is_edited_in_place() {
    let text = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  annotations:
    bulkhead.io/mode: audit
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"annotations":{"bulkhead.io/mode":"audit"}}}
  creationTimestamp: "2024-05-01T10:00:00Z"
  finalizers:
  - example.com/keep
  generation: 1
  name: web
  namespace: shop
spec:
  podSelector: {}
  policyTypes:
  - Ingress
"#;
    let out = promote_text(text, "shop/web", Mode::Enforce).unwrap();
    assert_eq!(
        out,
        text.replacen("mode: audit", "mode: enforce", 1),
        "only the annotation, not the JSON copy"
    );
    // Layouts the loader rejects anyway are refused by the editor too
    // (it does not rely on the loader for its own safety).
    let edit_alone = |text: &str| {
        let lines = documents::lines(text);
        edit::set_mode(&lines, 0..lines.len(), Mode::Enforce)
    };
    let tabbed =
        np("  name: web\n  namespace: shop\n  annotations:\n  \tbulkhead.io/mode: audit\n");
    assert_eq!(edit_alone(&tabbed), Err(Refusal::Tab { line: 7 }));
    let merged = np("  <<: {labels: {a: b}}\n  name: web\n");
    assert_eq!(
        edit_alone(&merged),
        Err(Refusal::Indirect {
            what: "a merge key",
            line: 4
        })
    );
    // A tab inside a block scalar is text, not indentation.
    let in_text = np("  name: web\n  namespace: shop\n  annotations:\n    note: |\n      a\tb\n");
    assert!(promote_text(&in_text, "shop/web", Mode::Enforce).is_ok());
}

/// A ClusterNetworkPolicy document (Admin tier) with `meta` as its
/// metadata block.
fn cnp(meta: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata:\n{meta}spec:\n  tier: Admin\n  priority: 10\n  subject:\n    namespaces: {{}}\n  ingress:\n    - action: Deny\n      from:\n        - namespaces: {{}}\n"
    )
}

/// A BaselineAdminNetworkPolicy (v1alpha1; the one allowed is `default`).
fn banp(meta: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata:\n{meta}spec:\n  subject:\n    namespaces: {{}}\n  ingress:\n    - action: Deny\n      from:\n        - namespaces: {{}}\n"
    )
}

#[test]
fn cluster_admin_policies_are_promoted_by_kind_and_name() {
    let staged = "  name: guard\n  annotations:\n    bulkhead.io/mode: audit # staged\n";
    let text = cnp(staged);
    let out = promote_text(&text, "ClusterNetworkPolicy/guard", Mode::Enforce).unwrap();
    let enforced = "  name: guard\n  annotations:\n    bulkhead.io/mode: enforce # staged\n";
    assert_eq!(out, cnp(enforced));
    // Without an annotation (the default mode): one is inserted.
    let out = promote_text(
        &banp("  name: default\n"),
        "BaselineAdminNetworkPolicy/default",
        Mode::Audit,
    )
    .unwrap();
    assert_eq!(
        out,
        banp("  annotations:\n    bulkhead.io/mode: audit\n  name: default\n")
    );
    // The kind is part of the name: a policy of another kind is unknown.
    assert!(matches!(
        promote_text(&text, "AdminNetworkPolicy/guard", Mode::Enforce),
        Err(PromoteError::Unknown(v)) if v == ["AdminNetworkPolicy/guard"]
    ));
}

#[test]
fn all_promotes_staged_cluster_admin_policies_with_the_network_policies() {
    let dir = dir_with(&[
        ("ns.yaml", NS_AUDIT),
        ("np.yaml", &np("  name: web\n  namespace: shop\n")),
        (
            "admin.yaml",
            &format!(
                "{}---\n{}",
                cnp("  name: staged\n  annotations:\n    bulkhead.io/mode: audit\n"),
                cnp("  name: live\n")
            ),
        ),
    ]);
    let before = load(dir.path());
    let plan = plan(dir.path(), &Selection::Audit, Mode::Enforce).unwrap();
    let names: Vec<&str> = plan.promotions.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(names, ["shop/web", "ClusterNetworkPolicy/staged"]);
    let line = plan.promotions[1].to_string();
    assert!(
        line.starts_with("ClusterNetworkPolicy/staged: audit → enforce ("),
        "{line}"
    );
    plan.write().unwrap();
    let after = load(dir.path());
    let modes = |m: &Model| -> Vec<Mode> {
        m.admin_policies
            .iter()
            .map(|p| m.admin_mode_of(p))
            .collect()
    };
    assert_eq!(modes(&before), [Mode::Enforce, Mode::Audit]);
    assert_eq!(modes(&after), [Mode::Enforce, Mode::Enforce]);
    // The model check covers cluster-admin policies: a rule change is caught.
    let promoted = BTreeSet::from(["shop/web", "ClusterNetworkPolicy/staged"].map(String::from));
    verify::check_model(&before, &after, &promoted, Mode::Enforce).unwrap();
    let mut changed = after.clone();
    changed.admin_policies[1].ingress.clear();
    assert_eq!(
        verify::check_model(&before, &changed, &promoted, Mode::Enforce),
        Err(verify::ModelDiff::Policy {
            policy: "ClusterNetworkPolicy/staged".into()
        })
    );
}
