//! `[audit]`: where audit records go, how each sink delivers them, and the
//! key that signs checkpoints.
//!
//! Parsed and checked once with the rest of the config file
//! ([`crate::config`] holds this struct and calls [`AuditConfig::validate`]
//! and [`AuditConfig::resolve_paths`]); never reads a secret value: the
//! signing key is a secret reference that [`crate::config`] parses and
//! [`crate::secrets`] resolves (this module stays below both).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[audit]`: the sinks, the delivery policy and the checkpoints.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Shorthand for one file sink with the defaults; `-`: stdout. Absent
    /// and no `[[audit.sink]]`: stdout.
    pub path: Option<PathBuf>,
    /// The Ed25519 key (PKCS#8 PEM) that signs checkpoints, as a secret
    /// reference (`file:…`, `env:…`, `openbao://…#field`) or a path; its own
    /// key, never the response-signing key. Absent: no checkpoints, the
    /// trail has its hash chain only (a warning at start).
    pub signing_key: Option<String>,
    /// `[audit.witness]`: witnesses that cosign the log's checkpoints.
    pub witness: Option<super::witness_config::WitnessConfig>,
    /// A checkpoint after this many records (default 1000).
    pub checkpoint_records: u64,
    /// A checkpoint at least this often while records arrive, in seconds
    /// (default 60).
    pub checkpoint_secs: u64,
    /// Records waiting for the writer at most; a full queue refuses
    /// requests with `AUDIT_UNAVAILABLE` (default 8192).
    pub queue_capacity: usize,
    /// Records a failing sink holds in memory until it is back (default
    /// 100000); beyond that a sink counts what it could not keep and says
    /// so in a record once it is back.
    pub max_backlog: usize,
    /// Where `spool` sinks keep records while their collector is away
    /// (default: beside the config, `audit-spool/`).
    pub spool_dir: Option<PathBuf>,
    /// `[[audit.sink]]`: every sink, each with its own delivery policy.
    #[serde(rename = "sink")]
    pub sinks: Vec<SinkConfig>,
    /// The Merkle log's origin: its checkpoints' first line and the note
    /// key name they are signed under (default, filled at config load:
    /// `<trust_domain>/sealgate-audit`). A valid note key name: 1..=255
    /// bytes, no whitespace, no `+`.
    pub origin: Option<String>,
    /// Where the Merkle log keeps its tree's hashes (C2SP tiles; default:
    /// `<spool_dir>/tlog`). One gateway at a time writes it (a lock).
    pub tlog_dir: Option<PathBuf>,
    /// Request records a receipt is found for without reading the files,
    /// at most (the most recent ones; default 10000; 0: none).
    pub receipt_index: usize,
}

/// The origin of a log whose config names none and is not loaded from a
/// config file (which fills in `<trust_domain>/sealgate-audit`).
pub const FALLBACK_ORIGIN: &str = "sealgate.local/sealgate-audit";

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: None,
            signing_key: None,
            witness: None,
            checkpoint_records: 1000,
            checkpoint_secs: 60,
            queue_capacity: 8192,
            max_backlog: 100_000,
            spool_dir: None,
            sinks: Vec::new(),
            origin: None,
            tlog_dir: None,
            receipt_index: super::transparency::DEFAULT_RECEIPT_INDEX,
        }
    }
}

/// What the gateway does while a sink cannot take records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Refuse new requests with `AUDIT_UNAVAILABLE` until the sink is back
    /// (the default): no request is served without its record.
    #[default]
    FailClosed,
    /// Keep records in a local spool file and re-send them in order once
    /// the sink is back; requests go on being served.
    Spool,
}

/// When a file sink calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every record, before its call is answered.
    EveryRecord,
    /// Once per `fsync_interval_ms` at most (group commit); a call is
    /// answered once its record is written (safe against a crash of the
    /// process, not of the machine, for that long).
    #[default]
    Interval,
    /// Never (the operating system decides).
    None,
}

