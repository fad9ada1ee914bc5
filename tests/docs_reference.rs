//! The reference in docs/ checked against the code, both ways: every config
//! field serde accepts is in docs/CONFIG.md and every field there exists;
//! every subcommand and flag of the built binary is in docs/CLI.md and every
//! one there exists; every relative link in README.md and docs/*.md reaches a
//! file and, for a markdown file, a heading. (The reason table is checked
//! beside the reasons, in src/error.rs.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// One row of a markdown table: the first cell of its header row, the
/// first cell of the row itself, and the heading the table is under.
struct Row {
    header: String,
    first: String,
    heading: String,
}

/// Every table row of `doc` (header and separator rows excluded), outside
/// code blocks.
fn table_rows(doc: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut heading = String::new();
    let mut header: Option<String> = None;
    let mut fenced = false;
    let mut lines = doc.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_string();
            continue;
        }
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        let first = first_cell(line);
        match &header {
            None => {
                // A header row is followed by its |---| separator.
                if lines.peek().is_some_and(|next| next.starts_with("|-")) {
                    lines.next();
                    header = Some(first);
                }
            }
            Some(h) => rows.push(Row {
                header: h.clone(),
                first,
                heading: heading.clone(),
            }),
        }
    }
    rows
}

fn first_cell(line: &str) -> String {
    line.trim_start_matches('|')
        .split(" | ")
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches('|')
        .trim()
        .to_string()
}

/// The text of a cell that is one backticked span: `` `a.b` `` → `a.b`.
fn backticked(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.strip_suffix('`')
}

