//! A real witness (`sealgate audit witness`, HTTPS) cosigns the gateway's
//! checkpoints as the trail grows; `audit witness --show` hands out the
//! cosigned checkpoint an auditor keeps. The audit key's holder then
//! rewrites the trail: the witness refuses to cosign the rewritten log
//! (its head at the witnessed size differs), and `audit verify
//! --checkpoint` names the line where the trail stops matching.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use sealgate::tlog::{consistency_proof, MemoryTree, VerifierKey};
use sealgate::witness::protocol::{parse_cosignatures, AddCheckpoint};

use super::*;

/// A running witness for the log of one gateway; killed on drop.
struct Witness {
    child: Child,
    dir: PathBuf,
    url: String,
    key: VerifierKey,
    origin: String,
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sealgate_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .current_dir(dir)
        .env("SEALGATE_LOG", "warn")
        .output()
        .expect("run sealgate");
    assert!(
        out.status.success(),
        "sealgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The origin of the trail's checkpoints (the gateway's `[audit] origin`).
fn origin_of(lines: &[String]) -> String {
    let cp = &lines[checkpoints(lines)[0]];
    let note =
        SignedNote::parse(json(cp)["note"].as_str().expect("note").as_bytes()).expect("note");
    Checkpoint::parse(note.text().as_str())
        .expect("checkpoint")
        .origin()
        .to_string()
}

impl Witness {
    /// Its own CA, TLS certificate and cosignature key, configured with the
    /// gateway's log (origin, audit key as a note key), started.
    fn start(setup: &Setup, origin: &str) -> Witness {
        let dir = setup.dir.path().join("witness");
        std::fs::create_dir(&dir).expect("dir");
        sealgate_in(
            &dir,
            &[
                "ca",
                "init",
                "--dir",
                "ca",
                "--trust-domain",
                "witness.test",
            ],
        );
        sealgate_in(
            &dir,
            &[
                "ca",
                "issue-server",
                "--dir",
                "ca",
                "--dns",
                "localhost",
                "--ip",
                "127.0.0.1",
                "--cert-out",
                "w.crt",
                "--key-out",
                "w.key",
            ],
        );
        let vkey = sealgate_in(
            &dir,
            &[
                "audit",
                "witness-key",
                "--name",
                "witness.test/w1",
                "--out",
                "w.skey",
            ],
        );
        let key = VerifierKey::parse(vkey.trim()).expect("vkey");
        let log = VerifierKey::new(
            KeyName::new(origin).expect("origin"),
            SignatureType::Ed25519,
            audit_key(setup).verifying_key(),
        );
        std::fs::write(
            dir.join("witness.toml"),
            format!(
                "listen = \"127.0.0.1:0\"\ntls_cert = \"w.crt\"\ntls_key = \"w.key\"\n\
                 signing_key = \"w.skey\"\nstate_dir = \"state\"\n\
                 [[log]]\norigin = \"{origin}\"\nkey = \"{log}\"\n"
            ),
        )
        .expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["audit", "witness", "--config", "witness.toml"])
            .current_dir(&dir)
            .env("SEALGATE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("witness.log")).expect("log"))
            .spawn()
            .expect("spawn the witness");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let url = line
            .trim_end()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("https://"))
            .unwrap_or_else(|| panic!("the witness did not start: {line}"))
            .to_string();
        Witness {
            child,
            dir,
            url,
            key,
            origin: origin.to_string(),
        }
    }

    fn client(&self) -> reqwest::Client {
        let tls = sealgate::tls::backend_client_config(&self.dir.join("ca/ca.crt")).expect("tls");
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .expect("client")
    }

    /// Submits the checkpoint line `lines[n]` (tree size n) as the next
    /// after `old`, with the consistency proof of `lines`' own tree:
    /// (status, body).
    async fn submit(&self, lines: &[String], old: u64, n: usize) -> (u16, Vec<u8>) {
        let mut tree = MemoryTree::new();
        for l in lines {
            tree.push(leaf_hash(l.as_bytes()));
        }
        let note = SignedNote::parse(json(&lines[n])["note"].as_str().expect("note").as_bytes())
            .expect("note");
        let proof = if old == 0 {
            Vec::new()
        } else {
            consistency_proof(&tree, old, n as u64).expect("proof")
        };
        let body = AddCheckpoint {
            old_size: old,
            proof,
            note: note.clone(),
        }
        .format()
        .expect("request");
        let r = self
            .client()
            .post(&self.url)
            .body(body)
            .send()
            .await
            .expect("an answer");
        let status = r.status().as_u16();
        let body = r.bytes().await.expect("body").to_vec();
        if status == 200 {
            parse_cosignatures(&body, &note, std::slice::from_ref(&self.key))
                .expect("the witness's cosignature verifies");
        }
        (status, body)
    }

    /// `audit witness --show`: the last checkpoint it cosigned for the
    /// log, written to `witnessed.note`.
    fn show(&self) -> PathBuf {
        let note = sealgate_in(
            &self.dir,
            &[
                "audit",
                "witness",
                "--config",
                "witness.toml",
                "--show",
                &self.origin,
            ],
        );
        let path = self.dir.join("witnessed.note");
        std::fs::write(&path, note).expect("write");
        path
    }
}

/// The trail, and a witness that cosigned its checkpoints up to the
/// second-to-last (size N); its cosigned note as the auditor keeps it.
async fn witnessed_trail() -> (Setup, PathBuf, Vec<String>, Witness, usize, PathBuf) {
    let (setup, file) = trail().await;
    let lines = raw_lines(&file);
    let w = Witness::start(&setup, &origin_of(&lines));
    let n = pick(&lines);
    let mut old = 0;
    for c in checkpoints(&lines).into_iter().filter(|c| *c <= n) {
        let (status, body) = w.submit(&lines, old, c).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        old = c as u64;
    }
    let note = w.show();
    (setup, file, lines, w, n, note)
}

fn flags(w: &Witness, note: &Path) -> Vec<String> {
    vec![
        "--witness-key".into(),
        w.key.to_string(),
        "--checkpoint".into(),
        note.display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_witnesss_checkpoint_holds_the_trail_and_a_rewrite_is_refused_and_caught() {
    let (setup, file, lines, w, n, note) = witnessed_trail().await;
    let (code, r) = verify(&setup, &file, &strs(&flags(&w, &note)));
    assert_eq!(code, 0, "{r}");
    let matched = r["witness"]["checkpoints_matched"][0]
        .as_str()
        .expect("matched");
    assert!(
        matched.starts_with(&format!(
            "{}:{n}: lines seq 0..{} match the checkpoint in {} (tree size {n}, cosigned by witness.test/w1+",
            file.display(),
            n - 1,
            note.display()
        )),
        "{matched}"
    );
    // The key holder drops a record before N and re-signs everything.
    let mut edited = lines.clone();
    edited.remove(requests_before(&lines, n)[1]);
    let forged = resign(&audit_key(&setup), &edited);
    write_lines(&file, &forged);
    let (code, r) = verify(&setup, &file, &[]);
    assert_eq!((code, &r["sealed"]), (0, &Value::Bool(true)), "alone: {r}");
    // The witness does not cosign the forged log's last checkpoint (its
    // tree is not an extension of the one it cosigned at N)...
    let last = forged.len() - 1;
    let (status, body) = w.submit(&forged, n as u64, last).await;
    // One line shorter, the forged log's last checkpoint may be at the
    // very size the witness holds: a different root at the same size is a
    // 409 (c2sp.org/tlog-witness), a larger tree a failed proof, 422.
    let expected = if last == n { 409 } else { 422 };
    assert_eq!(status, expected, "{}", String::from_utf8_lossy(&body));
    // ... nor from an older size: it answers with the size it holds.
    let (status, body) = w.submit(&forged, 0, last).await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).trim()),
        (409, n.to_string().as_str())
    );
    assert_eq!(
        std::fs::read(w.show()).expect("note"),
        std::fs::read(&note).expect("note")
    );
    // And the auditor's verify names where the trail stops matching.
    let (code, r) = verify(&setup, &file, &strs(&flags(&w, &note)));
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["broken_at"], format!("{}:{n}", file.display()));
    let what = r["broken"].as_str().expect("broken");
    assert!(
        what.starts_with(&format!(
            "rewritten or forked before size {n}: lines seq 0..{} hash to ",
            n - 1
        )),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_cut_before_a_real_witnesss_size_is_caught() {
    let (setup, file, lines, w, n, note) = witnessed_trail().await;
    let mut cut = lines[..n - 2].to_vec();
    cut.push(lines.last().expect("close").clone());
    let cut = resign(&audit_key(&setup), &cut);
    write_lines(&file, &cut);
    // The witness will not go back to a smaller tree.
    let (status, _) = w.submit(&cut, 0, cut.len() - 1).await;
    assert_eq!(status, 409);
    let (code, r) = verify(&setup, &file, &strs(&flags(&w, &note)));
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["broken_at"], format!("{}:{}", file.display(), n - 1));
    let what = r["broken"].as_str().expect("broken");
    assert!(
        what.starts_with(&format!(
            "truncated after a witnessed checkpoint of size {n}: the trail ends at seq {} (tree size {})",
            n - 2,
            n - 1
        )),
        "{what}"
    );
}
