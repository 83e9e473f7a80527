use super::*;

fn entry() -> Map<String, Value> {
    let v = serde_json::json!({"socket": "/run/bulkhead/agent.sock", "timeout": "30s"});
    v.as_object().unwrap().clone()
}

/// A directory with `files` and a fake executable.
fn node(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (bin, conf) = (dir.path().join("bin"), dir.path().join("net.d"));
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&conf).unwrap();
    for (name, text) in files {
        fs::write(conf.join(name), text).unwrap();
    }
    let exe = dir.path().join("exe");
    fs::write(&exe, b"\x7fELF plugin").unwrap();
    (dir, exe, bin, conf)
}

const PTP: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "kindnet",
  "plugins": [
    {"type": "ptp", "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]]}, "mtu": 1500},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}"#;

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn install_appends_to_the_first_list_keeping_the_rest_and_is_idempotent() {
    let (_d, exe, bin, conf) = node(&[("10-kindnet.conflist", PTP), ("20-other.conflist", PTP)]);
    let done = install(&exe, &bin, &conf, entry()).unwrap();
    assert!(done.changed);
    assert_eq!(done.conflist, conf.join("10-kindnet.conflist"));
    assert_eq!(fs::read(bin.join(PLUGIN_TYPE)).unwrap(), b"\x7fELF plugin");
    let mode = fs::metadata(bin.join(PLUGIN_TYPE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let after = json(&done.conflist);
    let mut expected: Value = serde_json::from_str(PTP).unwrap();
    expected["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "socket": "/run/bulkhead/agent.sock", "timeout": "30s", "type": "bulkhead-cni"
        }));
    assert_eq!(after, expected);
    let keys: Vec<&String> = after.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["cniVersion", "name", "plugins"], "field order kept");
    assert_eq!(
        json(&conf.join("20-other.conflist")),
        serde_json::from_str::<Value>(PTP).unwrap()
    );
    // Again: nothing to do, and still one entry.
    let again = install(&exe, &bin, &conf, entry()).unwrap();
    assert!(!again.changed);
    assert_eq!(json(&done.conflist), expected);
    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(&conf)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_changed_entry_is_replaced_and_moved_last() {
    let mut list: Value = serde_json::from_str(PTP).unwrap();
    let plugins = list["plugins"].as_array_mut().unwrap();
    plugins.insert(
        1,
        serde_json::json!({"type": "bulkhead-cni", "timeout": "5s"}),
    );
    let (_d, exe, bin, conf) = node(&[("10-kindnet.conflist", &list.to_string())]);
    install(&exe, &bin, &conf, entry()).unwrap();
    let after = json(&conf.join("10-kindnet.conflist"));
    let types: Vec<&str> = after["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ptp", "portmap", "bulkhead-cni"]);
    assert_eq!(after["plugins"][2]["timeout"], "30s");
}

#[test]
fn a_single_plugin_conf_becomes_a_list() {
    let conf_text = r#"{"cniVersion":"0.3.1","name":"bridge","type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}}"#;
    let (_d, exe, bin, conf) = node(&[("10-bridge.conf", conf_text), ("99-late.conflist", PTP)]);
    let done = install(&exe, &bin, &conf, entry()).unwrap();
    assert_eq!(done.conflist, conf.join("10-bridge.conflist"));
    assert!(
        !conf.join("10-bridge.conf").exists(),
        "the list replaces the conf"
    );
    let after = json(&done.conflist);
    assert_eq!(after["cniVersion"], "0.3.1");
    assert_eq!(after["name"], "bridge");
    assert_eq!(
        after["plugins"][0],
        serde_json::json!({"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}})
    );
    assert_eq!(after["plugins"][1]["type"], "bulkhead-cni");
    assert_eq!(primary_conf(&conf).unwrap(), done.conflist);
}

#[test]
fn uninstall_removes_only_ours_and_is_idempotent() {
    let (_d, exe, bin, conf) = node(&[("10-kindnet.conflist", PTP)]);
    install(&exe, &bin, &conf, entry()).unwrap();
    let changed = uninstall(&bin, &conf).unwrap();
    assert_eq!(changed.len(), 2);
    assert_eq!(
        json(&conf.join("10-kindnet.conflist")),
        serde_json::from_str::<Value>(PTP).unwrap()
    );
    assert!(!bin.join(PLUGIN_TYPE).exists());
    assert!(uninstall(&bin, &conf).unwrap().is_empty());
}

#[test]
fn bad_configurations_change_nothing_and_say_which_file() {
    let (_d, exe, bin, conf) = node(&[]);
    assert!(matches!(
        install(&exe, &bin, &conf, entry()),
        Err(InstallError::NoConfig { .. })
    ));
    fs::write(conf.join("10-x.conflist"), "{not json").unwrap();
    let e = install(&exe, &bin, &conf, entry()).unwrap_err();
    assert!(e.to_string().contains("10-x.conflist"), "{e}");
    fs::write(conf.join("10-x.conflist"), r#"{"name":"x","plugins":{}}"#).unwrap();
    let e = install(&exe, &bin, &conf, entry()).unwrap_err();
    assert!(matches!(e, InstallError::Shape { .. }), "{e}");
    assert_eq!(
        fs::read_to_string(conf.join("10-x.conflist")).unwrap(),
        r#"{"name":"x","plugins":{}}"#
    );
}
