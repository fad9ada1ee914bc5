//! Fuzz surface: the TOML files sealgate reads at start and on reload,
//! through the functions that read them: the config file
//! ([`Config::from_text`]: parse, path resolution, every section's checks,
//! `[audit.witness]` included, then its secret references), the client
//! registry merged with an enrolled-keys file ([`Registry::parse_merged`],
//! as at start and, with the registry before it, on reload), a client
//! profile ([`Profile::from_text`]) and a backend's pin file ([`PinFile`]).
//!
//! Input: the first byte picks the file (`% 4`: config, registry, profile,
//! pins); the rest is its text (for a registry, the enrolled-keys file
//! follows a 0x1C byte) (not UTF-8: the loaders refuse it when
//! reading, before any parsing). Nothing is read from or written to disk.

use std::path::Path;
use std::sync::OnceLock;

use crate::client::Profile;
use crate::config::Config;
use crate::identity::{
    parse_rfc3339_ms, ClientId, EnrolledKeys, RateLimitFile, Registry, RegistryDefaults,
};
use crate::policy::pins::{tool_digest, PinEntry};
use crate::policy::PinFile;

/// Where the fuzzed files are said to be: relative paths resolve here.
const FOLDER: &str = "/nonexistent/sealgate-fuzz";

/// The config file's JSON Schema (`sealgate config-schema`), compiled once.
fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        jsonschema::options()
            .build(&crate::config::schema())
            .expect("the config schema compiles")
    })
}

/// Runs one input. Invariants: a config file sealgate accepts is one its
/// published schema accepts (the two readers of docs/CONFIG.md agree), and
/// a refusal is a `ConfigError` naming the file; a registry accepted lists
/// exactly the `[[client]]` tables of its text; an accepted profile trusts
/// a gateway key and its paths are absolute (resolved against its folder);
/// a pin file that loads is written back by `save`'s rendering into one
/// that loads equal.
pub fn config_files(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => config(text),
        1 => registry(text),
        2 => profile(text),
        _ => pins(text),
    }
}

fn config(text: &str) {
    let path = Path::new(FOLDER).join("sealgate.toml");
    match Config::from_text(&path, text) {
        Ok(config) => {
            let document: serde_json::Value =
                toml::from_str(text).expect("an accepted config is TOML");
            assert_schema_accepts(&document);
            // What the start does next with it, before touching a file.
            let _ = config.secret_refs();
            let _ = Registry::parse_with("", &config.registry_defaults(), None);
        }
        Err(e) => assert_eq!(e.path, path.display().to_string(), "{e}"),
    }
}

fn assert_schema_accepts(document: &serde_json::Value) {
    if let Err(e) = schema().validate(document) {
        panic!("the config schema refuses a config sealgate accepts: {e}");
    }
}

/// Separates a registry's text from the enrolled-keys file read with it.
const ENROLLED_SEPARATOR: char = '\u{1c}';

fn registry(text: &str) {
    let defaults = RegistryDefaults::rate_only(RateLimitFile {
        per_second: 50,
        burst: 100,
    });
    // As the start and a reload read it: the registry file merged with the
    // enrolled-keys file (the part after 0x1C, if any) and the registry
    // loaded before (a reload's `previous`).
    let (text, enrolled_text) = text.split_once(ENROLLED_SEPARATOR).unwrap_or((text, ""));
    let Ok(enrolled) = toml::from_str::<EnrolledKeys>(enrolled_text) else {
        return;
    };
    let previous = Registry::parse_with(text, &defaults, None).ok();
    let Ok(registry) = Registry::parse_merged(text, &enrolled, &defaults, previous.as_ref()) else {
        return;
    };
    let document: toml::Table = toml::from_str(text).expect("an accepted registry is TOML");
    let listed = document
        .get("client")
        .and_then(toml::Value::as_array)
        .map_or(0, Vec::len);
    assert_eq!(registry.len(), listed, "clients dropped or added");
    assert_merged(&registry, &enrolled);
}

