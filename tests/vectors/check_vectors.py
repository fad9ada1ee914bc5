#!/usr/bin/env python3
"""Check tests/vectors/envelope-v1.json against docs/ENVELOPE.md,
tests/vectors/audit-v2.jsonl (and the old audit-v1.jsonl) against
docs/AUDIT.md, and
tests/vectors/enrollment-v1.json against docs/ENROLLMENT.md.

This is an independent implementation of the sealgate envelope v1, written
from docs/ENVELOPE.md alone (sections 2, 3 and 6), without reference to the
gateway's source. It rebuilds the signed bytes from the individual fields,
derives the keys from their seeds, signs, verifies, and tries a few
tamperings that must fail verification.

The audit part is likewise written from docs/AUDIT.md alone ("Lines",
"The chain", "Checkpoints", "Verifying"): it hashes each line's bytes,
follows `prev` and `seq`, rebuilds each checkpoint's signed bytes (v1 and
v2) and verifies them with the key derived from the vector's seed, applies
the verdict rules (every file holds a checkpoint, file_first_seq names the
file's first line, nothing after a sealing checkpoint, only a v2 close or
rotate as the last line seals), and checks that each cut or tampering gets
the verdict the doc says.

Usage: python3 tests/vectors/check_vectors.py   (exit status 0 iff all pass)
Needs only the standard library and the `cryptography` package.
"""
import base64
import datetime
import hashlib
import json
import struct
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REQUEST_CONTEXT = "sealgate/v1/request"
RESPONSE_CONTEXT = "sealgate/v1/response"

results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail and not ok else ""))


def u64be(x):
    return struct.pack(">Q", x)


def signed_bytes(fields):
    """Section 2: u64be(N) || (u64be(len(b)) || b) for each field."""
    out = u64be(len(fields))
    for f in fields:
        b = f.encode("utf-8") if isinstance(f, str) else f
        out += u64be(len(b)) + b
    return out


def build(context, v, request_digest=None, payload=None):
    """The 7 request fields (or 8 response fields) in the order of section 2."""
    if payload is None:
        payload = v["payload_utf8"].encode("utf-8")
    fields = [
        context,
        v["audience"],
        v["key_id"],
        struct.pack(">q", v["timestamp_unix_ms"]),  # signed int64, big-endian
        bytes.fromhex(v["nonce_hex"]),
        v["payload_type"],
        payload,
    ]
    if request_digest is not None:
        fields.append(request_digest)
    return signed_bytes(fields)


def key_id(public_raw):
    """Section 3: 'ed25519:' + lowercase hex of the first 16 bytes of SHA-256(pk)."""
    return "ed25519:" + hashlib.sha256(public_raw).digest()[:16].hex()


def verifies(public_key, signature, data):
    try:
        public_key.verify(signature, data)
        return True
    except InvalidSignature:
        return False


