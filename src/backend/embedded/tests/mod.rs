//! Unit tests of the embedded backend: the bundled data and definitions,
//! every tool's filters, lookups and pagination, and every argument error.

use serde_json::{json, Map, Value};

use super::args::{is_date_string, MAX_SAFE_INTEGER};
use super::dataset::{DATA_SOURCE, SAMPLE_DATA_JSON};
use super::*;

mod errors;
mod tools;

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("test arguments must be an object, got {other}"),
    }
}

/// The JSON inside the single text content item of a result.
fn body(result: &Value) -> Value {
    let content = result["content"]
        .as_array()
        .expect("result has a content array");
    assert_eq!(content.len(), 1, "one content item: {result}");
    assert_eq!(content[0]["type"], "text");
    let text = content[0]["text"].as_str().expect("text content");
    serde_json::from_str(text).expect("text content is JSON")
}

fn ok(tools: &EmbeddedTools, name: &str, arguments: Value) -> Value {
    let result = tools.call(name, &obj(arguments));
    assert!(result.get("isError").is_none(), "{name} failed: {result}");
    assert!(result.get("structuredContent").is_none());
    let body = body(&result);
    assert_eq!(body["dataSource"], DATA_SOURCE, "{name} result is marked");
    body
}

fn err(tools: &EmbeddedTools, name: &str, arguments: Value) -> String {
    let result = tools.call(name, &obj(arguments));
    assert_eq!(
        result["isError"],
        json!(true),
        "{name} should fail: {result}"
    );
    let body = body(&result);
    assert_eq!(body["dataSource"], DATA_SOURCE);
    assert_eq!(body["toolName"], name);
    body["error"].as_str().expect("error message").to_string()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("paginated data array")
        .iter()
        .map(|item| item["id"].as_str().expect("item id").to_string())
        .collect()
}

fn raw_dataset() -> Value {
    serde_json::from_str(SAMPLE_DATA_JSON).expect("sample_data.json is JSON")
}

#[test]
fn bundled_data_and_definitions_parse() {
    let tools = EmbeddedTools::new();
    assert_eq!(tools.tool_definitions().len(), 8);
    assert_eq!(tools.data.meps.len(), 30);
    let _ = EmbeddedTools::default();
}

/// Every file under `tools/` is a listed, well-formed definition named after
/// its file, and no two tools share a name.
#[test]
fn tool_definition_files_are_well_formed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/backend/embedded/tools");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("tools directory")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = definitions::TOOL_FILES
        .iter()
        .map(|(name, _)| format!("{name}.json"))
        .collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every file in tools/ is listed, and only those"
    );
    let mut names = std::collections::BTreeSet::new();
    for (file, text) in definitions::TOOL_FILES {
        let def: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("tools/{file}.json is not JSON: {e}"));
        assert_eq!(def["name"], file, "tools/{file}.json names another tool");
        assert!(names.insert(file), "{file} defined twice");
        let schema = &def["inputSchema"];
        assert_eq!(
            schema["type"], "object",
            "{file}: inputSchema is an object schema"
        );
        assert!(
            schema["properties"].is_object(),
            "{file}: inputSchema has properties"
        );
        assert!(
            schema.get("required").is_none_or(Value::is_array),
            "{file}: required is a list"
        );
    }
    assert_eq!(definitions::load().len(), definitions::TOOL_FILES.len());
}

#[test]
fn dataset_is_labelled_as_fictional_sample_data() {
    let raw = raw_dataset();
    let notice = raw["_notice"]
        .as_str()
        .expect("_notice present")
        .to_lowercase();
    assert!(notice.contains("fictional sample data"));
    assert!(notice.contains("not real european parliament data"));
    assert_eq!(raw["dataSource"], DATA_SOURCE);
    let tools = EmbeddedTools::new();
    for mep in &tools.data.meps {
        assert!(mep.name.starts_with("Sample MEP "), "{}", mep.name);
        assert!(mep
            .email
            .as_deref()
            .is_some_and(|e| e.ends_with(".invalid")));
    }
    let countries: std::collections::BTreeSet<_> =
        tools.data.meps.iter().map(|m| m.country.as_str()).collect();
    let groups: std::collections::BTreeSet<_> = tools
        .data
        .meps
        .iter()
        .map(|m| m.political_group.as_str())
        .collect();
    assert!(countries.len() >= 10 && groups.len() >= 6);
}

