//! Each tool's filters, look-ups and pagination over the sample dataset.

use serde_json::json;

use super::*;

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