def check_direction(label, v, context, other_context, request_digest=None):
    sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["signing_key_seed_hex"]))
    pk = sk.public_key()
    pk_raw = pk.public_bytes(Encoding.Raw, PublicFormat.Raw)
    check(f"{label}: public key from seed", pk_raw.hex() == v["public_key_hex"])
    check(f"{label}: key id from public key", key_id(pk_raw) == v["key_id"], key_id(pk_raw))

    data = build(context, v, request_digest)
    check(f"{label}: signed bytes built from fields", data.hex() == v["signed_bytes_hex"])
    if "signed_bytes_sha256_hex" in v:
        check(f"{label}: SHA-256 of signed bytes",
              hashlib.sha256(data).hexdigest() == v["signed_bytes_sha256_hex"])
    sig = sk.sign(data)
    check(f"{label}: signature", sig.hex() == v["signature_hex"])

    expected_sig = bytes.fromhex(v["signature_hex"])
    check(f"{label}: vector signature verifies", verifies(pk, expected_sig, data))

    # Negative cases: each tampering must make verification fail.
    payload = bytearray(v["payload_utf8"].encode("utf-8"))
    payload[len(payload) // 2] ^= 0x01
    check(f"{label}: flipped payload byte is refused",
          not verifies(pk, expected_sig, build(context, v, request_digest, bytes(payload))))
    check(f"{label}: swapped context string is refused",
          not verifies(pk, expected_sig, build(other_context, v, request_digest)))
    bad_sig = bytearray(expected_sig)
    bad_sig[10] ^= 0x80
    check(f"{label}: flipped signature byte is refused", not verifies(pk, bytes(bad_sig), data))
    return data


AUDIT_CONTEXT = b"sealgate-audit-checkpoint-v1\x00"


def audit_chain_ok(lines, pk):
    """docs/AUDIT.md: prev = SHA-256 of the previous line's bytes (64 zeros
    for seq 0), seq one more each line, checkpoints signed over
    context || u64be(seq) || i64be(ts_ms) || u8 len || instance || prev."""
    prev, last_seq = b"\x00" * 32, None
    for raw in lines:
        rec = json.loads(raw)
        if rec["seq"] != (0 if last_seq is None else last_seq + 1):
            return False
        if bytes.fromhex(rec["prev"]) != prev:
            return False
        if rec["type"] == "checkpoint":
            inst = rec["instance"].encode("ascii")
            signed = (AUDIT_CONTEXT + struct.pack(">Q", rec["seq"]) + struct.pack(">q", rec["ts_ms"])
                      + bytes([len(inst)]) + inst + prev)
            if not verifies(pk, base64.b64decode(rec["sig"]), signed):
                return False
        prev, last_seq = hashlib.sha256(raw).digest(), rec["seq"]
    return True


def check_audit():
    here = Path(__file__).parent
    meta = json.loads((here / "audit-v1.json").read_text())
    lines = (here / meta["file"]).read_bytes().split(b"\n")
    check("audit: file ends with a newline", lines[-1] == b"")
    lines = lines[:-1]
    sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(meta["signing_key_seed_hex"]))
    pk = sk.public_key()
    raw_pk = pk.public_bytes(Encoding.Raw, PublicFormat.Raw)
    check("audit: public key derived from the seed", raw_pk.hex() == meta["public_key_hex"])
    check("audit: key id = ed25519: + hex(SHA-256(public key)[:16])",
          meta["key_id"] == "ed25519:" + hashlib.sha256(raw_pk).digest()[:16].hex())
    check("audit: context string", meta["checkpoint_context"].encode() == AUDIT_CONTEXT)
    records = [json.loads(l) for l in lines]
    check("audit: every line has seq, type, instance, prev, ts",
          all({"seq", "type", "instance", "prev", "ts"} <= r.keys() for r in records))
    check("audit: the last line is a closing checkpoint by this key",
          records[-1]["type"] == "checkpoint" and records[-1]["reason"] == "close"
          and records[-1]["key_id"] == meta["key_id"])
    check("audit: the chain and the checkpoint verify", audit_chain_ok(lines, pk))
    altered = list(lines)
    altered[0] = altered[0].replace(b"get_meps", b"get_mepz")
    check("audit: an altered record breaks the chain", not audit_chain_ok(altered, pk))
    check("audit: a deleted record breaks the chain", not audit_chain_ok(lines[:1] + lines[2:], pk))
    check("audit: reordered records break the chain",
          not audit_chain_ok([lines[1], lines[0]] + lines[2:], pk))
    rec = json.loads(lines[-1])
    sig = bytearray(base64.b64decode(rec["sig"]))
    sig[5] ^= 1
    rec["sig"] = base64.b64encode(bytes(sig)).decode()
    forged = lines[:-1] + [json.dumps(rec, separators=(",", ":")).encode()]
    check("audit: a flipped checkpoint signature bit is refused", not audit_chain_ok(forged, pk))
    other = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32).public_key()
    check("audit: another key does not verify the checkpoint", not audit_chain_ok(lines, other))


AUDIT_CONTEXT_V2 = b"sealgate-audit-checkpoint-v2\x00"


def v2_signed(rec, prev):
    """docs/AUDIT.md, "Checkpoints": context || u64be(seq) || i64be(ts_ms)
    || u8 len || instance || prev || u64be(file_first_seq) || u8 len || reason."""
    inst = rec["instance"].encode("ascii")
    reason = rec["reason"].encode("ascii")
    return (AUDIT_CONTEXT_V2 + struct.pack(">Q", rec["seq"]) + struct.pack(">q", rec["ts_ms"])
            + bytes([len(inst)]) + inst + prev
            + struct.pack(">Q", rec["file_first_seq"]) + bytes([len(reason)]) + reason)