/// Syslog transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyslogTransport {
    /// RFC 6587 octet-counted frames over TCP.
    #[default]
    Tcp,
    /// The same frames over TLS (RFC 5425).
    Tls,
}

/// `[[audit.sink]]`: one destination of every record.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum SinkConfig {
    /// JSON lines in a file, created 0600, rotated by size and age.
    File {
        /// The file; rotations are `<path>.<UTC time>`.
        path: PathBuf,
        /// When to fsync (default `interval`).
        #[serde(default)]
        fsync: Fsync,
        /// The group-commit interval of `fsync = "interval"` (default 50).
        #[serde(default = "default_fsync_ms")]
        fsync_interval_ms: u64,
        /// Rotate when the file reaches this many bytes (default 100 MiB;
        /// 0: never).
        #[serde(default = "default_rotate_bytes")]
        rotate_bytes: u64,
        /// Rotate when the file is this old, in seconds (default 0: never).
        #[serde(default)]
        rotate_secs: u64,
        /// What to do while the file cannot be written.
        #[serde(default)]
        on_failure: OnFailure,
    },
    /// JSON lines on standard output.
    Stdout {
        /// What to do while stdout cannot be written.
        #[serde(default)]
        on_failure: OnFailure,
    },
    /// RFC 5424 messages to a syslog collector over TCP or TLS.
    Syslog {
        /// `host:port` of the collector.
        address: String,
        /// `tcp` (default) or `tls`.
        #[serde(default)]
        transport: SyslogTransport,
        /// For `tls`: the CA that signed the collector's certificate.
        #[serde(default)]
        ca: Option<PathBuf>,
        /// For `tls`: the name in the collector's certificate (default: the
        /// host of `address`).
        #[serde(default)]
        server_name: Option<String>,
        /// What to do while the collector is away.
        #[serde(default)]
        on_failure: OnFailure,
    },
    /// Batches of JSON lines POSTed to an HTTP endpoint (the mission's
    /// AUDIT_LOG_ENDPOINT), retried with backoff.
    Http {
        /// The endpoint; plain `http` only to loopback.
        url: String,
        /// Records per POST at most (default 100).
        #[serde(default = "default_batch")]
        batch: usize,
        /// What to do while the endpoint is away.
        #[serde(default)]
        on_failure: OnFailure,
    },
}

fn default_fsync_ms() -> u64 {
    50
}
fn default_rotate_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_batch() -> usize {
    100
}

impl SinkConfig {
    /// The sink's delivery policy.
    pub fn on_failure(&self) -> OnFailure {
        match self {
            SinkConfig::File { on_failure, .. }
            | SinkConfig::Stdout { on_failure }
            | SinkConfig::Syslog { on_failure, .. }
            | SinkConfig::Http { on_failure, .. } => *on_failure,
        }
    }

    /// A short name for logs and records: `file:<path>`, `syslog:<addr>`…
    pub fn name(&self) -> String {
        match self {
            SinkConfig::File { path, .. } => format!("file:{}", path.display()),
            SinkConfig::Stdout { .. } => "stdout".into(),
            SinkConfig::Syslog { address, .. } => format!("syslog:{address}"),
            SinkConfig::Http { url, .. } => format!("http:{}", redact_url(url)),
        }
    }
}

/// A URL without user info or query (either could carry a token).
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or("?"),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + u.path()
        }
        Err(_) => "(invalid url)".into(),
    }
}

impl AuditConfig {
    /// The sinks in force: `[[audit.sink]]`, else `path` as one file sink,
    /// else stdout.
    pub fn effective_sinks(&self) -> Vec<SinkConfig> {
        if !self.sinks.is_empty() {
            return self.sinks.clone();
        }
        match &self.path {
            Some(p) if p.as_os_str() != "-" => vec![SinkConfig::File {
                path: p.clone(),
                fsync: Fsync::default(),
                fsync_interval_ms: default_fsync_ms(),
                rotate_bytes: default_rotate_bytes(),
                rotate_secs: 0,
                on_failure: OnFailure::FailClosed,
            }],
            _ => vec![SinkConfig::Stdout {
                on_failure: OnFailure::FailClosed,
            }],
        }
    }

