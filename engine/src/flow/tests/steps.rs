//! What a step may reach: plugin files (inside the flows folder or allowed places) and outbound grants.

use super::*;

/// Issue 20, item 12: a `.wasm` plugin outside the flows folder is refused at its `plugin`
/// line unless the server allows it (`--plugin-dir`, `--plugins-anywhere`).
#[test]
fn plugin_files_outside_the_flows_folder_are_refused() {
    let source =
        |plugin: &str| format!("name = \"x\"\n[[steps]]\nid = \"a\"\nplugin = \"{plugin}\"\n");
    let exists = |_: &Path| true;
    let load_with = |plugin: &str, places: &PluginPlaces| {
        parse_flow_with(
            Path::new(FILE),
            &source(plugin),
            &LoadContext {
                env: &env,
                is_builtin: &builtin,
                plugin_exists: &exists,
                plugin_places: places,
            },
        )
    };
    let strict = PluginPlaces::default();
    for plugin in ["../elsewhere/x.wasm", "/opt/x.wasm", "plugins/../../x.wasm"] {
        let errors: Vec<String> = load_with(plugin, &strict)
            .expect_err(plugin)
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "4:10: in step 'a': plugin file `{plugin}` is outside the flows folder (/srv/flows)"
            )),
            "{errors:?}"
        );
        assert!(errors[0].contains("--plugins-anywhere"), "{errors:?}");
    }
    assert!(load_with("plugins/./x.wasm", &strict).is_ok());
    let anywhere = PluginPlaces {
        anywhere: true,
        dirs: Vec::new(),
    };
    assert!(load_with("/opt/x.wasm", &anywhere).is_ok());
    let opt = PluginPlaces {
        anywhere: false,
        dirs: vec![PathBuf::from("/opt/plugins")],
    };
    assert!(load_with("/opt/plugins/x.wasm", &opt).is_ok());
    assert!(load_with("/opt/plugins/../x.wasm", &opt).is_err());
}

#[test]
fn outbound_grants_are_read() {
    let step = step_of(
        r#"name = "x"
[[steps]]
id = "post"
plugin = "transform"
allow_hosts = ["https://hooks.slack.com", "https://*.example.com:8443", "http://127.0.0.1:9000"]
allow_private = true
max_response = "1 MiB"
max_request = 2048
"#,
    );
    let hosts: Vec<String> = step
        .outbound
        .grants
        .hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        hosts,
        [
            "https://hooks.slack.com:443",
            "https://*.example.com:8443",
            "http://127.0.0.1:9000"
        ]
    );
    assert!(step.outbound.grants.allow_private);
    assert_eq!(step.outbound.max_response, 1 << 20);
    assert_eq!(step.outbound.max_request, 2048);

    let plain = step_of("name = \"x\"\n[[steps]]\nid = \"a\"\nplugin = \"transform\"\n");
    assert!(plain.outbound.grants.hosts.is_empty());
    assert_eq!(
        plain.outbound.max_response,
        crate::plugin::outbound::DEFAULT_MAX_RESPONSE
    );
}

#[test]
fn malformed_grants_are_located() {
    let source = r#"name = "x"
[[steps]]
id = "post"
plugin = "transform"
allow_hosts = ["https://hooks.slack.com/services/T0", "https://ok.example.com", "example.com", 7]
allow_private = "yes"
max_response = "1 GiB"

[[steps]]
id = "quiet"
plugin = "transform"
max_request = "1 KiB"
"#;
    assert_eq!(
        errors(source),
        vec![
            "5:16: in step 'post': `https://hooks.slack.com/services/T0`: a grant names a host, not a path; remove everything after the host and port",
            "5:81: in step 'post': `example.com` is not a host grant: write a scheme and a host, with an optional port, such as \"https://hooks.slack.com\" or \"http://127.0.0.1:9000\"",
            "5:96: in step 'post': `allow_hosts` must be a string, found integer",
            "6:17: in step 'post': `allow_private` must be true or false, found string",
            "7:16: in step 'post': `max_response` must be at most 256 MiB",
            "12:15: in step 'quiet': `max_request` only applies with `allow_hosts`, the hosts the step may call",
        ]
    );
}
