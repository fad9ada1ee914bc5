//! docs/POLICY.md's `[anomaly]` examples show the defaults: every value in
//! them is what the gateway uses when the field is left out, so an operator
//! reading the page never mistakes an example for a default. A value other
//! than the default appears only in a comment that says so.

use std::path::PathBuf;

use sealgate::policy::AnomalyConfig;

/// The ```toml blocks of a Markdown page, in order.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AnomalyOnly {
    anomaly: AnomalyConfig,
}

#[test]
fn the_anomaly_examples_in_policy_md_are_the_defaults() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/POLICY.md");
    let doc = std::fs::read_to_string(&path).expect("docs/POLICY.md");
    let blocks: Vec<String> = toml_blocks(&doc)
        .into_iter()
        .filter(|b| b.trim_start().starts_with("[anomaly"))
        .collect();
    assert!(
        blocks.len() >= 6,
        "the section and each of the five detectors has an example: {blocks:?}"
    );
    for block in &blocks {
        let first = block.lines().next().unwrap_or("");
        assert!(
            first.contains("defaults shown"),
            "each [anomaly] example says that it shows the defaults: {first:?}"
        );
    }
    let all = blocks.concat();
    let parsed: AnomalyOnly = toml::from_str(&all).expect("the examples parse as a config");
    assert_eq!(
        parsed.anomaly,
        AnomalyConfig::default(),
        "a value in docs/POLICY.md's [anomaly] examples differs from its default"
    );
}
