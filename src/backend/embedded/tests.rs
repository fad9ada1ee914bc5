//! Unit tests of the embedded backend: the bundled data and definitions,
//! every tool's filters, lookups and pagination, and every argument error.

use serde_json::{json, Map, Value};

use super::args::{is_date_string, MAX_SAFE_INTEGER};
use super::dataset::SAMPLE_DATA_JSON;
use super::*;

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

#[test]
fn get_meps_filters() {
    let tools = EmbeddedTools::new();
    let all = ok(&tools, "get_meps", json!({}));
    assert_eq!(all["total"], 27, "active MEPs by default");
    assert_eq!(
        (all["limit"].clone(), all["offset"].clone()),
        (json!(50), json!(0))
    );
    assert_eq!(all["hasMore"], false);
    let first = &all["data"][0];
    assert_eq!(first["id"], "person/900001");
    assert_eq!(first["name"], "Sample MEP Anna Lindqvist");
    assert_eq!(first["politicalGroup"], "EPP");
    assert!(first.get("biography").is_none(), "list form, not details");

    let se = ok(&tools, "get_meps", json!({"country": "SE"}));
    assert_eq!(
        ids(&se),
        ["person/900001", "person/900002", "person/900003"]
    );
    let se_all = ok(
        &tools,
        "get_meps",
        json!({"country": "SE", "active": false}),
    );
    assert_eq!(se_all["total"], 4, "active=false includes former MEPs");
    assert!(se_all["data"]
        .as_array()
        .is_some_and(|d| d.iter().any(|m| m["active"] == false)));

    let epp = ok(&tools, "get_meps", json!({"group": "epp"}));
    assert_eq!(epp["total"], 5);
    assert!(epp["data"]
        .as_array()
        .is_some_and(|d| d.iter().all(|m| m["politicalGroup"] == "EPP")));
    let greens = ok(
        &tools,
        "get_meps",
        json!({"group": "Greens/EFA", "country": "DE"}),
    );
    assert_eq!(ids(&greens), ["person/900006"]);

    let envi = ok(&tools, "get_meps", json!({"committee": "ENVI"}));
    assert_eq!(envi["total"], 8);
    assert!(envi["data"]
        .as_array()
        .is_some_and(|d| d.iter().all(|m| m["committees"]
            .as_array()
            .is_some_and(|c| c.contains(&json!("ENVI"))))));
    let none = ok(&tools, "get_meps", json!({"country": "LU"}));
    assert_eq!(
        (none["total"].clone(), none["hasMore"].clone()),
        (json!(0), json!(false))
    );
    // Keys outside the schema are ignored, as the real server's Zod objects do.
    assert_eq!(ok(&tools, "get_meps", json!({"bogus": 1}))["total"], 27);
}

#[test]
fn get_meps_paginates() {
    let tools = EmbeddedTools::new();
    let p1 = ok(&tools, "get_meps", json!({"limit": 10}));
    let p2 = ok(&tools, "get_meps", json!({"limit": 10, "offset": 10}));
    let p3 = ok(&tools, "get_meps", json!({"limit": 10.0, "offset": 20}));
    assert_eq!(
        (p1["total"].clone(), p1["hasMore"].clone()),
        (json!(27), json!(true))
    );
    assert_eq!(p2["hasMore"], true);
    assert_eq!(
        (
            p3["hasMore"].clone(),
            p3["offset"].clone(),
            p3["limit"].clone()
        ),
        (json!(false), json!(20), json!(10))
    );
    let (a, b, c) = (ids(&p1), ids(&p2), ids(&p3));
    assert_eq!((a.len(), b.len(), c.len()), (10, 10, 7));
    let mut joined = [a, b, c].concat();
    let all = ids(&ok(&tools, "get_meps", json!({})));
    assert_eq!(joined, all);
    joined.dedup();
    assert_eq!(joined.len(), 27);
    let past = ok(&tools, "get_meps", json!({"offset": 1000}));
    assert_eq!((ids(&past).len(), past["total"].clone()), (0, json!(27)));
    let huge = ok(&tools, "get_meps", json!({"offset": MAX_SAFE_INTEGER}));
    assert_eq!(huge["hasMore"], false);
}

