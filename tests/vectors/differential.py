"""Differential check of sealgate's encodings against the reproduction in
check_vectors.py (written from docs/ENVELOPE.md, docs/AUDIT.md and
docs/ENROLLMENT.md alone). tests/differential.rs generates random inputs,
runs them through sealgate and writes inputs and outputs to a JSON file;
this script recomputes every output with check_vectors.py's functions
(imported, never copied) and prints one DIFF line per output that differs.

Usage: python3 differential.py CASES.json  (exit 0: all agree, 1: a DIFF).
Needs Python `cryptography` (the test venv).
"""

import base64
import hashlib
import json
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

import check_vectors as cv  # noqa: E402

diffs = []


def same(kind, i, what, ours, theirs):
    if ours != theirs:
        diffs.append(f"DIFF {kind}[{i}] {what}")
        print(f"DIFF {kind}[{i}] {what}: python {str(ours)[:160]!r} sealgate {str(theirs)[:160]!r}")


def envelopes(cases):
    for i, c in enumerate(cases):
        payload = bytes.fromhex(c["payload_hex"])
        req = cv.build(cv.REQUEST_CONTEXT, c, payload=payload)
        same("envelopes", i, "request_signed_hex", req.hex(), c["request_signed_hex"])
        digest = hashlib.sha256(req).digest()
        same("envelopes", i, "request_digest_hex", digest.hex(), c["request_digest_hex"])
        resp = cv.build(cv.RESPONSE_CONTEXT, c, request_digest=digest, payload=payload)
        same("envelopes", i, "response_signed_hex", resp.hex(), c["response_signed_hex"])
        same("envelopes", i, "response_digest_hex", hashlib.sha256(resp).hexdigest(),
             c["response_digest_hex"])
    return len(cases)


def audit_chains(cases):
    for i, c in enumerate(cases):
        sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(c["seed_hex"]))
        raw = sk.public_key().public_bytes(cv.Encoding.Raw, cv.PublicFormat.Raw)
        same("audit_chains", i, "key_id", cv.key_id(raw), c["key_id"])
        lines = [bytes.fromhex(h) for h in c["lines_hex"]]
        same("audit_chains", i, "line_hashes_hex",
             [hashlib.sha256(x).hexdigest() for x in lines], c["line_hashes_hex"])
        leaves = [cv.leaf_hash(x) for x in lines]
        same("audit_chains", i, "leaf_hashes_hex", [h.hex() for h in leaves], c["leaf_hashes_hex"])
        root = cv.tree_head(leaves)
        same("audit_chains", i, "root_hex", root.hex(), c["root_hex"])
        for version in ("v2", "v3"):
            v = c[version]
            prev = bytes.fromhex(v["prev_hex"])
            before = lines[: v["seq"]]
            want_prev = hashlib.sha256(before[-1]).digest() if before else bytes(32)
            same("audit_chains", i, f"{version}.prev", want_prev.hex(), v["prev_hex"])
            rec = {"seq": v["seq"], "ts_ms": c["ts_ms"], "instance": c["instance"],
                   "reason": c["reason"], "file_first_seq": c["file_first_seq"],
                   "key_id": c["key_id"], "records": c["records"], "prev": v["prev_hex"]}
            if version == "v2":
                signed = cv.v2_signed(rec, prev)
            else:
                signed = cv.v3_signed(rec, prev, root, c["origin"])
                note = cv.signed_note(cv.note_text(c["origin"], v["seq"], root), c["origin"], sk)
                same("audit_chains", i, "v3.note", note, v["note"])
                rec["note"] = note
            same("audit_chains", i, f"{version}.signed_hex", signed.hex(), v["signed_hex"])
            sig = base64.b64encode(sk.sign(signed)).decode()
            same("audit_chains", i, f"{version}.sig", sig, v["sig"])
            rec["sig"] = v["sig"]
            render = cv.checkpoint_line if version == "v2" else cv.checkpoint_line_v3
            same("audit_chains", i, f"{version}.line", render(rec).decode(), v["line"])
        same("audit_chains", i, "v2.line is the last line's bytes",
             c["v2"]["line"].encode(), lines[-1])
    return len(cases)


def enrollments(cases):
    for i, c in enumerate(cases):
        csr_digest = hashlib.sha256(bytes.fromhex(c["csr_hex"])).digest()
        new_key = bytes.fromhex(c["new_public_key_hex"])
        ts = struct.pack(">q", c["timestamp_unix_ms"])
        enroll = cv.signed_bytes(["sealgate/v1/enroll", c["audience"],
                                  hashlib.sha256(c["token"].encode()).digest(),
                                  csr_digest, new_key, ts])
        same("enrollments", i, "enroll_proof_hex", enroll.hex(), c["enroll_proof_hex"])
        renew = cv.signed_bytes(["sealgate/v1/renew", c["audience"], c["spiffe_id"],
                                 c["current_key_id"], csr_digest, new_key, ts,
                                 bytes.fromhex(c["nonce_hex"])])
        same("enrollments", i, "renew_proof_hex", renew.hex(), c["renew_proof_hex"])
    return len(cases)


def main():
    cases = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    for kind, run in (("envelopes", envelopes), ("audit_chains", audit_chains),
                      ("enrollments", enrollments)):
        before = len(diffs)
        n = run(cases[kind])
        if len(diffs) == before:
            print(f"{kind}: {n} agree")
        else:
            print(f"{kind}: {len(diffs) - before} difference(s) in {n} cases")
    print(f"seed {cases['seed']}: {len(diffs)} difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
