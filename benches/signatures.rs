//! Ed25519 on the request path: ed25519-dalek against aws-lc-rs, signing
//! (the gateway signs with aws-lc-rs: src/envelope/ed25519.rs) and
//! verifying (aws-lc-rs with verify_strict's small-order checks in front,
//! which the gateway does not use because it was no faster), interleaved in
//! rounds so noise hits both alike. Quote the ratios.
//! Run: `cargo bench --bench signatures`.

use std::time::Instant;

use ed25519_dalek::{Signer, SigningKey};
use sealgate::envelope::ed25519::FastSigner;

/// verify_strict's verdict through aws-lc-rs: small-order A and R refused
/// first (R by decompressing it), then BoringSSL's cofactorless check,
/// which refuses a non-canonical S itself.
fn aws_verify_strict(
    key: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    sig: &ed25519_dalek::Signature,
) -> bool {
    let bytes = sig.to_bytes();
    let mut r = [0u8; 32];
    r.copy_from_slice(&bytes[..32]);
    let Ok(r) = ed25519_dalek::VerifyingKey::from_bytes(&r) else {
        return false;
    };
    if key.is_weak() || r.is_weak() {
        return false;
    }
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, key.as_bytes())
        .verify(message, &bytes)
        .is_ok()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("signatures: run with `cargo bench --bench signatures`");
        return;
    }
    let key = SigningKey::from_bytes(&[42; 32]);
    let public = key.verifying_key();
    let fast = FastSigner::new(&key).expect("aws-lc-rs key");
    // About the size of a signed tools/call's signed bytes.
    let message = vec![7u8; 300];
    let sig = key.sign(&message);
    let n = 4000;
    let (mut dv, mut av, mut ds, mut fs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..8 {
        let t = Instant::now();
        for _ in 0..n {
            assert!(public.verify_strict(&message, &sig).is_ok());
        }
        dv.push(t.elapsed().as_secs_f64() / f64::from(n) * 1e6);
        let t = Instant::now();
        for _ in 0..n {
            assert!(aws_verify_strict(&public, &message, &sig));
        }
        av.push(t.elapsed().as_secs_f64() / f64::from(n) * 1e6);
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(key.sign(&message));
        }
        ds.push(t.elapsed().as_secs_f64() / f64::from(n) * 1e6);
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(fast.sign(&message));
        }
        fs.push(t.elapsed().as_secs_f64() / f64::from(n) * 1e6);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (dv, av, ds, fs) = (med(&mut dv), med(&mut av), med(&mut ds), med(&mut fs));
    println!(
        "verify: ed25519-dalek verify_strict {dv:.1} us, aws-lc-rs strict {av:.1} us, ratio {:.2}",
        av / dv
    );
    println!(
        "sign:   ed25519-dalek {ds:.1} us, aws-lc-rs {fs:.1} us, ratio {:.2}",
        fs / ds
    );
    println!(
        "per call (one verify + one sign): {:.1} us -> {:.1} us",
        dv + ds,
        av + fs
    );
}