def rfc3339_ms(ms):
    """docs/AUDIT.md, "Checkpoint lines": YYYY-MM-DDTHH:MM:SS.mmmZ (UTC)."""
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def checkpoint_line(rec):
    """docs/AUDIT.md, "Checkpoint lines": the one form of a v2 checkpoint."""
    s = lambda v: json.dumps(v, ensure_ascii=False)
    return ('{"seq":%d,"type":"checkpoint","instance":%s,"file_first_seq":%d,"key_id":%s,'
            '"reason":%s,"records":%d,"sig":%s,"ts":%s,"ts_ms":%d,"prev":"%s"}' % (
                rec["seq"], s(rec["instance"]), rec["file_first_seq"], s(rec["key_id"]),
                s(rec["reason"]), rec["records"], s(rec["sig"]), s(rfc3339_ms(rec["ts_ms"])),
                rec["ts_ms"], bytes.fromhex(rec["prev"]).hex())).encode()


def audit_verdict(files, pk):
    """docs/AUDIT.md, "Verifying", with the key: 'broken', 'not sealed' or
    'sealed' for `files` (lists of line bytes, oldest first). A checkpoint
    vouches only for the lines of its own instance since the checkpoint
    before; lines of another instance pending at a restart are not
    vouched, and a trail holding any is never sealed."""
    prev, last_seq = None, None
    last_file_sealed, heads_vouched = False, True
    # Lines since the last checkpoint: their instance and count; whether
    # the checkpoint before them was read (then `records` is exact).
    pending_inst, pending, since_known, unvouched = None, 0, False, 0
    for lines in files:
        first_seq, checkpoints, sealed_here, v2_here = None, 0, False, False
        for raw in lines:
            if sealed_here:
                return "broken"  # a line after a sealing checkpoint
            rec = json.loads(raw)
            if last_seq is None:
                if rec["seq"] == 0 and bytes.fromhex(rec["prev"]) != b"\x00" * 32:
                    return "broken"
            elif rec["seq"] != last_seq + 1 or bytes.fromhex(rec["prev"]) != prev:
                return "broken"
            if first_seq is None:
                first_seq = rec["seq"]
            if rec["seq"] == 0:
                since_known = True
            inst = rec.get("instance")
            if pending and inst != pending_inst:
                unvouched += pending  # written before a restart, never checkpointed
                pending, since_known = 0, True
            if rec["type"] == "checkpoint":
                p = bytes.fromhex(rec["prev"])
                if "file_first_seq" in rec:
                    if not verifies(pk, base64.b64decode(rec["sig"]), v2_signed(rec, p)):
                        return "broken"
                    if rec["file_first_seq"] != first_seq:
                        return "broken"  # head cut, or files joined
                    if raw != checkpoint_line(rec):
                        return "broken"  # not the one form: unsigned bytes altered
                    if rec["records"] != pending and (since_known or rec["records"] < pending):
                        return "broken"  # records is not the count of its lines
                    v2_here = True
                    sealed_here = rec["reason"] in ("close", "rotate")
                else:
                    inst = rec["instance"].encode("ascii")
                    v1 = (AUDIT_CONTEXT + struct.pack(">Q", rec["seq"]) + struct.pack(">q", rec["ts_ms"])
                          + bytes([len(inst)]) + inst + p)
                    if not verifies(pk, base64.b64decode(rec["sig"]), v1):
                        return "broken"
                checkpoints += 1
                pending, since_known = 0, True
            else:
                pending_inst, pending = inst, pending + 1
            prev, last_seq = hashlib.sha256(raw).digest(), rec["seq"]
        if lines and checkpoints == 0:
            return "broken"  # no signed checkpoint in this file
        heads_vouched = heads_vouched and (v2_here or not lines)
        last_file_sealed = sealed_here
    return "sealed" if last_file_sealed and heads_vouched and not unvouched else "not sealed"


def rechain(records):
    """Lines for `records` with seq and prev recomputed from 0 (what anyone
    can do without the key)."""
    out, prev = [], b"\x00" * 32
    for i, rec in enumerate(records):
        rec = dict(rec, seq=i, prev=prev.hex())
        raw = json.dumps(rec, separators=(",", ":")).encode()
        out.append(raw)
        prev = hashlib.sha256(raw).digest()
    return out