/// What a merged registry promises of the enrolled-keys file: every key
/// of a listed client is bound to it, with its own end, and no key
/// outlives a cap (`[[retire]]`) on it: a renewed key never comes back to
/// life through the registry file's later `not_after`.
fn assert_merged(registry: &Registry, enrolled: &EnrolledKeys) {
    for k in &enrolled.keys {
        let Some(client) = ClientId::parse(&k.client)
            .ok()
            .and_then(|id| registry.get(&id))
        else {
            continue;
        };
        let bound = client
            .keys
            .get(&k.id)
            .unwrap_or_else(|| panic!("enrolled key {:?} of a listed client is not bound", k.id));
        assert!(
            bound.not_after_ms.is_some(),
            "an enrolled key bound without an end"
        );
    }
    for r in &enrolled.retired {
        let Some(client) = ClientId::parse(&r.client)
            .ok()
            .and_then(|id| registry.get(&id))
        else {
            continue;
        };
        let (Some(key), Ok(cap)) = (client.keys.get(&r.key_id), parse_rfc3339_ms(&r.not_after))
        else {
            continue;
        };
        assert!(
            key.not_after_ms.is_some_and(|end| end <= cap),
            "key {:?} outlives its cap",
            r.key_id
        );
    }
}

fn profile(text: &str) {
    let path = Path::new(FOLDER).join("clients/demo.profile.toml");
    if let Ok(p) = Profile::from_text(&path, text) {
        assert!(!p.gateway_keys.is_empty(), "a profile trusting no key");
        for f in [&p.ca, &p.cert, &p.key, &p.signing_key] {
            assert!(f.is_absolute(), "{} is not resolved", f.display());
        }
    }
}

fn pins(text: &str) {
    if let Ok(pins) = toml::from_str::<PinFile>(text) {
        let again = toml::to_string(&pins).expect("a pin file renders");
        let back: PinFile = toml::from_str(&again).expect("a rendered pin file loads");
        assert_eq!(back, pins, "pins changed by a save and a load");
    }
}

/// Seeds: the files `sealgate dev` writes (tests/fixtures/dev: config,
/// registry, profile), that config with a witness section and a stdio
/// backend, a pin file of the embedded backend's real tools, and each
/// with a fault.
pub fn config_files_seeds() -> Vec<Vec<u8>> {
    let config = include_str!("../../tests/fixtures/dev/sealgate.toml");
    let registry = include_str!("../../tests/fixtures/dev/clients.toml");
    let profile = include_str!("../../tests/fixtures/dev/demo.profile.toml");
    let witnessed = format!(
        "{config}\n[audit.witness]\nquorum = 1\nmax_unwitnessed_secs = 300\non_no_quorum = \"fail_closed\"\n\n[[audit.witness.peer]]\nurl = \"https://witness.test/\"\nkey = \"witness.test/w1+00b85718+BMhTrQ8M0rYZrqks7sT9VqJNZJnVhM55JX5Fz9gTm2Cn\"\nca_file = \"witness-ca.pem\"\n"
    );
    let stdio = format!(
        "{config}\n[[backend]]\nname = \"ep\"\nkind = \"stdio\"\ncommand = \"node\"\nargs = [\"ep/dist/index.js\"]\n"
    );
    let with = |which: u8, text: &str| {
        let mut out = vec![which];
        out.extend_from_slice(text.as_bytes());
        out
    };
    vec![
        with(0, config),
        with(0, &witnessed),
        with(0, &stdio),
        with(0, &config.replace("sealgate.local", "Bad Domain")),
        with(0, &format!("{config}\ncolour = 1\n")),
        with(1, registry),
        with(1, &format!("{registry}\n{registry}")),
        with(2, profile),
        with(2, &profile[..profile.find("[[gateway_key]]").unwrap_or(0)]),
        with(3, &sample_pins()),
        with(3, "[tools.get_meps]\ndigest = 1\n"),
        with(1, &format!("{registry}\u{1c}{}", sample_enrolled())),
    ]
}

/// An enrolled-keys file as the enrollment service writes it after a
/// renewal of the dev registry's `demo` key: the new key, and a cap on the
/// old one a month before its own end (sample data: the key is derived
/// from a fixed seed).
fn sample_enrolled() -> String {
    use base64::Engine;
    let public = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let public = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
    format!(
        "[[key]]\nclient = \"demo\"\nid = \"ed25519:sample-renewed\"\npublic_key = \"{public}\"\nnot_before = \"2026-12-07T15:00:00Z\"\nnot_after = \"2027-03-07T15:00:00Z\"\n\n[[retire]]\nclient = \"demo\"\nkey_id = \"ed25519:704d0905aea799447dc1903244e332bd\"\nnot_after = \"2027-02-01T00:00:00Z\"\n"
    )
}

