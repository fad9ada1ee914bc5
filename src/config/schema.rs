//! The config file's JSON Schema, derived from the types serde reads it
//! into (`sealgate config-schema` prints it; the docs check reads it).

use super::file::Config;

/// The JSON Schema (draft 2020-12) of the whole config file, derived from
/// the types serde reads it into: every field it accepts, with its doc
/// comment as description; a table that refuses unknown fields says so with
/// `additionalProperties: false`. Value checks that need code (ranges,
/// references, paths) are [`Config::validate`]'s and are not in it.
pub fn schema() -> serde_json::Value {
    schemars::schema_for!(Config).to_value()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    /// Every dotted field path the schema accepts (`audit.sink.kind`,
    /// `tier.*.tools`, `backend.limits.memory_mb`): `$ref`s followed,
    /// `anyOf`/`oneOf` alternatives (tagged enums, `Option`) merged, arrays
    /// of tables (`[[backend]]`) by their own name, maps by `*`.
    fn field_paths(root: &Value, node: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/$defs/");
            return field_paths(root, &root["$defs"][name], prefix, out);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for alt in node
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                field_paths(root, alt, prefix, out);
            }
        }
        if let Some(items) = node.get("items") {
            field_paths(root, items, prefix, out);
        }
        if let Some(map) = node.get("additionalProperties").filter(|v| v.is_object()) {
            field_paths(root, map, &format!("{prefix}*."), out);
        }
        for (name, field) in node
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let path = format!("{prefix}{name}");
            out.insert(path.clone());
            field_paths(root, field, &format!("{path}."), out);
        }
    }

    /// Every object schema that lists properties, wherever it is.
    fn tables<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
        match node {
            Value::Object(map) => {
                if map.contains_key("properties") {
                    out.push(node);
                }
                map.values().for_each(|v| tables(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| tables(v, out)),
            _ => {}
        }
    }

    #[test]
    fn schema_lists_nested_fields() {
        let schema = super::schema();
        let mut paths = BTreeSet::new();
        field_paths(&schema, &schema, "", &mut paths);
        for known in [
            "listen",
            "trust_domain",
            "tls.crl_grace_secs",
            "transport.max_connections",
            "metrics.listen",
            "enrollment.listen",
            "secrets.openbao.approle_mount",
            "audit.sink.kind",
            "audit.sink.fsync_interval_ms",
            "audit.sink.server_name",
            "backend.kind",
            "backend.egress",
            "backend.limits.memory_mb",
            "backend.relist_secs",
            "tier.*.allowed_hours.time_zone",
            "sanitize.max_depth",
            "sanitize.tools.*.nfc",
            "results.patterns.regex",
            "anomaly.volume.factor",
            "anomaly.source_failures.threshold",
            "state.on_failure",
        ] {
            assert!(paths.contains(known), "{known} missing from the schema");
        }
        assert!(!paths.contains("source"), "a skipped field is not accepted");

        let kinds = |def: &str| -> BTreeSet<String> {
            schema["$defs"][def]["oneOf"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["properties"]["kind"]["const"].as_str())
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            kinds("SinkConfig"),
            BTreeSet::from(["file", "stdout", "syslog", "http"].map(String::from))
        );
        assert_eq!(
            kinds("BackendConfig"),
            BTreeSet::from(["embedded", "stdio", "http"].map(String::from))
        );
    }

    const FULL: &str = r#"
listen = "127.0.0.1:7443"
trust_domain = "sealgate.local"
pinning = "strict"
[tls]
cert = "server.crt"
key = "server.key"
client_ca = "ca/ca.crt"
crls = ["crl.pem"]
[signing]
key = "file:gateway.signing.key"
[registry]
path = "clients.toml"
[transport]
max_connections = 10
[metrics]
listen = "127.0.0.1:9464"
[state]
kind = "redis"
url = "redis://127.0.0.1:6379/0"
on_failure = "local"
[audit]
signing_key = "file:audit.key"
[[audit.sink]]
kind = "file"
path = "audit.jsonl"
fsync = "every_record"
[[audit.sink]]
kind = "syslog"
address = "127.0.0.1:6514"
transport = "tls"
on_failure = "spool"
[tier.standard]
tools = ["get_*"]
rate_limit = { per_second = 5, burst = 10 }
allowed_hours = { time_zone = "Europe/Brussels", from = "08:00", to = "18:00" }
[anomaly.volume]
action = "throttle"
factor = 5.0
[results]
secrets = "refuse"
patterns = [{ name = "ours", regex = "x[0-9]+" }]
[sanitize.tools.search]
nfc = "normalize"
[[backend]]
kind = "stdio"
name = "ep"
command = "node"
egress = ["data.europarl.europa.eu:443"]
sandbox = "required"
limits = { memory_mb = 512 }
[[backend]]
kind = "http"
name = "remote"
url = "https://mcp.example/mcp"
[[backend]]
kind = "embedded"
"#;

    /// What serde reads, the schema accepts; an unknown field anywhere is
    /// refused by both.
    #[test]
    fn schema_agrees_with_serde() {
        let validator = jsonschema::options()
            .build(&super::schema())
            .expect("the schema compiles");
        let as_json = |text: &str| -> Value { toml::from_str(text).expect("TOML") };
        if let Err(e) = toml::from_str::<super::Config>(FULL) {
            panic!("{e}");
        }
        assert!(validator.is_valid(&as_json(FULL)));
        for header in [
            "",
            "[tls]\n",
            "[state]\n",
            "[[audit.sink]]\n",
            "[tier.standard]\n",
            "[anomaly.volume]\n",
            "[results]\n",
            "[sanitize.tools.search]\n",
            "[[backend]]\n",
        ] {
            let text = FULL.replacen(header, &format!("{header}colour = 1\n"), 1);
            assert!(toml::from_str::<super::Config>(&text).is_err(), "{header}");
            assert!(!validator.is_valid(&as_json(&text)), "{header}");
        }
    }

    #[test]
    fn schema_refuses_unknown_fields_everywhere() {
        // Every table of the config file is a `deny_unknown_fields` struct
        // (or enum variant), so every object schema with properties must
        // say `additionalProperties: false`.
        let schema = super::schema();
        let mut found = Vec::new();
        tables(&schema, &mut found);
        assert!(found.len() > 30, "only {} tables", found.len());
        for table in found {
            assert_eq!(
                table.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{}",
                table
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            );
        }
    }
}