    /// The checkpoint key reference as written, with a plain path turned
    /// into `file:<path>`; `None` when not set. A literal key is refused.
    pub fn signing_key_reference(&self) -> Result<Option<String>, String> {
        let Some(key) = &self.signing_key else {
            return Ok(None);
        };
        if key.contains("PRIVATE KEY") || key.contains('\n') {
            return Err(
                "field audit.signing_key: holds a literal key; give a path or a secret reference"
                    .into(),
            );
        }
        if key.contains("://") || key.starts_with("env:") || key.starts_with("file:") {
            Ok(Some(key.clone()))
        } else {
            Ok(Some(format!("file:{key}")))
        }
    }

    /// Makes relative paths (files, spool, CA, a `file:` key) relative to
    /// `base`, the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.path.as_mut() {
            if p.as_os_str() != "-" {
                fix(p);
            }
        }
        if let Ok(Some(r)) = self.signing_key_reference() {
            if let Some(p) = r.strip_prefix("file:").map(PathBuf::from) {
                if p.is_relative() {
                    self.signing_key = Some(format!("file:{}", base.join(p).display()));
                }
            }
        }
        fix(self.spool_dir.get_or_insert_with(|| "audit-spool".into()));
        match self.tlog_dir.as_mut() {
            Some(p) => fix(p),
            None => self.tlog_dir = self.spool_dir.as_ref().map(|s| s.join("tlog")),
        }
        self.witness.iter_mut().for_each(|w| w.resolve_paths(base));
        for s in &mut self.sinks {
            match s {
                SinkConfig::File { path, .. } => fix(path),
                SinkConfig::Syslog { ca: Some(ca), .. } => fix(ca),
                _ => {}
            }
        }
    }

    /// Fills in the log's origin from the trust domain when none is set
    /// (at config load).
    pub fn default_origin(&mut self, trust_domain: &str) {
        self.origin
            .get_or_insert_with(|| format!("{trust_domain}/sealgate-audit"));
    }

    /// The log's origin in force.
    pub fn origin(&self) -> &str {
        self.origin.as_deref().unwrap_or(FALLBACK_ORIGIN)
    }

    /// The Merkle log's directory in force: `tlog_dir`, else
    /// `<spool_dir>/tlog`, else (a config not loaded from a file) `tlog`
    /// in the `audit-spool` folder beside the first file sink's file.
    pub fn tlog_dir(&self) -> PathBuf {
        if let Some(d) = self.tlog_dir.as_ref() {
            return d.clone();
        }
        if let Some(s) = self.spool_dir.as_ref() {
            return s.join("tlog");
        }
        let beside = self.effective_sinks().into_iter().find_map(|s| match s {
            SinkConfig::File { path, .. } => path.parent().map(Path::to_path_buf),
            _ => None,
        });
        beside.unwrap_or_default().join("audit-spool").join("tlog")
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        self.signing_key_reference()?;
        if let Some(origin) = &self.origin {
            if let Err(e) = crate::tlog::KeyName::new(origin) {
                return Err(format!(
                    "field audit.origin: not a note key name ({e}): 1..=255 bytes, no whitespace, no '+'"
                ));
            }
        }
        if self.receipt_index > 10_000_000 {
            return Err("field audit.receipt_index: must be 0..=10000000".into());
        }
        self.witness
            .as_ref()
            .map_or(Ok(()), |w| w.validate(self.signing_key.is_some()))?;
        if self.checkpoint_records == 0 || self.checkpoint_records > 1_000_000 {
            return Err("field audit.checkpoint_records: must be 1..=1000000".into());
        }
        if !(1..=86_400).contains(&self.checkpoint_secs) {
            return Err("field audit.checkpoint_secs: must be 1..=86400".into());
        }
        if !(16..=1_000_000).contains(&self.queue_capacity) {
            return Err("field audit.queue_capacity: must be 16..=1000000".into());
        }
        if !(16..=10_000_000).contains(&self.max_backlog) {
            return Err("field audit.max_backlog: must be 16..=10000000".into());
        }
        for (i, s) in self.sinks.iter().enumerate() {
            let field = |f: &str| format!("field audit.sink[{i}].{f}");
            match s {
                SinkConfig::File {
                    fsync_interval_ms,
                    rotate_bytes,
                    ..
                } => {
                    if !(1..=60_000).contains(fsync_interval_ms) {
                        return Err(format!("{}: must be 1..=60000", field("fsync_interval_ms")));
                    }
                    if *rotate_bytes != 0 && *rotate_bytes < 4096 {
                        return Err(format!("{}: 0 or at least 4096", field("rotate_bytes")));
                    }
                }
                SinkConfig::Stdout { .. } => {}
                SinkConfig::Syslog {
                    address,
                    transport,
                    ca,
                    ..
                } => {
                    if address.rsplit_once(':').is_none() {
                        return Err(format!("{}: must be host:port", field("address")));
                    }
                    if *transport == SyslogTransport::Tls && ca.is_none() {
                        return Err(format!(
                            "{}: required with transport = \"tls\"",
                            field("ca")
                        ));
                    }
                }
                SinkConfig::Http { url, batch, .. } => {
                    let u =
                        url::Url::parse(url).map_err(|_| format!("{}: not a URL", field("url")))?;
                    let loopback =
                        matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
                    if !(u.scheme() == "https" || u.scheme() == "http" && loopback) {
                        return Err(format!(
                            "{}: must be https (plain http only to loopback)",
                            field("url")
                        ));
                    }
                    if !u.username().is_empty() || u.password().is_some() || u.query().is_some() {
                        return Err(format!(
                            "{}: no credentials or query in the URL",
                            field("url")
                        ));
                    }
                    if !(1..=10_000).contains(batch) {
                        return Err(format!("{}: must be 1..=10000", field("batch")));
                    }
                }
            }
        }
        self.no_file_twice()
    }

    /// Two file sinks naming one file (`a.jsonl` and `./a.jsonl`, a link,
    /// a hard link) would write every line twice into it: refused.
    fn no_file_twice(&self) -> Result<(), String> {
        let files: Vec<(usize, &std::path::Path)> = self
            .sinks
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                SinkConfig::File { path, .. } => Some((i, path.as_path())),
                _ => None,
            })
            .collect();
        for (n, (i, a)) in files.iter().enumerate() {
            for (j, b) in &files[n + 1..] {
                if same_file(a, b) {
                    return Err(format!(
                        "field audit.sink[{j}].path: {} names the same file as audit.sink[{i}].path ({}): two file sinks may not write one file",
                        b.display(),
                        a.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether two paths name one file: the same inode where both exist,
/// else the same name in the same (resolved) folder.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return (x.dev(), x.ino()) == (y.dev(), y.ino());
    }
    let resolved = |p: &std::path::Path| {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.components().collect());
        p.file_name().map(|n| dir.join(n))
    };
    resolved(a).is_some() && resolved(a) == resolved(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuditConfig, String> {
        let c: AuditConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map(|_| c)
    }

    #[test]
    fn two_file_sinks_naming_one_file_are_refused() {
        // Review F13: every line would be written twice into the file.
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        let sinks = |a: &str, b: &str| {
            format!("[[sink]]\nkind = \"file\"\npath = \"{a}\"\n[[sink]]\nkind = \"stdout\"\n[[sink]]\nkind = \"file\"\npath = \"{b}\"\n")
        };
        let e = parse(&sinks("a.jsonl", "./a.jsonl")).expect_err("same file");
        assert_eq!(e, "field audit.sink[2].path: ./a.jsonl names the same file as audit.sink[0].path (a.jsonl): two file sinks may not write one file");
        // A hard link to an existing file.
        std::fs::write(dir.path().join("x.jsonl"), "").expect("write");
        std::fs::hard_link(dir.path().join("x.jsonl"), dir.path().join("y.jsonl")).expect("link");
        let e = parse(&sinks(&format!("{d}/x.jsonl"), &format!("{d}/y.jsonl"))).expect_err("link");
        assert!(e.contains("names the same file"), "{e}");
        parse(&sinks(&format!("{d}/x.jsonl"), &format!("{d}/z.jsonl"))).expect("two files");
    }

    #[test]
    fn defaults_are_one_stdout_sink_fail_closed() {
        let c = parse("").expect("empty");
        assert_eq!(
            c.effective_sinks(),
            vec![SinkConfig::Stdout {
                on_failure: OnFailure::FailClosed
            }]
        );
        let c = parse("path = \"a.jsonl\"").expect("path");
        assert!(matches!(
            &c.effective_sinks()[0],
            SinkConfig::File {
                fsync: Fsync::Interval,
                on_failure: OnFailure::FailClosed,
                ..
            }
        ));
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let long_origin = format!("origin = \"{}\"", "a".repeat(256));
        let rows = [
            ("checkpoint_records = 0", "audit.checkpoint_records"),
            ("checkpoint_secs = 0", "audit.checkpoint_secs"),
            ("queue_capacity = 1", "audit.queue_capacity"),
            ("origin = \"\"", "audit.origin"),
            ("origin = \"a b\"", "audit.origin"),
            (long_origin.as_str(), "audit.origin"),
            ("receipt_index = 10000001", "audit.receipt_index"),
            (
                "signing_key = \"-----BEGIN PRIVATE KEY-----\"",
                "audit.signing_key",
            ),
            (
                "[[sink]]\nkind = \"file\"\npath = \"a\"\nrotate_bytes = 10",
                "audit.sink[0].rotate_bytes",
            ),
            (
                "[[sink]]\nkind = \"file\"\npath = \"a\"\nfsync_interval_ms = 0",
                "audit.sink[0].fsync_interval_ms",
            ),
            (
                "[[sink]]\nkind = \"syslog\"\naddress = \"nohost\"",
                "audit.sink[0].address",
            ),
            (
                "[[sink]]\nkind = \"syslog\"\naddress = \"h:1\"\ntransport = \"tls\"",
                "audit.sink[0].ca",
            ),
            (
                "[[sink]]\nkind = \"http\"\nurl = \"http://example.org/x\"",
                "audit.sink[0].url",
            ),
            (
                "[[sink]]\nkind = \"http\"\nurl = \"https://u:p@example.org/x\"",
                "audit.sink[0].url",
            ),
            (
                "[[sink]]\nkind = \"http\"\nurl = \"https://example.org/x?token=t\"",
                "audit.sink[0].url",
            ),
        ];
        for (text, field) in rows {
            let e = parse(text).expect_err(text);
            assert!(e.contains(field), "{text}: {e}");
        }
        // Unknown fields and kinds are refused by the parser.
        assert!(parse("fsync = \"always\"").is_err());
        assert!(parse("[[sink]]\nkind = \"kafka\"").is_err());
    }

    #[test]
    fn a_plain_key_path_is_a_file_reference_relative_to_the_config() {
        let mut c =
            parse("signing_key = \"audit.key\"\n[[sink]]\nkind = \"file\"\npath = \"a.jsonl\"")
                .expect("ok");
        c.resolve_paths(Path::new("/etc/sealgate"));
        assert_eq!(
            c.signing_key.as_deref(),
            Some("file:/etc/sealgate/audit.key")
        );
        assert_eq!(
            c.spool_dir.as_deref(),
            Some(Path::new("/etc/sealgate/audit-spool"))
        );
        assert!(
            matches!(&c.sinks[0], SinkConfig::File { path, .. } if path == Path::new("/etc/sealgate/a.jsonl"))
        );
        let c = parse("signing_key = \"openbao://secret/data/gw#audit\"").expect("ok");
        assert_eq!(
            c.signing_key_reference().expect("ref").as_deref(),
            Some("openbao://secret/data/gw#audit")
        );
    }
}