#[test]
fn get_mep_details_looks_up_by_any_id_form() {
    let tools = EmbeddedTools::new();
    for id in ["person/900015", "MEP-900015", "900015"] {
        let mep = ok(&tools, "get_mep_details", json!({ "id": id }));
        assert_eq!(mep["id"], "person/900015");
        assert_eq!(mep["name"], "Sample MEP Nuria Peñacastro");
        assert_eq!(mep["country"], "ES");
        assert_eq!(mep["committees"], json!(["LIBE", "AFET"]));
        assert!(mep["votingStatistics"]["totalVotes"]
            .as_u64()
            .is_some_and(|n| n > 0));
        assert!(mep["biography"]
            .as_str()
            .is_some_and(|b| b.contains("Fictional")));
    }
    let former = ok(&tools, "get_mep_details", json!({"id": "person/900007"}));
    assert_eq!(
        (former["active"].clone(), former["termEnd"].clone()),
        (json!(false), json!("2024-07-15"))
    );
    assert_eq!(
        err(&tools, "get_mep_details", json!({"id": "MEP-124810"})),
        "Failed to retrieve MEP details: MEP with ID MEP-124810 not found"
    );
}

#[test]
fn get_plenary_sessions_filters_and_looks_up() {
    let tools = EmbeddedTools::new();
    let all = ok(&tools, "get_plenary_sessions", json!({}));
    assert_eq!(all["total"], 6);
    let y2025 = ok(&tools, "get_plenary_sessions", json!({"year": 2025}));
    assert_eq!(
        ids(&y2025),
        [
            "MTG-PL-2025-01-20",
            "MTG-PL-2025-03-10",
            "MTG-PL-2025-04-02",
            "MTG-PL-2025-06-16"
        ]
    );
    let brussels = ok(
        &tools,
        "get_plenary_sessions",
        json!({"location": "brussels"}),
    );
    assert_eq!(ids(&brussels), ["MTG-PL-2024-11-13", "MTG-PL-2025-04-02"]);
    let range = ok(
        &tools,
        "get_plenary_sessions",
        json!({"dateFrom": "2024-11-13", "dateTo": "2025-03-10", "location": "Strasbourg"}),
    );
    assert_eq!(ids(&range), ["MTG-PL-2025-01-20", "MTG-PL-2025-03-10"]);
    let paged = ok(
        &tools,
        "get_plenary_sessions",
        json!({"limit": 4, "offset": 4}),
    );
    assert_eq!(
        (ids(&paged).len(), paged["hasMore"].clone()),
        (2, json!(false))
    );
    let one = ok(
        &tools,
        "get_plenary_sessions",
        json!({"eventId": "MTG-PL-2025-03-10"}),
    );
    assert_eq!(one["location"], "Strasbourg");
    assert_eq!(
        one["votingRecords"],
        json!(["VOTE-2025-03-10-001", "VOTE-2025-03-10-002"])
    );
    assert!(one.get("data").is_none(), "single lookup is not paginated");
    assert_eq!(
        err(
            &tools,
            "get_plenary_sessions",
            json!({"eventId": "MTG-PL-1999-01-01"})
        ),
        "Failed to retrieve plenary sessions: Meeting not found: MTG-PL-1999-01-01"
    );
}

#[test]
fn get_voting_records_filters() {
    let tools = EmbeddedTools::new();
    assert_eq!(ok(&tools, "get_voting_records", json!({}))["total"], 7);
    let session = ok(
        &tools,
        "get_voting_records",
        json!({"sessionId": "MTG-PL-2025-03-10"}),
    );
    assert_eq!(
        ids(&session),
        ["VOTE-2025-03-10-001", "VOTE-2025-03-10-002"]
    );
    assert_eq!(session["data"][1]["result"], "REJECTED");
    let topic = ok(
        &tools,
        "get_voting_records",
        json!({"topic": "PRESS freedom"}),
    );
    assert_eq!(ids(&topic), ["VOTE-2025-04-02-001"]);
    let former = ok(&tools, "get_voting_records", json!({"mepId": "MEP-900007"}));
    assert_eq!(former["total"], 0, "former MEPs cast no sample votes");
    let voter = ok(
        &tools,
        "get_voting_records",
        json!({"mepId": "900001", "dateFrom": "2025-01-01"}),
    );
    assert_eq!(voter["total"], 5);
}