/// A pin file as `sealgate tools accept` writes it, for two of the
/// embedded backend's tools.
fn sample_pins() -> String {
    let mut pins = PinFile::default();
    for (name, json) in [
        (
            "get_meps",
            include_str!("../backend/embedded/tools/get_meps.json"),
        ),
        (
            "search_documents",
            include_str!("../backend/embedded/tools/search_documents.json"),
        ),
    ] {
        let tool: serde_json::Value = serde_json::from_str(json).expect("a bundled tool is JSON");
        pins.tools.insert(
            name.to_string(),
            PinEntry {
                digest: tool_digest(&tool),
            },
        );
    }
    let body = toml::to_string(&pins).expect("pins render");
    format!("# sealgate tool pins for backend \"sample\"\n\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_holds_the_invariants() {
        for seed in config_files_seeds() {
            config_files(&seed);
        }
    }

    #[test]
    fn the_dev_config_is_accepted() {
        let text = include_str!("../../tests/fixtures/dev/sealgate.toml");
        let path = Path::new(FOLDER).join("sealgate.toml");
        let c = Config::from_text(&path, text).expect("the dev config loads");
        assert_eq!(c.registry.path, Path::new(FOLDER).join("clients.toml"));
        let seed = &config_files_seeds()[1];
        let witnessed = Config::from_text(&path, std::str::from_utf8(&seed[1..]).expect("utf8"));
        assert!(witnessed.is_ok(), "{:?}", witnessed.err());
    }

    #[test]
    fn an_unknown_field_is_refused_naming_it() {
        let seed = &config_files_seeds()[4];
        let path = Path::new(FOLDER).join("sealgate.toml");
        let e = Config::from_text(&path, std::str::from_utf8(&seed[1..]).expect("utf8"))
            .expect_err("an unknown field is refused");
        assert_eq!(e.path, path.display().to_string());
        assert!(
            e.message.contains("unknown field `colour`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_profile_without_a_gateway_key_is_refused() {
        let seed = &config_files_seeds()[8];
        let path = Path::new(FOLDER).join("p.toml");
        let e = Profile::from_text(&path, std::str::from_utf8(&seed[1..]).expect("utf8"))
            .expect_err("refused");
        assert!(e.to_string().contains("no [[gateway_key]]"), "{e}");
    }

    #[test]
    fn a_registry_listing_a_client_twice_is_refused() {
        let seed = &config_files_seeds()[6];
        let defaults = RegistryDefaults::rate_only(RateLimitFile {
            per_second: 50,
            burst: 100,
        });
        let text = std::str::from_utf8(&seed[1..]).expect("utf8");
        assert!(Registry::parse_with(text, &defaults, None).is_err());
    }

    #[test]
    fn a_renewal_caps_the_old_key_and_binds_the_new() {
        let registry = include_str!("../../tests/fixtures/dev/clients.toml");
        let enrolled: EnrolledKeys = toml::from_str(&sample_enrolled()).expect("sample parses");
        let defaults = RegistryDefaults::rate_only(RateLimitFile {
            per_second: 50,
            burst: 100,
        });
        let merged = Registry::parse_merged(registry, &enrolled, &defaults, None).expect("merges");
        let demo = merged
            .get(&ClientId::parse("demo").expect("id"))
            .expect("demo");
        let old = &demo.keys["ed25519:704d0905aea799447dc1903244e332bd"];
        assert_eq!(
            old.not_after_ms,
            Some(parse_rfc3339_ms("2027-02-01T00:00:00Z").expect("date"))
        );
        assert!(demo.keys.contains_key("ed25519:sample-renewed"));
        assert_merged(&merged, &enrolled);
    }

    #[test]
    #[should_panic(expected = "outlives its cap")]
    fn a_key_past_its_cap_breaks_the_invariant() {
        let registry = include_str!("../../tests/fixtures/dev/clients.toml");
        let mut enrolled: EnrolledKeys = toml::from_str(&sample_enrolled()).expect("sample parses");
        let defaults = RegistryDefaults::rate_only(RateLimitFile {
            per_second: 50,
            burst: 100,
        });
        // Read without the file's caps, the old key keeps its own end.
        let uncapped = Registry::parse_with(registry, &defaults, None).expect("parses");
        enrolled.keys.clear();
        assert_merged(&uncapped, &enrolled);
    }

    #[test]
    #[should_panic(expected = "the config schema refuses a config sealgate accepts")]
    fn a_document_off_the_schema_breaks_the_invariant() {
        assert_schema_accepts(&serde_json::json!({"listen": 7}));
    }
}