def check_audit_v2():
    here = Path(__file__).parent
    meta = json.loads((here / "audit-v2.json").read_text())
    lines = (here / meta["file"]).read_bytes().split(b"\n")
    check("audit v2: file ends with a newline", lines[-1] == b"")
    lines = lines[:-1]
    sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(meta["signing_key_seed_hex"]))
    pk = sk.public_key()
    raw_pk = pk.public_bytes(Encoding.Raw, PublicFormat.Raw)
    check("audit v2: public key derived from the seed", raw_pk.hex() == meta["public_key_hex"])
    check("audit v2: context string", meta["checkpoint_context"].encode() == AUDIT_CONTEXT_V2)
    records = [json.loads(l) for l in lines]
    built = []
    for i, rec in enumerate(records):
        if rec["type"] == "checkpoint":
            built.append(v2_signed(rec, bytes.fromhex(rec["prev"])).hex())
    check("audit v2: signed bytes rebuilt from the doc", built == meta["checkpoint_signed_bytes_hex"])
    check("audit v2: every checkpoint names the file's first seq",
          all(r["file_first_seq"] == records[0]["seq"] for r in records if r["type"] == "checkpoint"))
    check("audit v2: the whole file is sealed", audit_verdict([lines], pk) == "sealed")
    count = next(i for i, r in enumerate(records) if r.get("reason") == "count")
    check("audit v2: cut after the count checkpoint: not sealed",
          audit_verdict([lines[:count + 1]], pk) == "not sealed")
    edited = lines[:count] + [lines[count].replace(b'"reason":"count"', b'"reason":"close"')]
    check("audit v2: count edited to close: broken (the reason is signed)",
          audit_verdict([edited], pk) == "broken")
    check("audit v2: first line cut from the head: broken", audit_verdict([lines[1:]], pk) == "broken")
    no_cp = rechain([r for r in records if r["type"] != "checkpoint"])
    check("audit v2: a recomputed chain without checkpoints: broken",
          audit_verdict([no_cp], pk) == "broken")
    after = dict(records[0], seq=records[-1]["seq"] + 1,
                 prev=hashlib.sha256(lines[-1]).hexdigest())
    appended = lines + [json.dumps(after, separators=(",", ":")).encode()]
    check("audit v2: a line after the close in the same file: broken",
          audit_verdict([appended], pk) == "broken")
    check("audit v2: the same line as a next file of its own: broken (no checkpoint in it)",
          audit_verdict([lines, appended[-1:]], pk) == "broken")
    other = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32).public_key()
    check("audit v2: another key: broken", audit_verdict([lines], other) == "broken")
    check("audit v2: every checkpoint line is in its one form (docs/AUDIT.md, \"Checkpoint lines\")",
          all(l == checkpoint_line(r) for l, r in zip(lines, records) if r["type"] == "checkpoint"))
    for name, edit in [
        ("records changed", lambda l: l.replace(b'"records":1', b'"records":999')),
        ("a trailing space", lambda l: l + b" "),
        ("a trailing CR", lambda l: l + b"\r"),
        ("ts changed", lambda l: l.replace(b'"ts":"2026', b'"ts":"2027')),
        ("uppercase prev", lambda l: l.replace(l[-66:-2], l[-66:-2].upper())),
        ("an escaped reason", lambda l: l.replace(b'"reason":"close"', b'"reason":"\\u0063lose"')),
        ("an extra member", lambda l: l.replace(b',"prev"', b',"x":1,"prev"')),
    ]:
        edited = lines[:-1] + [edit(lines[-1])]
        check(f"audit v2: the close line's unsigned bytes edited ({name}): broken",
              edited[-1] != lines[-1] and audit_verdict([edited], pk) == "broken")
    # A restart after the close was cut: instance Y's checkpoints must not
    # vouch for X's event after X's last checkpoint (a crash tail, or a
    # forged line).
    y = "1111111111111111"
    restarted = lines[:-1]
    for reason in ("start", "close"):
        p = hashlib.sha256(restarted[-1]).digest()
        rec = {"seq": json.loads(restarted[-1])["seq"] + 1, "type": "checkpoint", "instance": y,
               "file_first_seq": records[0]["seq"], "key_id": meta["key_id"], "reason": reason,
               "records": 0, "ts_ms": records[-1]["ts_ms"] + 1, "prev": p.hex()}
        rec["sig"] = base64.b64encode(sk.sign(v2_signed(rec, p))).decode()
        restarted.append(checkpoint_line(rec))
    check("audit v2: a restart's checkpoints do not vouch for the last instance's tail: not sealed",
          audit_verdict([restarted], pk) == "not sealed")
    v1_meta = json.loads((here / "audit-v1.json").read_text())
    v1_lines = (here / v1_meta["file"]).read_bytes().split(b"\n")[:-1]
    check("audit v1: an old trail verifies but is never sealed",
          audit_verdict([v1_lines], pk) == "not sealed")