#[test]
fn search_documents_filters_and_looks_up() {
    let tools = EmbeddedTools::new();
    let all = ok(&tools, "search_documents", json!({}));
    assert_eq!(
        (all["total"].clone(), all["limit"].clone()),
        (json!(12), json!(20))
    );
    let payment = ok(
        &tools,
        "search_documents",
        json!({"keyword": "payment fees"}),
    );
    assert_eq!(ids(&payment), ["A10-9004/2025", "A10-9008/2025"]);
    let regulation = ok(
        &tools,
        "search_documents",
        json!({"keyword": "payment", "documentType": "REGULATION"}),
    );
    assert_eq!(ids(&regulation), ["A10-9004/2025"]);
    let envi = ok(&tools, "search_documents", json!({"committee": "envi"}));
    assert_eq!(ids(&envi), ["A10-9001/2024", "A10-9006/2025"]);
    let dated = ok(
        &tools,
        "search_documents",
        json!({"dateFrom": "2025-06-01", "dateTo": "2025-07-01"}),
    );
    assert_eq!(ids(&dated), ["A10-9007/2025", "A10-9009/2025"]);
    let by_id = ok(&tools, "search_documents", json!({"keyword": "B10"}));
    assert_eq!(by_id["total"], 2);
    let paged = ok(
        &tools,
        "search_documents",
        json!({"limit": 5, "offset": 10}),
    );
    assert_eq!(
        (ids(&paged).len(), paged["hasMore"].clone()),
        (2, json!(false))
    );
    let one = ok(
        &tools,
        "search_documents",
        json!({"docId": "A10-9003/2025"}),
    );
    assert_eq!(
        (one["type"].clone(), one["committee"].clone()),
        (json!("DIRECTIVE"), json!("ITRE"))
    );
    assert_eq!(one["authors"], json!(["person/900014", "person/900006"]));
    assert_eq!(
        err(&tools, "search_documents", json!({"docId": "nope"})),
        "Failed to search documents: Document not found: nope"
    );
    assert_eq!(
        err(&tools, "search_documents", json!({"keyword": "   "})),
        "Failed to search documents: keyword must not be blank"
    );
}

#[test]
fn get_committee_info_by_abbreviation_id_and_current() {
    let tools = EmbeddedTools::new();
    let envi = ok(
        &tools,
        "get_committee_info",
        json!({"abbreviation": "ENVI"}),
    );
    assert_eq!(envi["id"], "COM-ENVI");
    assert_eq!(envi["chair"], "person/900001");
    assert_eq!(envi["members"].as_array().map(Vec::len), Some(8));
    let econ = ok(&tools, "get_committee_info", json!({"id": "COM-ECON"}));
    assert_eq!(
        (econ["abbreviation"].clone(), econ["chair"].clone()),
        (json!("ECON"), json!("person/900004"))
    );
    let current = ok(
        &tools,
        "get_committee_info",
        json!({"showCurrent": true, "abbreviation": "ENVI"}),
    );
    assert_eq!(
        (current["total"].clone(), current["hasMore"].clone()),
        (json!(6), json!(false))
    );
    assert_eq!(ids(&current)[0], "COM-ENVI");
    assert_eq!(
        err(&tools, "get_committee_info", json!({})),
        "Failed to retrieve committee information: Committee not found: unknown"
    );
    assert_eq!(
        err(
            &tools,
            "get_committee_info",
            json!({"abbreviation": "PECH", "id": "COM-ENVI"})
        ),
        "Failed to retrieve committee information: Committee not found: PECH"
    );
}