#[test]
fn dataset_is_consistent() {
    let tools = EmbeddedTools::new();
    let d = &tools.data;
    let mep = |id: &str| d.meps.iter().find(|m| m.id == id);
    for m in &d.meps {
        assert!(m.country.len() == 2 && is_date_string(&m.term_start));
    }
    for c in &d.committees {
        assert!(c.members.contains(&c.chair));
        for member in c.members.iter().chain(&c.vice_chairs) {
            let m = mep(member).expect("committee member is an MEP");
            assert!(m.committees.contains(&c.abbreviation));
        }
    }
    for m in d.meps.iter().filter(|m| m.active) {
        for abbr in &m.committees {
            let c = d.committees.iter().find(|c| &c.abbreviation == abbr);
            assert!(c.expect("known committee").members.contains(&m.id));
        }
    }
    for s in &d.plenary_sessions {
        assert!(is_date_string(&s.date));
        for v in &s.voting_records {
            assert!(d
                .voting_records
                .iter()
                .any(|r| &r.id == v && r.session_id == s.id));
        }
        for doc in &s.documents {
            assert!(d.documents.iter().any(|x| &x.id == doc), "{doc}");
        }
    }
    for v in &d.voting_records {
        let count = |what: &str| v.mep_votes.values().filter(|x| *x == what).count() as u64;
        assert_eq!(
            (count("FOR"), count("AGAINST"), count("ABSTAIN")),
            (v.votes_for, v.votes_against, v.abstentions)
        );
        assert!(v.mep_votes.keys().all(|k| mep(k).is_some()));
        assert_eq!(v.result == "ADOPTED", v.votes_for > v.votes_against);
    }
    let doc_types = [
        "REPORT",
        "RESOLUTION",
        "DECISION",
        "DIRECTIVE",
        "REGULATION",
        "OPINION",
        "AMENDMENT",
    ];
    for doc in &d.documents {
        assert!(doc_types.contains(&doc.doc_type.as_str()) && is_date_string(&doc.date));
        assert!(doc.authors.iter().all(|a| mep(a).is_some()));
    }
    for q in &d.parliamentary_questions {
        let author = mep(&q.author).expect("question author is an MEP");
        assert_eq!(author.name, q.author_name);
        assert_eq!(q.status == "ANSWERED", q.answer_text.is_some());
    }
}

#[test]
fn tool_definitions_match_the_real_server() {
    let tools = EmbeddedTools::new();
    let defs = tools.tool_definitions();
    let names: Vec<_> = defs
        .iter()
        .map(|d| d["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "get_meps",
            "get_mep_details",
            "get_plenary_sessions",
            "get_voting_records",
            "search_documents",
            "get_committee_info",
            "get_parliamentary_questions",
            "get_current_meps"
        ]
    );
    for def in defs {
        let keys: Vec<_> = def
            .as_object()
            .expect("tool object")
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert!(def["description"].as_str().is_some_and(|d| d.len() > 40));
        assert_eq!(def["inputSchema"]["type"], "object");
        assert!(def["inputSchema"]["properties"].is_object());
    }
    let by_name = |n: &str| {
        defs.iter()
            .find(|d| d["name"] == n)
            .expect("tool defined")
            .clone()
    };
    let meps = by_name("get_meps");
    assert_eq!(meps["category"], "core");
    assert!(meps["description"]
        .as_str()
        .is_some_and(|d| d.starts_with("Retrieve Members of European Parliament")));
    let p = &meps["inputSchema"]["properties"];
    assert_eq!(p["country"]["pattern"], "^[A-Z]{2}$");
    assert_eq!(p["country"]["maxLength"], 2);
    assert_eq!(p["group"]["maxLength"], 50);
    assert_eq!(p["active"]["default"], true);
    assert_eq!(
        p["limit"],
        json!({"type": "number", "description": "Maximum number of results to return (1-100)",
               "minimum": 1, "maximum": 100, "default": 50})
    );
    assert_eq!(
        by_name("get_mep_details")["inputSchema"]["required"],
        json!(["id"])
    );
    let docs = by_name("search_documents");
    let p = &docs["inputSchema"]["properties"];
    assert_eq!(p["keyword"]["pattern"], "^[a-zA-Z0-9\\s\\-_]+$");
    assert_eq!(p["limit"]["default"], 20);
    assert_eq!(p["documentType"]["enum"].as_array().map(Vec::len), Some(7));
    assert_eq!(p["dateFrom"]["pattern"], "^\\d{4}-\\d{2}-\\d{2}$");
    let committee = by_name("get_committee_info");
    assert_eq!(
        committee["inputSchema"]["properties"]["abbreviation"]["maxLength"],
        20
    );
    let questions = by_name("get_parliamentary_questions");
    assert_eq!(
        questions["inputSchema"]["properties"]["status"]["enum"],
        json!(["PENDING", "ANSWERED"])
    );
    assert_eq!(by_name("get_current_meps")["category"], "phase4");
    // Every tool in the definitions is answered (no "Unknown tool").
    for name in names {
        let result = tools.call(name, &Map::new());
        let text = body(&result)["error"].as_str().unwrap_or("").to_string();
        assert!(!text.starts_with("Unknown tool"), "{name}");
    }
}