def check_enrollment():
    """tests/vectors/enrollment-v1.json against docs/ENROLLMENT.md, "The
    proof bytes": the same length-prefixed encoding, 6 fields for Enroll and
    8 for Renew; the token and the CSR enter only as their SHA-256."""
    v = json.loads((Path(__file__).parent / "enrollment-v1.json").read_text())
    e, r = v["enroll"], v["renew"]

    def key(seed_hex):
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))

    def raw(k):
        return k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    new = key(e["new_key_seed_hex"])
    ts = struct.pack(">q", e["timestamp_unix_ms"])
    proof = signed_bytes(["sealgate/v1/enroll", e["audience"],
                          hashlib.sha256(e["token"].encode()).digest(),
                          hashlib.sha256(bytes.fromhex(e["csr_der_hex"])).digest(),
                          raw(new), ts])
    check("enroll: proof bytes rebuilt from the doc", proof.hex() == e["proof_bytes_hex"])
    check("enroll: the token itself is not in the proof", e["token"].encode() not in proof)
    check("enroll: the new key's signature verifies",
          verifies(new.public_key(), bytes.fromhex(e["new_key_signature_hex"]), proof))

    cur, nxt = key(r["current_key_seed_hex"]), key(r["new_key_seed_hex"])
    check("renew: current_key_id derived as in ENVELOPE.md section 3",
          key_id(raw(cur)) == r["current_key_id"])
    proof = signed_bytes(["sealgate/v1/renew", r["audience"], r["spiffe_id"], r["current_key_id"],
                          hashlib.sha256(bytes.fromhex(r["csr_der_hex"])).digest(),
                          raw(nxt), struct.pack(">q", r["timestamp_unix_ms"]),
                          bytes.fromhex(r["nonce_hex"])])
    check("renew: proof bytes rebuilt from the doc", proof.hex() == r["proof_bytes_hex"])
    check("renew: the current key's signature verifies",
          verifies(cur.public_key(), bytes.fromhex(r["current_key_signature_hex"]), proof))
    check("renew: the next key's signature verifies",
          verifies(nxt.public_key(), bytes.fromhex(r["new_key_signature_hex"]), proof))
    check("renew: a proof for another identity does not verify",
          not verifies(cur.public_key(), bytes.fromhex(r["current_key_signature_hex"]),
                       proof.replace(b"client/alice", b"client/bobby")))


def main():
    vectors = json.loads((Path(__file__).parent / "envelope-v1.json").read_text())
    req, resp = vectors["request"], vectors["response"]

    check("request: context string", req["context"] == REQUEST_CONTEXT)
    check("response: context string", resp["context"] == RESPONSE_CONTEXT)

    req_bytes = check_direction("request", req, REQUEST_CONTEXT, RESPONSE_CONTEXT)

    digest = hashlib.sha256(req_bytes).digest()
    check("response: request_digest = SHA-256(request signed bytes built here)",
          digest.hex() == resp["request_digest_hex"])
    resp_bytes = check_direction("response", resp, RESPONSE_CONTEXT, REQUEST_CONTEXT, digest)

    # Cross-direction: the response signed bytes without field 8 must not verify
    # (as a 7-field message), and a response bound to another request must not.
    resp_pk = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(resp["signing_key_seed_hex"])).public_key()
    resp_sig = bytes.fromhex(resp["signature_hex"])
    check("response: binding to a different request is refused",
          not verifies(resp_pk, resp_sig,
                       build(RESPONSE_CONTEXT, resp, hashlib.sha256(b"other").digest())))
    check("response: 7-field encoding (no request_digest) is refused",
          not verifies(resp_pk, resp_sig, build(RESPONSE_CONTEXT, resp)))
    check("response: signed bytes end with request_digest", resp_bytes.endswith(digest))

    check_audit()
    check_audit_v2()
    check_enrollment()

    print(f"{results['passed']} passed, {results['failed']} failed")
    return 0 if results["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