#[test]
fn get_parliamentary_questions_filters_and_looks_up() {
    let tools = EmbeddedTools::new();
    assert_eq!(
        ok(&tools, "get_parliamentary_questions", json!({}))["total"],
        10
    );
    let oral = ok(
        &tools,
        "get_parliamentary_questions",
        json!({"type": "ORAL"}),
    );
    assert_eq!(
        ids(&oral),
        ["O-000901/2024", "O-000902/2025", "O-000903/2025"]
    );
    let pending = ok(
        &tools,
        "get_parliamentary_questions",
        json!({"status": "PENDING"}),
    );
    assert_eq!(pending["total"], 4);
    assert!(pending["data"]
        .as_array()
        .is_some_and(|d| d.iter().all(|q| q.get("answerText").is_none())));
    let topic = ok(
        &tools,
        "get_parliamentary_questions",
        json!({"topic": "microplastics"}),
    );
    assert_eq!(ids(&topic), ["E-009001/2024", "E-009007/2025"]);
    let by_name = ok(
        &tools,
        "get_parliamentary_questions",
        json!({"author": "anna lindqvist"}),
    );
    assert_eq!(ids(&by_name), ["E-009007/2025"]);
    let by_id = ok(
        &tools,
        "get_parliamentary_questions",
        json!({"author": "MEP-900003"}),
    );
    assert_eq!(ids(&by_id), ["E-009001/2024"]);
    let combined = ok(
        &tools,
        "get_parliamentary_questions",
        json!({"type": "WRITTEN", "status": "ANSWERED", "dateFrom": "2025-01-01", "dateTo": "2025-12-31"}),
    );
    assert_eq!(ids(&combined), ["E-009004/2025", "E-009005/2025"]);
    let paged = ok(
        &tools,
        "get_parliamentary_questions",
        json!({"limit": 3, "offset": 3}),
    );
    assert_eq!(
        ids(&paged),
        ["E-009003/2025", "E-009004/2025", "O-000902/2025"]
    );
    assert_eq!(paged["hasMore"], true);
    let one = ok(
        &tools,
        "get_parliamentary_questions",
        json!({"docId": "O-000901/2024"}),
    );
    assert_eq!(
        (one["status"].clone(), one["author"].clone()),
        (json!("ANSWERED"), json!("person/900005"))
    );
    assert_eq!(
        err(
            &tools,
            "get_parliamentary_questions",
            json!({"docId": "E-000000/2020"})
        ),
        "Failed to retrieve parliamentary questions: Question not found: E-000000/2020"
    );
}

#[test]
fn get_current_meps_lists_serving_meps() {
    let tools = EmbeddedTools::new();
    let page = ok(&tools, "get_current_meps", json!({"limit": 25}));
    assert_eq!(
        (page["total"].clone(), page["hasMore"].clone()),
        (json!(27), json!(true))
    );
    assert!(page["data"]
        .as_array()
        .is_some_and(|d| d.len() == 25 && d.iter().all(|m| m["active"] == true)));
    assert_eq!(
        err(&tools, "get_current_meps", json!({"limit": 101})),
        "Invalid arguments: limit: Too big: expected number to be <=100"
    );
}

