//! The crate's layout stays what docs/ARCHITECTURE.md says it is: every
//! source file is listed there (and nothing that does not exist), no file is
//! over 800 lines, the library's top-level modules import one another
//! without a cycle, and neither do its files (files.rs draws that graph).

mod files;

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
    // The files the library and the binary are built from; unit-test files
    // (reached only through `#[cfg(test)] mod`) live beside their code and
    // are not rooms of their own.
    let files = files::Crate::read(&files::read_sources(&root())).files();
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

/// The most lines a source file may have, unit tests included: a room a
/// newcomer can hold in their head (issue 22).
const MAX_LINES: usize = 800;

#[test]
fn no_source_file_is_over_800_lines() {
    // The library and binary, their unit tests, the integration tests and
    // the benchmarks: every Rust file a newcomer may have to read.
    let mut sources = files::read_sources(&root());
    for dir in ["tests", "benches"] {
        sources.extend(files::read_tree(&root(), dir));
    }
    assert!(sources.contains_key("tests/structure/main.rs"));
    let mut over: Vec<String> = sources
        .iter()
        .map(|(file, text)| (file, text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(file, n)| format!("{file}: {n} lines"))
        .collect();
    over.sort();
    assert!(
        over.is_empty(),
        "source files over {MAX_LINES} lines (split them by concern):\n  {}",
        over.join("\n  ")
    );
}

#[test]
fn no_file_imports_another_in_a_circle() {
    let krate = files::Crate::read(&files::read_sources(&root()));
    assert!(krate.problems.is_empty(), "{:?}", krate.problems);
    assert!(
        krate.files().contains("src/gateway.rs") && krate.files().contains("src/cli/mod.rs"),
        "the walk reaches the library and the binary"
    );
    let graph = krate.graph();
    let circles = files::circles(&graph);
    let report: Vec<String> = circles
        .iter()
        .map(|c| {
            format!(
                "{}\n      {}",
                c.join(", "),
                files::edges_within(&graph, c).join("\n      ")
            )
        })
        .collect();
    assert!(
        circles.is_empty(),
        "{} import circle(s) between files (each: its files, then the edges inside it):\n  {}",
        circles.len(),
        report.join("\n  ")
    );
}

/// A made-up crate with one circle of each kind the check must see, and
/// the shapes it must not call a circle.
#[test]
fn the_file_circle_check_can_fail() {
    let sources: files::Sources = [
        ("src/lib.rs", "mod a;\nmod b;\npub mod c;\nmod d;\nmod m;\n"),
        // a and b name each other's items: one through `use`, one in a type.
        (
            "src/a.rs",
            "use crate::b::B;\npub struct A;\nfn f(_: B) {}\n",
        ),
        (
            "src/b.rs",
            "pub struct B;\nfn g() -> crate::a::A { todo!() }\n",
        ),
        // c re-exports x and y; x names y through the re-export: no circle.
        (
            "src/c/mod.rs",
            "mod x;\nmod y;\npub use x::X;\npub use y::Y;\n",
        ),
        ("src/c/x.rs", "pub struct X;\nfn k(_: super::Y) {}\n"),
        (
            "src/c/y.rs",
            "pub struct Y;\n#[cfg(test)]\nmod tests {\n    use crate::c::X;\n}\n",
        ),
        // A parent and its child naming each other's items.
        ("src/d.rs", "mod e;\npub struct D;\nfn g() { e::h(); }\n"),
        ("src/d/e.rs", "pub fn h() {}\nfn k(_: super::D) {}\n"),
        // A path seen only inside a macro's arguments still counts.
        ("src/m.rs", "mod n;\npub struct M;\nfn g() { n::h(); }\n"),
        (
            "src/m/n.rs",
            "pub fn h() { tracing::info!(m = ?crate::m::M, \"x\"); }\n",
        ),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_string(), s.to_string()))
    .collect();
    let krate = files::Crate::read(&sources);
    assert!(krate.problems.is_empty(), "{:?}", krate.problems);
    let graph = krate.graph();
    assert!(graph["src/c/x.rs"].contains("src/c/y.rs"), "{graph:?}");
    assert!(graph["src/c/mod.rs"].is_empty(), "re-exports are not edges");
    assert!(graph["src/c/y.rs"].is_empty(), "test code is not an edge");
    let circles = files::circles(&graph);
    let names: Vec<String> = circles.iter().map(|c| c.join(",")).collect();
    assert_eq!(
        names,
        vec![
            "src/a.rs,src/b.rs".to_string(),
            "src/d.rs,src/d/e.rs".to_string(),
            "src/m.rs,src/m/n.rs".to_string(),
        ]
    );
}