/// Panics listing what only one side has, in a message that says which
/// side to fix.
fn assert_same(what: &str, doc: &str, documented: &BTreeSet<String>, actual: &BTreeSet<String>) {
    let missing: Vec<_> = actual.difference(documented).collect();
    let stale: Vec<_> = documented.difference(actual).collect();
    if missing.is_empty() && stale.is_empty() {
        return;
    }
    let mut message = format!("{doc} and the {what} disagree.");
    if !missing.is_empty() {
        message.push_str(&format!(
            "\n  in the {what} but not documented in {doc} (add a row):\n    {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    if !stale.is_empty() {
        message.push_str(&format!(
            "\n  documented in {doc} but not in the {what} (remove or rename the row):\n    {}",
            stale
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    panic!("{message}");
}

// ---------------------------------------------------------------------------
// docs/CONFIG.md

/// A documented path with every user-chosen name (`<tier>`, `<tool>`)
/// written as `<name>`, the walker's spelling.
fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        match rest[open..].find('>') {
            Some(close) => {
                out.push_str("<name>");
                rest = &rest[open + close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The paths of docs/CONFIG.md's tables whose header's first cell is
/// `header`.
fn documented_paths(doc: &str, header: &str) -> BTreeSet<String> {
    table_rows(doc)
        .into_iter()
        .filter(|r| r.header == header)
        .map(|r| match backticked(&r.first) {
            Some(path) => normalise(path),
            None => panic!(
                "docs/CONFIG.md, under {:?}: a {header:?} row whose first cell is not one backticked path: {:?}",
                r.heading, r.first
            ),
        })
        .collect()
}

/// `node` with every `$ref` followed.
fn resolve<'a>(schema: &'a Value, mut node: &'a Value) -> &'a Value {
    while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        node = schema
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("the config schema's $ref {reference} resolves to nothing"));
    }
    node
}

/// The alternatives `node` stands for: the branches of its
/// `anyOf`/`oneOf`/`allOf` (an untagged or tagged enum, an `Option`, a
/// flattened struct), and itself when it says something of its own.
fn branches<'a>(schema: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    let node = resolve(schema, node);
    let mut out = Vec::new();
    let mut combined = false;
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = node.get(key).and_then(Value::as_array) {
            combined = true;
            for branch in list {
                out.extend(branches(schema, branch));
            }
        }
    }
    if !combined || node.get("properties").is_some() || node.get("type").is_some() {
        out.push(node);
    }
    out
}

fn types(node: &Value) -> Vec<&str> {
    match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The schema of a map's values, when `node` is a map keyed by names the
/// user chooses (`[tier.<name>]`, `env = { … }`).
fn map_values(node: &Value) -> Option<&Value> {
    node.get("additionalProperties").filter(|v| v.is_object())
}

/// Whether a value of this schema is a TOML table with fields of its own
/// (a struct), in some branch.
fn is_table(schema: &Value, node: &Value) -> bool {
    branches(schema, node).into_iter().any(|b| {
        b.get("properties").is_some()
            || map_values(b).is_some_and(|values| is_table(schema, values))
    })
}

/// Every field path under `node`, named as docs/CONFIG.md names them: `a.b`,
/// `a[].b` for arrays of tables, `a.<name>.b` for maps of tables; a map or
/// array of plain values is one field.
fn walk(schema: &Value, node: &Value, path: &str, out: &mut BTreeSet<String>) {
    let join = |segment: &str| {
        if path.is_empty() {
            segment.to_string()
        } else if segment == "[]" {
            format!("{path}[]")
        } else {
            format!("{path}.{segment}")
        }
    };
    for branch in branches(schema, node) {
        if let Some(properties) = branch.get("properties").and_then(Value::as_object) {
            for (name, field) in properties {
                walk(schema, field, &join(name), out);
            }
            continue;
        }
        let kinds = types(branch);
        if kinds == ["null"] {
            continue;
        }
        if let Some(values) = map_values(branch).filter(|v| is_table(schema, v)) {
            walk(schema, values, &join("<name>"), out);
        } else if let Some(items) = branch
            .get("items")
            .filter(|items| kinds.contains(&"array") && is_table(schema, items))
        {
            walk(schema, items, &join("[]"), out);
        } else if !path.is_empty() {
            out.insert(path.to_string());
        }
    }
}

#[test]
fn config_md_documents_every_config_field_and_no_other() {
    let schema = sealgate::config::schema();
    let mut actual = BTreeSet::new();
    walk(&schema, &schema, "", &mut actual);
    assert!(
        actual.len() > 50,
        "the config schema walk found only {} fields: {actual:?}",
        actual.len()
    );
    let documented = documented_paths(&read("docs/CONFIG.md"), "field");
    assert_same(
        "config schema (sealgate::config::schema())",
        "docs/CONFIG.md",
        &documented,
        &actual,
    );
}

/// The fields serde accepts at `at` (a path of `(name, is_array)` steps)
/// in a file `parse` reads: found by writing an unknown field there and
/// reading the list serde's `deny_unknown_fields` answers with. A field
/// that is itself a table (or an array of tables) is walked the same way.
fn probe(
    parse: &dyn Fn(&str) -> Result<(), String>,
    at: &mut Vec<(String, bool)>,
    out: &mut BTreeSet<String>,
) -> bool {
    const PROBE: &str = "zzz_probe";
    fn nest(steps: &[(String, bool)]) -> String {
        match steps.split_first() {
            None => format!("{{ {PROBE} = 1 }}"),
            Some(((name, array), rest)) => {
                let inner = nest(rest);
                let value = if *array { format!("[{inner}]") } else { inner };
                format!("{{ {name} = {value} }}")
            }
        }
    }
    let table = nest(at);
    let text = &table[2..table.len() - 2];
    let message = match parse(text) {
        Ok(()) => return false,
        Err(message) => message,
    };
    let Some((_, expected)) = message.split_once(&format!("unknown field `{PROBE}`")) else {
        return false;
    };
    let fields: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    for field in fields {
        let path = at
            .iter()
            .map(|(name, array)| format!("{name}{}", if *array { "[]" } else { "" }))
            .chain(std::iter::once(field.clone()))
            .collect::<Vec<_>>()
            .join(".");
        let mut table = false;
        for array in [false, true] {
            at.push((field.clone(), array));
            table |= probe(parse, at, out);
            at.pop();
        }
        if !table {
            out.insert(path);
        }
    }
    true
}

#[test]
fn config_md_documents_every_registry_and_profile_field() {
    let doc = read("docs/CONFIG.md");
    let registry = |text: &str| {
        sealgate::identity::Registry::parse(
            text,
            sealgate::policy::RateLimitFile {
                per_second: 1,
                burst: 1,
            },
        )
        .map(|_| ())
    };
    let mut actual = BTreeSet::new();
    assert!(probe(&registry, &mut Vec::new(), &mut actual));
    assert_same(
        "client registry (clients.toml) as serde reads it",
        "docs/CONFIG.md",
        &documented_paths(&doc, "registry field"),
        &actual,
    );
    let profile = |text: &str| {
        toml::from_str::<sealgate::client::Profile>(text)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let mut actual = BTreeSet::new();
    assert!(probe(&profile, &mut Vec::new(), &mut actual));
    assert_same(
        "client profile as serde reads it",
        "docs/CONFIG.md",
        &documented_paths(&doc, "profile field"),
        &actual,
    );
}

// ---------------------------------------------------------------------------
// docs/CLI.md

/// What `sealgate <path> -h` shows: its subcommands (clap's own `help`
/// excluded), and its long flags and positional arguments.
struct Help {
    commands: Vec<String>,
    arguments: BTreeSet<String>,
}

fn help(path: &[String]) -> Help {
    let output = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(path)
        .arg("-h")
        .output()
        .expect("run sealgate -h");
    assert!(
        output.status.success(),
        "sealgate {} -h failed: {}",
        path.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("help is UTF-8");
    let mut section = "";
    let mut commands = Vec::new();
    let mut arguments = BTreeSet::new();
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let first = line.split_whitespace().next().unwrap_or("");
        match section {
            "Commands:" if indent == 2 && first != "help" => commands.push(first.to_string()),
            "Arguments:" if indent == 2 => {
                arguments.insert(first.trim_end_matches("...").to_string());
            }
            // `  -h, --help` or `      --dir <DIR>`; a description on a
            // line of its own is indented further.
            "Options:" if indent <= 6 => {
                if let Some(long) = line.split_whitespace().find(|w| w.starts_with("--")) {
                    arguments.insert(long.trim_end_matches(',').to_string());
                }
            }
            _ => {}
        }
    }
    Help {
        commands,
        arguments,
    }
}

#[test]
fn cli_md_documents_every_command_and_flag() {
    // The built binary's commands and their flags, recursively; flags every
    // command inherits from `sealgate` itself (`--log-format`, `--help`) are
    // documented once, under `sealgate`, and `--help` not at all.
    let top = help(&[]);
    let mut actual: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut inherited: Option<BTreeSet<String>> = None;
    while let Some(path) = queue.pop() {
        let h = help(&path);
        for c in &h.commands {
            let mut sub = path.clone();
            sub.push(c.clone());
            queue.push(sub);
        }
        if !path.is_empty() {
            let common: BTreeSet<String> =
                top.arguments.intersection(&h.arguments).cloned().collect();
            inherited = Some(match inherited {
                None => common,
                Some(before) => before.intersection(&common).cloned().collect(),
            });
        }
        let name = std::iter::once("sealgate".to_string())
            .chain(path)
            .collect::<Vec<_>>()
            .join(" ");
        actual.insert(name, h.arguments);
    }
    let inherited = inherited.unwrap_or_default();
    let mut actual_set = BTreeSet::new();
    for (command, arguments) in &actual {
        actual_set.insert(command.clone());
        for a in arguments {
            let own = command == "sealgate" || !inherited.contains(a);
            if own && a != "--help" {
                actual_set.insert(format!("{command} {a}"));
            }
        }
    }

    // docs/CLI.md: a heading `sealgate …` per command, and under it a
    // table whose first cells are its flags and arguments (`--dir DIR`,
    // `<ID>`).
    let doc = read("docs/CLI.md");
    let mut documented = BTreeSet::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && line.starts_with('#') {
            if let Some(command) = backticked(line.trim_start_matches('#').trim()) {
                documented.insert(command.to_string());
            }
        }
    }
    for row in table_rows(&doc) {
        let Some(command) = backticked(&row.heading).filter(|c| c.starts_with("sealgate")) else {
            panic!(
                "docs/CLI.md: a table under {:?}, which is not a `sealgate …` heading",
                row.heading
            );
        };
        let Some(argument) = backticked(&row.first).and_then(|a| a.split_whitespace().next())
        else {
            panic!(
                "docs/CLI.md, under {command}: a row whose first cell is not a backticked flag or argument: {:?}",
                row.first
            );
        };
        documented.insert(format!("{command} {argument}"));
    }
    assert_same(
        "`sealgate … -h` of the built binary",
        "docs/CLI.md",
        &documented,
        &actual_set,
    );
}

// ---------------------------------------------------------------------------
// Links and the front door

/// GitHub's anchor for a heading: lower case, punctuation dropped
/// (hyphens and underscores kept), spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a markdown file has: its headings' slugs, a repeated one
/// numbered `-1`, `-2`… as GitHub does.
fn anchors(doc: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let base = slug(line.trim_start_matches('#'));
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

#[test]
fn relative_links_in_readme_and_docs_resolve() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read a markdown file");
        let name = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        let mut fenced = false;
        for line in text.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
            }
            if fenced {
                continue;
            }
            for piece in line.split("](").skip(1) {
                let Some(target) = piece.split(')').next() else {
                    continue;
                };
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target, None),
                };
                let resolved = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().expect("a parent").join(path)
                };
                if !resolved.exists() {
                    broken.push(format!(
                        "{name}: ]({target}): no file {}",
                        resolved.display()
                    ));
                    continue;
                }
                if let Some(anchor) = anchor {
                    if resolved.extension().is_some_and(|e| e == "md") {
                        let heads = anchors(&std::fs::read_to_string(&resolved).expect("read"));
                        if !heads.contains(anchor) {
                            broken.push(format!("{name}: ]({target}): no heading #{anchor}"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "relative links that reach nothing:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn readme_is_a_front_door_that_keeps_its_two_commands_and_maps_every_doc() {
    let readme = read("README.md");
    assert!(
        readme.len() <= 15 * 1024,
        "README.md is {} bytes; the front door stays at most 15 KB (the reference belongs in docs/)",
        readme.len()
    );
    let two = readme
        .split("\n## Two commands\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has a `## Two commands` section");
    for command in ["cargo run --release -- dev", "./scripts/test.sh"] {
        assert!(
            two.contains(command),
            "README.md's `## Two commands` no longer gives `{command}` (.ci/run relies on ./scripts/test.sh being it)"
        );
    }
    assert!(
        root().join("scripts/test.sh").exists(),
        "scripts/test.sh, the README's test command, is gone"
    );
    for file in markdown_files().iter().skip(1) {
        let name = file
            .strip_prefix(root())
            .unwrap_or(file)
            .display()
            .to_string();
        assert!(
            readme.contains(&format!("]({name})")),
            "README.md's map of the docs does not link {name}"
        );
    }
}
