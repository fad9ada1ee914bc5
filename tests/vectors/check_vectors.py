#!/usr/bin/env python3
"""Check tests/vectors/envelope-v1.json against docs/ENVELOPE.md,
tests/vectors/audit-v3.jsonl (and the older audit-v2.jsonl and
audit-v1.jsonl) against docs/AUDIT.md, and
tests/vectors/enrollment-v1.json against docs/ENROLLMENT.md.

This is an independent implementation of the sealgate envelope v1, written
from docs/ENVELOPE.md alone (sections 2, 3 and 6), without reference to the
gateway's source. It rebuilds the signed bytes from the individual fields,
derives the keys from their seeds, signs, verifies, and tries a few
tamperings that must fail verification.

The audit part is likewise written from docs/AUDIT.md alone ("Lines",
"The chain", "Checkpoints", "Verifying"): it hashes each line's bytes,
follows `prev` and `seq`, rebuilds each checkpoint's signed bytes (v1, v2
and v3) and verifies them with the key derived from the vector's seed;
for v3 ("The Merkle log") it also hashes every line as an RFC 6962 leaf,
computes the tree head before each checkpoint, rebuilds the C2SP
checkpoint note (text, note key id, signature line) and verifies its
signature; it applies
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
    # Leaf hashes of the lines read, when they start at seq 0 (else None:
    # no tree head can be computed, and none is checked).
    leaves = None
    # Lines since the last checkpoint: their instance and count; whether
    # the checkpoint before them was read (then `records` is exact).
    pending_inst, pending, since_known, unvouched = None, 0, False, 0
    # The log's origin (its first v3 checkpoint's): one per trail; and no
    # v1 or v2 checkpoint after a v3 one (a downgrade).
    trail_origin = None
    for lines in files:
        first_seq, checkpoints, sealed_here, v2_here = None, 0, False, False
        for raw in lines:
            if sealed_here:
                return "broken"  # a line after a sealing checkpoint
            rec = json.loads(raw)
            if last_seq is None:
                if rec["seq"] == 0 and bytes.fromhex(rec["prev"]) != b"\x00" * 32:
                    return "broken"
                leaves = [] if rec["seq"] == 0 else None
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
                if len(rec["instance"].encode()) > 255:
                    return "broken"  # bytes past 255 would be unsigned
                if trail_origin is not None and "note" not in rec:
                    return "broken"  # a downgrade: no head after a v3 checkpoint
                if "file_first_seq" in rec and "note" in rec:
                    if not v3_checkpoint_ok(raw, rec, pk, leaves):
                        return "broken"
                    origin = parse_note(rec["note"])[0]
                    if trail_origin not in (None, origin):
                        return "broken"  # another log's checkpoint in the trail
                    trail_origin = origin
                    if rec["file_first_seq"] != first_seq:
                        return "broken"  # head cut, or files joined
                    if rec["records"] != pending and (since_known or rec["records"] < pending):
                        return "broken"  # records is not the count of its lines
                    v2_here = True
                    sealed_here = rec["reason"] in ("close", "rotate")
                elif "file_first_seq" in rec:
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
            if leaves is not None:
                leaves.append(leaf_hash(raw))
        if lines and checkpoints == 0:
            return "broken"  # no signed checkpoint in this file
        heads_vouched = heads_vouched and (v2_here or not lines)
        last_file_sealed = sealed_here
    return "sealed" if last_file_sealed and heads_vouched and not unvouched else "not sealed"


AUDIT_CONTEXT_V3 = b"sealgate-audit-checkpoint-v3\x00"


def leaf_hash(line):
    """docs/AUDIT.md, "The Merkle log": SHA-256(0x00 || the line's bytes)."""
    return hashlib.sha256(b"\x00" + line).digest()


def tree_head(hashes):
    """RFC 6962 Merkle tree hash of leaf hashes (docs/TLOG.md): the empty
    tree is SHA-256(""), a node SHA-256(0x01 || left || right), split at
    the largest power of two below the size."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + tree_head(hashes[:k]) + tree_head(hashes[k:])).digest()


def note_key_id(origin, raw_pk):
    """The note key id: SHA-256(origin || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(origin.encode() + b"\n\x01" + raw_pk).digest()[:4]


def note_text(origin, size, root):
    """The C2SP checkpoint text: origin, size, base64 root, each a line."""
    return "%s\n%d\n%s\n" % (origin, size, base64.b64encode(root).decode())


def signed_note(text, origin, sk):
    """The text, a blank line, one signature line by the audit key under
    the key name = origin: `— <origin> <base64(key id || signature)>`."""
    raw_pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    sig = sk.sign(text.encode())
    return text + "\n\u2014 " + origin + " " + base64.b64encode(
        note_key_id(origin, raw_pk) + sig).decode() + "\n"


def v3_signed(rec, prev, root, origin):
    """docs/AUDIT.md, "Checkpoints": the v2 fields under the v3 context,
    then the root (32 bytes) and u8 len || origin."""
    o = origin.encode()
    return AUDIT_CONTEXT_V3 + v2_signed(rec, prev)[len(AUDIT_CONTEXT_V2):] + root + bytes([len(o)]) + o


def checkpoint_line_v3(rec):
    """docs/AUDIT.md: the v2 line with `note` between key_id and reason."""
    s = lambda v: json.dumps(v, ensure_ascii=False)
    v2 = checkpoint_line(rec).decode()
    at = v2.index(',"reason":')
    return (v2[:at] + ',"note":' + s(rec["note"]) + v2[at:]).encode()


def parse_note(note):
    """(origin, size, root, key id, signature) of a checkpoint note in the
    gateway's one form, or None."""
    at = note.rfind("\n\n")
    if at < 0:
        return None
    text, block = note[:at + 1], note[at + 2:]
    lines = text.split("\n")[:-1]
    sigs = block.split("\n")
    if len(lines) != 3 or len(sigs) != 2 or sigs[1] != "":
        return None  # extension lines, or not exactly one signature line
    origin, size, root64 = lines
    prefix = "\u2014 " + origin + " "
    if not sigs[0].startswith(prefix) or not size.isdigit() or str(int(size)) != size:
        return None
    try:
        root = base64.b64decode(root64, validate=True)
        raw = base64.b64decode(sigs[0][len(prefix):], validate=True)
    except ValueError:
        return None
    if len(root) != 32 or base64.b64encode(root).decode() != root64 or len(raw) != 68:
        return None
    return origin, int(size), root, text, raw[:4], raw[4:]


def v3_checkpoint_ok(raw, rec, pk, leaves):
    """A v3 checkpoint: its note in its one form, for tree size = seq,
    signed by the audit key under the origin; its root the head of the
    lines before it (when they were all read); its v3 signature; its line
    in its one form."""
    parsed = parse_note(rec["note"])
    if parsed is None:
        return False
    origin, size, root, text, key_id_, sig = parsed
    raw_pk = pk.public_bytes(Encoding.Raw, PublicFormat.Raw)
    if size != rec["seq"] or key_id_ != note_key_id(origin, raw_pk):
        return False
    if not verifies(pk, sig, text.encode()):
        return False
    if leaves is not None and tree_head(leaves) != root:
        return False
    p = bytes.fromhex(rec["prev"])
    if not verifies(pk, base64.b64decode(rec["sig"]), v3_signed(rec, p, root, origin)):
        return False
    return raw == checkpoint_line_v3(rec)


def resign(lines, sk, origin):
    """What the audit key's holder can make of edited `lines`: renumbered,
    re-chained, every checkpoint's records, head, note and signature made
    again (one instance, one file from seq 0)."""
    out, prev, hashes, pending = [], b"\x00" * 32, [], 0
    for i, raw in enumerate(lines):
        rec = json.loads(raw)
        if rec["type"] == "checkpoint":
            root = tree_head(hashes)
            rec = dict(rec, seq=i, prev=prev.hex(), records=pending,
                       note=signed_note(note_text(origin, i, root), origin, sk))
            rec["sig"] = base64.b64encode(sk.sign(v3_signed(rec, prev, root, origin))).decode()
            line, pending = checkpoint_line_v3(rec), 0
        else:
            body = raw.decode().split(",", 1)[1].rsplit(',"prev":"', 1)[0]
            line = ('{"seq":%d,%s,"prev":"%s"}' % (i, body, prev.hex())).encode()
            pending += 1
        out.append(line)
        prev = hashlib.sha256(line).digest()
        hashes.append(leaf_hash(line))
    return out


def check_audit_v3():
    here = Path(__file__).parent
    meta = json.loads((here / "audit-v3.json").read_text())
    lines = (here / meta["file"]).read_bytes().split(b"\n")
    check("audit v3: file ends with a newline", lines[-1] == b"")
    lines = lines[:-1]
    sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(meta["signing_key_seed_hex"]))
    pk = sk.public_key()
    raw_pk = pk.public_bytes(Encoding.Raw, PublicFormat.Raw)
    origin = meta["origin"]
    check("audit v3: public key derived from the seed", raw_pk.hex() == meta["public_key_hex"])
    check("audit v3: key id = ed25519: + hex(SHA-256(public key)[:16])",
          meta["key_id"] == "ed25519:" + hashlib.sha256(raw_pk).digest()[:16].hex())
    check("audit v3: context string", meta["checkpoint_context"].encode() == AUDIT_CONTEXT_V3)
    vkey = "%s+%s+%s" % (origin, note_key_id(origin, raw_pk).hex(),
                         base64.b64encode(b"\x01" + raw_pk).decode())
    check("audit v3: the log's note verifier key (vkey)", vkey == meta["note_vkey"])
    hashes = [leaf_hash(l) for l in lines]
    check("audit v3: leaf hashes = SHA-256(0x00 || line)",
          [h.hex() for h in hashes] == meta["leaf_hashes_hex"])
    check("audit v3: the head of the whole file",
          tree_head(hashes).hex() == meta["root_hex"] and meta["tree_size"] == len(lines))
    records = [json.loads(l) for l in lines]
    cps = [i for i, r in enumerate(records) if r["type"] == "checkpoint"]
    check("audit v3: the checkpoints stated are the file's", [c["seq"] for c in meta["checkpoints"]] == cps)
    for c in meta["checkpoints"]:
        n, rec = c["seq"], records[c["seq"]]
        root = tree_head(hashes[:n])
        text = note_text(origin, n, root)
        note = signed_note(text, origin, sk)
        p = bytes.fromhex(rec["prev"])
        check(f"audit v3: seq {n}: the head of lines 0..{n - 1}",
              root.hex() == c["root_hex"] and base64.b64encode(root).decode() == c["root_base64"]
              and c["tree_size"] == n)
        check(f"audit v3: seq {n}: the note text, and the note signed here is the line's",
              text == c["note_text"] and note == c["note"] == rec["note"])
        check(f"audit v3: seq {n}: the signed bytes rebuilt from the doc",
              v3_signed(rec, p, root, origin).hex() == c["signed_bytes_hex"])
        check(f"audit v3: seq {n}: the signature made here is the line's (Ed25519 is deterministic)",
              base64.b64encode(sk.sign(v3_signed(rec, p, root, origin))).decode() == rec["sig"])
        check(f"audit v3: seq {n}: the line in its one form", lines[n] == checkpoint_line_v3(rec))
    check("audit v3: the whole file is sealed", audit_verdict([lines], pk) == "sealed")
    check("audit v3: cut after the first count checkpoint: not sealed",
          audit_verdict([lines[:cps[0] + 1]], pk) == "not sealed")
    check("audit v3: another key: broken", audit_verdict([lines], Ed25519PrivateKey.from_private_bytes(
        b"\x01" * 32).public_key()) == "broken")
    check("audit v3: the key holder's re-signing of the file itself is the file",
          resign(lines, sk, origin) == lines)

    def edited_checkpoint(n, **changes):
        out = list(lines)
        out[n] = checkpoint_line_v3(dict(records[n], **changes))
        return out

    n = cps[1]
    rec = records[n]
    stripped = lines[n].replace(b',"note":' + json.dumps(rec["note"], ensure_ascii=False).encode(), b"")
    check("audit v3: a checkpoint stripped of its note: broken (checked as v2)",
          stripped != lines[n] and audit_verdict([lines[:n] + [stripped]], pk) == "broken")
    check("audit v3: the note of another checkpoint: broken (size != seq)",
          audit_verdict([edited_checkpoint(n, note=records[cps[0]]["note"])[:n + 1]], pk) == "broken")
    other = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
    root = tree_head(hashes[:n])
    check("audit v3: a note signed by another key: broken",
          audit_verdict([edited_checkpoint(n, note=signed_note(note_text(origin, n, root), origin, other))[:n + 1]], pk) == "broken")
    renamed = signed_note(note_text(origin, n, root), origin, sk).replace(
        "\u2014 " + origin + " ", "\u2014 other.example/log ")
    check("audit v3: a note signed under another name than its origin: broken",
          audit_verdict([edited_checkpoint(n, note=renamed)[:n + 1]], pk) == "broken")
    wrong = hashlib.sha256(b"another tree").digest()
    forged = dict(rec, note=signed_note(note_text(origin, n, wrong), origin, sk))
    forged["sig"] = base64.b64encode(sk.sign(v3_signed(forged, bytes.fromhex(rec["prev"]), wrong, origin))).decode()
    check("audit v3: a head that is not the lines before it, signed with the key: broken",
          audit_verdict([lines[:n] + [checkpoint_line_v3(forged)]], pk) == "broken")
    later = dict(forged, file_first_seq=cps[0] + 1)
    later["sig"] = base64.b64encode(sk.sign(v3_signed(later, bytes.fromhex(rec["prev"]), wrong, origin))).decode()
    check("audit v3: the same in a file that does not start at seq 0: the head is not checked",
          audit_verdict([lines[cps[0] + 1:n] + [checkpoint_line_v3(later)]], pk) == "not sealed")
    prev_n = bytes.fromhex(rec["prev"])
    downgraded = {k: v for k, v in rec.items() if k != "note"}
    downgraded["sig"] = base64.b64encode(sk.sign(v2_signed(downgraded, prev_n))).decode()
    check("audit v3: a v2 checkpoint, validly signed, after v3 ones: broken (a downgrade)",
          audit_verdict([lines[:n] + [checkpoint_line(downgraded)]], pk) == "broken")
    o2 = "other.example/log"
    moved = dict(rec, note=signed_note(note_text(o2, n, root), o2, sk))
    moved["sig"] = base64.b64encode(sk.sign(v3_signed(moved, prev_n, root, o2))).decode()
    check("audit v3: a checkpoint of another origin, validly signed, after this log's: broken",
          audit_verdict([lines[:n] + [checkpoint_line_v3(moved)]], pk) == "broken")
    escaped = lines[n].replace("\u2014".encode(), b"\\u2014")
    check("audit v3: the note escaped otherwise: broken (one form)",
          escaped != lines[n] and audit_verdict([lines[:n] + [escaped]], pk) == "broken")
    # The key holder edits a record and re-signs everything: the file
    # verifies sealed on its own; only the head a witness saw differs.
    altered = list(lines)
    altered[0] = altered[0].replace(b"get_meps", b"get_mepz")
    rewritten = resign(altered, sk, origin)
    check("audit v3: an edited record, re-chained without the key: broken",
          audit_verdict([rechain([json.loads(l) for l in altered])], pk) == "broken")
    check("audit v3: an edited record re-signed with the key: sealed on its own",
          audit_verdict([rewritten], pk) == "sealed")
    check("audit v3: ... but its head at a witnessed size differs",
          tree_head([leaf_hash(l) for l in rewritten[:n]]).hex() != meta["checkpoints"][1]["root_hex"])
    check_witnessed(meta, lines, rewritten, sk)


def cosigned_message(text, t):
    """c2sp.org/tlog-cosignature (docs/TLOG.md): what a cosignature/v1
    signs: `cosignature/v1`, `time <T>`, then the checkpoint text."""
    return ("cosignature/v1\ntime %d\n" % t).encode() + text.encode()


def check_witnessed(meta, lines, rewritten, sk):
    """docs/AUDIT.md, "Witnesses": a cosigned checkpoint an auditor keeps
    (`--checkpoint`): the audit key's note signature, the witness's
    cosignature/v1 (key id = SHA-256(name || 0x0A || 0x04 || key)[:4],
    payload key id || u64be(T) || signature), and the head of the file's
    first N lines equal to its root; a re-signed rewrite's is not."""
    w = meta["witnessed"]
    wsk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(w["witness_seed_hex"]))
    wpk = wsk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    name, t, n = w["witness_name"], w["timestamp"], w["tree_size"]
    wid = hashlib.sha256(name.encode() + b"\n\x04" + wpk).digest()[:4]
    check("audit v3 witnessed: the witness's vkey",
          w["witness_vkey"] == "%s+%s+%s" % (name, wid.hex(), base64.b64encode(b"\x04" + wpk).decode()))
    note = w["cosigned_note"]
    at = note.rfind("\n\n")
    text, sigs = note[:at + 1], note[at + 2:].split("\n")
    log_line, wit_line = sigs[0], sigs[1]
    origin = meta["origin"]
    raw_pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    log_raw = base64.b64decode(log_line.split(" ")[2])
    check("audit v3 witnessed: the log's signature line (audit key under the origin)",
          log_line.startswith("\u2014 " + origin + " ") and log_raw[:4] == note_key_id(origin, raw_pk)
          and verifies(sk.public_key(), log_raw[4:], text.encode()))
    wit_raw = base64.b64decode(wit_line.split(" ")[2])
    stamp = struct.unpack(">Q", wit_raw[4:12])[0]
    check("audit v3 witnessed: the cosignature/v1 line (key id, timestamp, signature)",
          wit_line.startswith("\u2014 " + name + " ") and wit_raw[:4] == wid and stamp == t
          and len(wit_raw) == 4 + 8 + 64
          and verifies(wsk.public_key(), wit_raw[12:], cosigned_message(text, t)))
    check("audit v3 witnessed: the cosignature made here is the note's (Ed25519 is deterministic)",
          wit_raw[12:] == wsk.sign(cosigned_message(text, t)) and sigs[2:] == [""])
    root = base64.b64decode(text.split("\n")[2])
    check("audit v3 witnessed: the file's first N lines have its root (--checkpoint matches)",
          text.split("\n")[1] == str(n) and tree_head([leaf_hash(l) for l in lines[:n]]) == root)
    check("audit v3 witnessed: a re-signed rewrite does not (rewritten or forked before size N)",
          tree_head([leaf_hash(l) for l in rewritten[:n]]) != root)


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
    check_audit_v3()
    check_enrollment()

    print(f"{results['passed']} passed, {results['failed']} failed")
    return 0 if results["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
