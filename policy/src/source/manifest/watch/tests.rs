//! The manifest source follows the directory through inotify events.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::*;
use crate::model::addressing::AddressPlan;
use crate::source::manifest::load_dir;
use crate::testfs::dir_with;

/// A bound that catches a missed event (not a speed target).
const PATIENCE: Duration = Duration::from_secs(30);

const POD_A: &str =
    "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: default, labels: {app: a}}\n";
const POD_B: &str =
    "apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: default, labels: {app: b}}\n";

fn loader(path: &Path) -> Loader {
    let path = path.to_owned();
    Arc::new(move || load_dir(&path, &AddressPlan::default()))
}

/// Waits until the feed's revision is the content hash of `path` now, and
/// returns the feed.
async fn caught_up(rx: &mut watch::Receiver<Feed>, path: &Path) -> Feed {
    let want = content_hash(path);
    let feed = tokio::time::timeout(PATIENCE, rx.wait_for(|f| f.revision == want))
        .await
        .unwrap_or_else(|_| panic!("the source never read revision {want}"))
        .expect("source running");
    feed.clone()
}

fn pods(feed: &Feed) -> Vec<String> {
    feed.model
        .as_ref()
        .unwrap()
        .pods
        .iter()
        .map(|p| p.key())
        .collect()
}

#[tokio::test]
async fn a_new_file_is_read_without_polling() {
    let dir = dir_with(&[("a.yaml", POD_A)]);
    let mut rx = spawn(dir.path().to_owned(), loader(dir.path())).unwrap();
    let feed = caught_up(&mut rx, dir.path()).await;
    assert_eq!(pods(&feed), ["default/a"]);
    assert_eq!(feed.status.kind, "manifests");
    assert!(feed.status.connected);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/b.yaml"), POD_B).unwrap();
    let feed = caught_up(&mut rx, dir.path()).await;
    assert_eq!(pods(&feed), ["default/a", "default/b"]);
}

#[tokio::test]
async fn invalid_content_keeps_the_last_model_and_says_why() {
    let dir = dir_with(&[("a.yaml", POD_A)]);
    let mut rx = spawn(dir.path().to_owned(), loader(dir.path())).unwrap();
    caught_up(&mut rx, dir.path()).await;
    std::fs::write(dir.path().join("bad.yaml"), "kind: Pod\nmetadata: [").unwrap();
    let feed = caught_up(&mut rx, dir.path()).await;
    assert!(
        feed.error.as_deref().unwrap().contains("bad.yaml"),
        "{feed:?}"
    );
    assert_eq!(pods(&feed), ["default/a"], "the last good model stays");
    std::fs::remove_file(dir.path().join("bad.yaml")).unwrap();
    let feed = caught_up(&mut rx, dir.path()).await;
    assert_eq!(feed.error, None);
}

#[tokio::test]
async fn a_replaced_directory_is_watched_again() {
    let root = dir_with(&[("m/a.yaml", POD_A)]);
    let path = root.path().join("m");
    let mut rx = spawn(path.clone(), loader(&path)).unwrap();
    caught_up(&mut rx, &path).await;
    // Swap in a new directory (as a ConfigMap volume or a deploy tool does).
    std::fs::create_dir(root.path().join("next")).unwrap();
    std::fs::write(root.path().join("next/b.yaml"), POD_B).unwrap();
    std::fs::rename(&path, root.path().join("old")).unwrap();
    std::fs::rename(root.path().join("next"), &path).unwrap();
    let feed = caught_up(&mut rx, &path).await;
    assert_eq!(pods(&feed), ["default/b"]);
    // And changes inside the new directory are seen.
    std::fs::write(path.join("a.yaml"), POD_A).unwrap();
    let feed = caught_up(&mut rx, &path).await;
    assert_eq!(pods(&feed), ["default/a", "default/b"]);
}

#[tokio::test]
async fn a_single_file_replaced_by_rename_is_followed() {
    let root = dir_with(&[("pods.yaml", POD_A)]);
    let file = root.path().join("pods.yaml");
    let mut rx = spawn(file.clone(), loader(&file)).unwrap();
    caught_up(&mut rx, &file).await;
    std::fs::write(root.path().join(".pods.yaml.tmp"), POD_B).unwrap();
    std::fs::rename(root.path().join(".pods.yaml.tmp"), &file).unwrap();
    let feed = caught_up(&mut rx, &file).await;
    assert_eq!(pods(&feed), ["default/b"]);
}

#[tokio::test]
async fn a_service_edit_is_a_new_revision_and_model() {
    let svc = |port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\n\
             spec: {{selector: {{app: a}}, ports: [{{port: {port}}}]}}\n"
        )
    };
    let dir = dir_with(&[("a.yaml", POD_A), ("svc.yaml", &svc(80))]);
    let mut rx = spawn(dir.path().to_owned(), loader(dir.path())).unwrap();
    let before = caught_up(&mut rx, dir.path()).await;
    let ports = |f: &Feed| f.model.as_ref().unwrap().services[0].ports[0].port;
    assert_eq!(ports(&before), 80);
    std::fs::write(dir.path().join("svc.yaml"), svc(8080)).unwrap();
    let after = caught_up(&mut rx, dir.path()).await;
    assert_ne!(after.revision, before.revision);
    assert_eq!(ports(&after), 8080);
}