#[test]
fn invalid_arguments_are_reported() {
    let tools = EmbeddedTools::new();
    let cases = [
        ("get_meps", json!({"country": "se"}), "Invalid arguments: country: Country code must be 2 uppercase letters"),
        ("get_meps", json!({"limit": 0}), "Invalid arguments: limit: Too small: expected number to be >=1"),
        ("get_meps", json!({"limit": 1.5}), "Invalid arguments: limit: Invalid input: expected int, received number"),
        ("get_meps", json!({"limit": "10"}), "Invalid arguments: limit: Invalid input: expected number, received string"),
        ("get_meps", json!({"offset": -1}), "Invalid arguments: offset: Too small: expected number to be >=0"),
        ("get_meps", json!({"active": "yes"}), "Invalid arguments: active: Invalid input: expected boolean, received string"),
        ("get_meps", json!({"group": null}), "Invalid arguments: group: Invalid input: expected string, received null"),
        ("get_mep_details", json!({}), "Invalid arguments: id: Invalid input: expected string, received undefined"),
        ("get_mep_details", json!({"id": ""}), "Invalid arguments: id: Too small: expected string to have >=1 characters"),
        ("get_mep_details", json!({"id": 900001}), "Invalid arguments: id: Invalid input: expected string, received number"),
        ("get_plenary_sessions", json!({"dateFrom": "2024/01/01"}), "Invalid arguments: dateFrom: Date must be in YYYY-MM-DD format"),
        ("get_plenary_sessions", json!({"year": 1899}), "Invalid arguments: year: Too small: expected number to be >=1900"),
        ("get_voting_records", json!({"topic": ""}), "Invalid arguments: topic: Too small: expected string to have >=1 characters"),
        ("search_documents", json!({"keyword": "a;b"}), "Invalid arguments: keyword: Invalid characters in keyword"),
        ("search_documents", json!({"documentType": "MEMO"}), "Invalid arguments: documentType: Invalid option: expected one of \"REPORT\"|\"RESOLUTION\"|\"DECISION\"|\"DIRECTIVE\"|\"REGULATION\"|\"OPINION\"|\"AMENDMENT\""),
        ("get_committee_info", json!({"abbreviation": "X".repeat(21)}), "Invalid arguments: abbreviation: Too big: expected string to have <=20 characters"),
        ("get_committee_info", json!({"showCurrent": 1}), "Invalid arguments: showCurrent: Invalid input: expected boolean, received number"),
        ("get_parliamentary_questions", json!({"type": "written"}), "Invalid arguments: type: Invalid option: expected one of \"WRITTEN\"|\"ORAL\""),
        ("get_parliamentary_questions", json!({"limit": 1e300}), "Invalid arguments: limit: Too big: expected int to be <=9007199254740991"),
        ("get_plenary_sessions", json!({"offset": 2.5}), "Invalid arguments: offset: Invalid input: expected int, received number"),
        ("get_meps", json!({"country": "SWE"}), "Invalid arguments: country: Too big: expected string to have <=2 characters"),
        ("get_current_meps", json!({"offset": u64::MAX}), "Invalid arguments: offset: Too big: expected int to be <=9007199254740991"),
        ("get_voting_records", json!({"offset": -1e300}), "Invalid arguments: offset: Too small: expected int to be >=-9007199254740991"),
        ("get_parliamentary_questions", json!({"status": true}), "Invalid arguments: status: Invalid option: expected one of \"PENDING\"|\"ANSWERED\""),
    ];
    for (tool, arguments, expected) in cases {
        assert_eq!(
            err(&tools, tool, arguments.clone()),
            expected,
            "{tool} {arguments}"
        );
    }
}

#[test]
fn unknown_tool_is_an_error_result() {
    let tools = EmbeddedTools::new();
    assert_eq!(
        err(&tools, "get_weather", json!({})),
        "Unknown tool: get_weather"
    );
    assert_eq!(err(&tools, "", json!({})), "Unknown tool: ");
    let long = "x".repeat(10_000);
    let result = tools.call(&long, &Map::new());
    assert_eq!(result["isError"], true);
    assert!(body(&result)["error"]
        .as_str()
        .is_some_and(|e| e.len() < 200));
}

