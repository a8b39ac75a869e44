//! Plugin contract 0.2: a step's config is checked by its plugin (`validate-config`) when the
//! flow loads and by `weir validate`, and a bad one is an error at the step's `config` line
//! with the plugin's message; a component built for contract 0.1 is refused with a message
//! to rebuild it.

use weir_tests::{FlowDir, Weir, weir_command};

/// A flow whose step `check` has `config_line` as its line 6 (1-based).
fn flow_with(plugin: &str, config_line: &str) -> String {
    format!(
        "name = \"checked\"\n\n[[steps]]\nid = \"check\"\nplugin = \"{plugin}\"\n{config_line}\n"
    )
}

/// `weir validate` on the folder: exit code and stderr.
fn validate(flows: &FlowDir) -> (Option<i32>, String) {
    let out = weir_command()
        .arg("validate")
        .arg(flows.path())
        .output()
        .expect("weir validate runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn weir_validate_reports_a_config_the_plugin_refuses_at_its_config_line() {
    let flows = FlowDir::empty();
    flows.write(
        "regex.toml",
        &flow_with("filter", r#"config = { matches = "(unclosed" }"#),
    );
    flows.write(
        "template.toml",
        &flow_with("template", r#"config.template = "{% if %}""#),
    );
    flows.write(
        "unknown.toml",
        &flow_with("filter", r#"config = { equal = "opened" }"#),
    );
    flows.write(
        "schema.toml",
        &flow_with(
            "json-schema",
            r#"config = { schema = { type = "no-such-type" } }"#,
        ),
    );
    flows.write(
        "http.toml",
        &flow_with("http", r#"config = { url = "ftp://example.com/" }"#),
    );
    flows.write(
        "fine.toml",
        &flow_with("filter", r#"config = { matches = "^(opened|closed)$" }"#),
    );
    let (code, stderr) = validate(&flows);
    assert_eq!(code, Some(1), "{stderr}");
    let line_of = |file: &str| {
        stderr
            .lines()
            .find(|l| l.contains(&format!("{file}:")))
            .unwrap_or_else(|| panic!("no error for {file}: {stderr}"))
            .to_owned()
    };
    let regex = line_of("regex.toml");
    assert!(regex.contains("regex.toml:6:10"), "{regex}");
    assert!(regex.contains("in step 'check': config:"), "{regex}");
    assert!(regex.contains("invalid regex"), "{regex}");
    let template = line_of("template.toml");
    // A dotted `config.template = ...` points at its first key.
    assert!(template.contains("template.toml:6:1:"), "{template}");
    assert!(template.contains("syntax error"), "{template}");
    let unknown = line_of("unknown.toml");
    assert!(unknown.contains("unknown.toml:6:10"), "{unknown}");
    assert!(unknown.contains("unknown field `equal`"), "{unknown}");
    let schema = line_of("schema.toml");
    assert!(schema.contains("schema.toml:6:10"), "{schema}");
    assert!(schema.contains("not a valid JSON Schema"), "{schema}");
    let http = line_of("http.toml");
    assert!(http.contains("http.toml:6:10"), "{http}");
    assert!(
        http.contains("must be an http:// or https:// URL"),
        "{http}"
    );
    assert!(!stderr.contains("fine.toml:"), "{stderr}");
    assert!(stderr.contains("5 of 6 flow files have errors"), "{stderr}");
}

#[test]
fn a_served_flow_with_a_config_its_plugin_refuses_does_not_load_and_says_where() {
    let flows = FlowDir::empty();
    flows.write(
        "regex.toml",
        &flow_with("filter", r#"config = { matches = "(unclosed" }"#),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let flow = weir.flow("regex");
    assert_eq!(flow["status"], "error", "{flow}");
    let error = &flow["errors"][0];
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_u64()),
        (Some(6), Some(10))
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid regex"),
        "{flow}"
    );

    // Fixed in place, it loads.
    flows.write(
        "regex.toml",
        &flow_with("filter", r#"config = { matches = "(closed)" }"#),
    );
    weir_tests::wait_for(
        std::time::Duration::from_secs(20),
        "the fixed flow to load",
        || (weir.flow("regex")["status"] == "ok").then_some(()),
    );
}

/// A component that imports `weir:plugin/log@0.1.0`, as every plugin built with the 0.1 SDK
/// does (with an empty instance type: the version alone must decide).
fn contract_0_1_component() -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    let mut imports = ComponentImportSection::new();
    imports.import("weir:plugin/log@0.1.0", ComponentTypeRef::Instance(0));
    let mut component = Component::new();
    component.section(&types).section(&imports);
    component.finish()
}

#[test]
fn a_plugin_built_for_contract_0_1_is_refused_with_a_message_to_rebuild_it() {
    let flows = FlowDir::empty();
    std::fs::write(flows.path().join("old.wasm"), contract_0_1_component()).unwrap();
    flows.write("old.toml", &flow_with("old.wasm", ""));
    let (code, stderr) = validate(&flows);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("old.toml:5:10"), "{stderr}");
    assert!(
        stderr.contains("built for Weir's plugin contract 0.1.0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rebuild the plugin with the current weir-sdk"),
        "{stderr}"
    );
}
