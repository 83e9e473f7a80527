use super::*;

fn spec(pods: usize, labels: LabelMode) -> ClusterSpec {
    ClusterSpec {
        seed: 7,
        namespaces: 8,
        apps_per_namespace: 6,
        pods,
        policies: 120,
        labels,
    }
}

#[test]
fn same_spec_same_model() {
    let a = spec(300, LabelMode::Realistic).build();
    let b = spec(300, LabelMode::Realistic).build();
    assert_eq!(a.model, b.model);
    assert_eq!(a.model.pods.len(), 300);
    assert_eq!(a.model.policies.len(), 120);
    assert!(a.model.pods.iter().all(|p| p.ips.len() == 2));
}

#[test]
fn policies_do_not_depend_on_pods_or_labels() {
    let few = spec(100, LabelMode::Replicas).build();
    let many = spec(900, LabelMode::Distinct).build();
    assert_eq!(few.model.policies, many.model.policies);
    assert_eq!(few.model.namespaces, many.model.namespaces);
}

#[test]
fn label_modes_differ_in_diversity() {
    let replicas = spec(600, LabelMode::Replicas).build();
    let distinct = spec(600, LabelMode::Distinct).build();
    assert!(replicas.distinct_label_sets <= replicas.workloads);
    assert_eq!(distinct.distinct_label_sets, 600);
}

#[test]
fn pod_names_are_unique() {
    let c = spec(500, LabelMode::Realistic).build();
    let mut keys: Vec<String> = c.model.pods.iter().map(Pod::key).collect();
    keys.dedup();
    assert_eq!(keys.len(), 500);
}