/// Every constraint the advertised inputSchemas state is enforced, and
/// boundary values are accepted.
#[test]
fn schema_constraints_are_enforced() {
    let tools = EmbeddedTools::new();
    for def in tools.tool_definitions() {
        let name = def["name"].as_str().expect("name");
        let schema = &def["inputSchema"];
        let rejects = |arguments: Value| {
            let result = tools.call(name, &obj(arguments.clone()));
            assert_eq!(result["isError"], true, "{name} accepted {arguments}");
            let error = body(&result)["error"].as_str().unwrap_or("").to_string();
            assert!(
                error.starts_with("Invalid arguments: "),
                "{name} {arguments}: {error}"
            );
        };
        if let Some(required) = schema["required"].as_array() {
            assert!(!required.is_empty());
            rejects(json!({}));
        }
        let props = schema["properties"].as_object().expect("properties");
        for (key, prop) in props {
            match prop["type"].as_str() {
                Some("number") => {
                    rejects(json!({ key: 1.5 }));
                    rejects(json!({ key: "1" }));
                    rejects(json!({ key: null }));
                    if let Some(min) = prop["minimum"].as_i64() {
                        rejects(json!({ key: min - 1 }));
                        ok(&tools, name, json!({ key: min }));
                    }
                    if let Some(max) = prop["maximum"].as_i64() {
                        rejects(json!({ key: max + 1 }));
                        ok(&tools, name, json!({ key: max }));
                    }
                    if let Some(default) = prop.get("default") {
                        ok(&tools, name, json!({ key: default }));
                    }
                }
                Some("string") => {
                    rejects(json!({ key: 5 }));
                    rejects(json!({ key: [] }));
                    if let Some(max) = prop["maxLength"].as_u64() {
                        let too_long = "A".repeat(usize::try_from(max).unwrap_or(0) + 1);
                        rejects(json!({ key: too_long }));
                    }
                    if prop["minLength"].as_u64().is_some_and(|m| m >= 1) {
                        rejects(json!({ key: "" }));
                    }
                    if prop.get("pattern").is_some() {
                        rejects(json!({ key: "!!" }));
                    }
                    if let Some(options) = prop["enum"].as_array() {
                        rejects(json!({ key: "NOT_AN_OPTION" }));
                        for option in options {
                            ok(&tools, name, json!({ key: option }));
                        }
                    }
                }
                Some("boolean") => {
                    rejects(json!({ key: "true" }));
                    ok(&tools, name, json!({ key: true }));
                }
                other => panic!("{name}.{key}: unexpected type {other:?}"),
            }
        }
    }
}

#[test]
fn hostile_input_never_panics() {
    let tools = EmbeddedTools::new();
    let values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(0),
        json!(-0.0),
        json!(1e308),
        json!(-1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(9_007_199_254_740_992_i64),
        json!(0.5),
        json!(""),
        json!(" "),
        json!("\u{0}"),
        json!("ÄÖ\u{2028}\u{FEFF}"),
        json!("😀".repeat(60)),
        json!("A".repeat(100_000)),
        json!("person/"),
        json!("MEP-"),
        json!("../../etc/passwd"),
        json!("9999-99-99"),
        json!([1, 2]),
        json!({"nested": {"x": 1}}),
    ];
    let mut names: Vec<String> = tools
        .tool_definitions()
        .iter()
        .filter_map(|d| d["name"].as_str().map(str::to_string))
        .collect();
    names.push("unknown\u{0}tool".into());
    for name in &names {
        let mut keys = vec!["unexpected".to_string(), "id".to_string()];
        if let Some(props) = tools
            .tool_definitions()
            .iter()
            .find(|d| d["name"] == name.as_str())
            .and_then(|d| d["inputSchema"]["properties"].as_object())
        {
            keys.extend(props.keys().cloned());
        }
        for key in &keys {
            for value in &values {
                let mut arguments = Map::new();
                arguments.insert(key.clone(), value.clone());
                let result = tools.call(name, &arguments);
                let parsed = body(&result);
                assert_eq!(parsed["dataSource"], DATA_SOURCE);
                if result.get("isError").is_some() {
                    assert_eq!(result["isError"], true);
                    assert!(parsed["error"].is_string());
                }
            }
        }
    }
}

#[test]
fn result_text_is_pretty_printed_like_the_real_server() {
    let tools = EmbeddedTools::new();
    let result = tools.call("get_mep_details", &obj(json!({"id": "MEP-900001"})));
    let text = result["content"][0]["text"].as_str().expect("text");
    assert!(text.starts_with("{\n  \""), "{text}");
    let keys: Vec<_> = result
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["content"]);
}
