//! The crate's layout stays what docs/ARCHITECTURE.md says it is: every
//! source file is listed there (and nothing that does not exist), and the
//! library's modules import one another without a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src/`, as `src/...` with forward slashes.
fn source_files() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        let entries = std::fs::read_dir(dir).expect("src/ is readable");
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root()).expect("under the crate");
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&root().join("src"), &mut out);
    out
}

/// Unit-test files live beside their code and are not rooms of their own.
fn is_test_file(path: &str) -> bool {
    path.ends_with("/tests.rs")
}

#[test]
fn architecture_md_lists_exactly_the_source_files() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md exists");
    let listed: BTreeSet<String> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("src/") && s.ends_with(".rs"))
        .map(str::to_string)
        .collect();
    let files: BTreeSet<String> = source_files()
        .into_iter()
        .filter(|f| !is_test_file(f))
        .collect();
    let missing: Vec<_> = files.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&files).collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not list {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/ARCHITECTURE.md lists files that do not exist: {stale:?}"
    );
}

/// The library's top-level module a file belongs to (`src/backend/http.rs`
/// → `backend`), or `None` for the binary and the crate root.
fn module_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    match name {
        "lib" | "main" | "cli" => None,
        other => Some(other.to_string()),
    }
}

/// `crate::<module>` paths used in code (comments and unit tests aside).
fn imports(source: &str) -> BTreeSet<String> {
    let code = match source.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &source[..i],
        None => source,
    };
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in source_files() {
        if is_test_file(&file) {
            continue;
        }
        let Some(module) = module_of(&file) else {
            continue;
        };
        let source = std::fs::read_to_string(root().join(&file)).expect("source readable");
        let deps = graph.entry(module.clone()).or_default();
        for dep in imports(&source) {
            // `proto` is generated code with no imports of its own.
            if dep != module && dep != "proto" {
                deps.insert(dep);
            }
        }
    }
    graph
}

#[test]
fn modules_import_each_other_without_a_cycle() {
    let graph = module_graph();
    assert!(graph.contains_key("gateway") && graph.contains_key("server"));
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("module import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_check_can_fail() {
    // The parser must see real imports, or the test above proves nothing.
    let deps = imports("use crate::gateway::Gateway;\n// crate::audit in a comment\nfn f() { crate::error::x(); }\n#[cfg(test)]\nmod tests {\n use crate::server;\n}\n");
    assert_eq!(
        deps,
        BTreeSet::from(["gateway".to_string(), "error".to_string()])
    );
    let graph = module_graph();
    assert!(
        graph["server"].contains("gateway"),
        "server serves the gateway"
    );
}
