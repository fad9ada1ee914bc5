#!/usr/bin/env python3
"""Independent check of tests/vectors/tlog-note.json, written from
docs/TLOG.md alone (signed notes, vkeys/skeys, checkpoints, Ed25519
cosignature/v1), not from src/tlog. Needs `cryptography` for Ed25519
(tests/fixtures/requirements.txt). Prints "N passed, M failed"; exits 1 on
any failure.
"""
import base64
import binascii
import hashlib
import json
import pathlib
import sys
import unicodedata

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DASH = "\u2014"
MAX_NOTE = 65536
MAX_SIGS = 100
MAX_CHECKPOINT = 16384
MAX_TS = 2**63 - 1
WHITE_SPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)}
TYPES = (0x01, 0x04)


class Refused(Exception):
    pass


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise Refused("base64") from e
    if b64(raw) != text:
        raise Refused("non-canonical base64")
    return raw


def decimal(text, limit):
    if not text or any(c not in "0123456789" for c in text):
        raise Refused("not decimal")
    if len(text) > 1 and text[0] == "0":
        raise Refused("leading zero")
    v = int(text)
    if v > limit:
        raise Refused("overflow")
    return v


def check_name(name):
    if not 1 <= len(name.encode()) <= 255:
        raise Refused("name length")
    if any(c in WHITE_SPACE or c == "+" or unicodedata.category(c) == "Cc" for c in name):
        raise Refused("name character")


def key_id(name, kind, pub):
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + pub).digest()[:4]


def check_no_controls(text):
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise Refused("control character")


class Key:
    def __init__(self, name, kind, pub, seed=None):
        self.name, self.kind, self.pub, self.seed = name, kind, pub, seed
        self.id = key_id(name, kind, pub)
        self.pk = Ed25519PublicKey.from_public_bytes(pub)

    def verify(self, msg, sig):
        if len(sig) != 64:
            return False
        try:
            self.pk.verify(sig, msg)
            return True
        except InvalidSignature:
            return False

    def sign(self, msg):
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(msg)


def split_key(text):
    name, sep1, rest = text.partition("+")
    hexid, sep2, material = rest.partition("+")
    if not (sep1 and sep2):
        raise Refused("shape")
    check_name(name)
    if len(hexid) != 8 or any(c not in "0123456789abcdef" for c in hexid):
        raise Refused("key ID hex")
    raw = unb64(material)
    if len(raw) < 1 or raw[0] not in TYPES:
        raise Refused("type")
    if len(raw) != 33:
        raise Refused("key length")
    return name, bytes.fromhex(hexid), raw[0], raw[1:]


def parse_vkey(text):
    name, written, kind, pub = split_key(text)
    key = Key(name, kind, pub)
    if key.id != written:
        raise Refused("key ID mismatch")
    return key


def parse_skey(text):
    if not text.startswith("PRIVATE+KEY+"):
        raise Refused("shape")
    name, written, kind, seed = split_key(text[len("PRIVATE+KEY+"):])
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = Key(name, kind, pub, seed)
    if key.id != written:
        raise Refused("key ID mismatch")
    return key


def parse_note(data):
    if len(data) > MAX_NOTE:
        raise Refused("too large")
    try:
        note = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refused("utf-8") from e
    check_no_controls(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise Refused("no blank line")
    text, block = note[:split + 1], note[split + 2:]
    if not block or not block.endswith("\n"):
        raise Refused("signature block")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGS:
        raise Refused("too many signatures")
    sigs, seen = [], set()
    for line in lines:
        if not line.startswith(DASH + " "):
            raise Refused("prefix")
        name, sep, sig = line[2:].partition(" ")
        if not sep:
            raise Refused("shape")
        check_name(name)
        raw = unb64(sig)
        if len(raw) < 5:
            raise Refused("short")
        if (name, raw[:4]) in seen:
            raise Refused("duplicate")
        seen.add((name, raw[:4]))
        sigs.append((name, raw[:4], raw[4:]))
    return text, sigs


def verify_note(text, sigs, known):
    ids = [(k.name, k.id) for k in known]
    if len(set(ids)) != len(ids) or any(k.kind != 0x01 for k in known):
        raise Refused("known keys")
    verified = []
    for name, kid, payload in sigs:
        match = [k for k in known if k.name == name and k.id == kid]
        if not match:
            continue
        if not match[0].verify(text.encode(), payload):
            raise Refused("invalid signature")
        verified.append(name)
    if not verified:
        raise Refused("no known signature")
    return verified


def parse_checkpoint(text):
    if len(text.encode()) > MAX_CHECKPOINT:
        raise Refused("too large")
    check_no_controls(text)
    if not text.endswith("\n"):
        raise Refused("not terminated")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise Refused("too few lines")
    origin, size, root, ext = lines[0], lines[1], lines[2], lines[3:]
    if not origin:
        raise Refused("empty origin")
    size = decimal(size, 2**64 - 1)
    root = unb64(root)
    if len(root) != 32:
        raise Refused("root length")
    if any(not l for l in ext):
        raise Refused("empty extension")
    return origin, size, root, ext


def cosigned_message(text, ts):
    return f"cosignature/v1\ntime {ts}\n{text}".encode()


def verify_cosignature(text, sigs, witness):
    if witness.kind != 0x04:
        raise Refused("not a cosigner key")
    parse_checkpoint(text)
    lines = [p for n, i, p in sigs if n == witness.name and i == witness.id]
    if not lines:
        raise Refused("missing")
    payload = lines[0]
    if len(payload) != 72:
        raise Refused("payload length")
    ts = int.from_bytes(payload[:8], "big")
    if ts > MAX_TS:
        raise Refused("timestamp")
    if not witness.verify(cosigned_message(text, ts), payload[8:]):
        raise Refused("invalid cosignature")
    return ts


def line(name, kid, payload):
    return f"{DASH} {name} {b64(kid + payload)}\n"


def main():
    v = json.loads(pathlib.Path(__file__).with_name("tlog-note.json").read_text())
    passed = failed = 0

    def case(label, fn):
        nonlocal passed, failed
        try:
            fn()
            passed += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            print(f"FAIL {label}: {type(e).__name__}: {e}")

    def refused(fn):
        def run():
            try:
                fn()
            except Refused:
                return
            raise AssertionError("accepted, must be refused")
        return run

    for k in v["keys"]:
        def good(k=k):
            key = parse_vkey(k["vkey"])
            assert f"{key.name}+{key.id.hex()}+{b64(bytes([key.kind]) + key.pub)}" == k["vkey"]
            if "skey" in k:
                s = parse_skey(k["skey"])
                assert (s.name, s.id, s.pub) == (key.name, key.id, key.pub)
        case("key " + k["vkey"], good)
    for k in v["bad_keys"]:
        case("bad key " + k["vkey"], refused(lambda k=k: parse_vkey(k["vkey"])))

    for i, n in enumerate(v["notes"]):
        data = base64.b64decode(n["note_base64"]) if "note_base64" in n else n["note"].encode()
        label = f"note {i} ({n['source'].rsplit('/', 1)[-1]})"

        def run(n=n, data=data):
            text, sigs = parse_note(data)
            known = [parse_vkey(k) for k in n["known"]]
            by = verify_note(text, sigs, known)
            assert text == n["text"], "text"
            assert by == n["verified_by"], by
            for skey in n.get("sign_with", []):
                s = parse_skey(skey)
                out = text + "\n" + line(s.name, s.id, s.sign(text.encode()))
                assert out.encode() == data, "signing does not reproduce the note"
        if "error" in n:
            case(label + " refused", refused(run))
        else:
            case(label, run)
        if "lines" in n:
            def lines(n=n, data=data):
                _, sigs = parse_note(data)
                got = [[name, kid.hex(), len(p)] for name, kid, p in sigs]
                assert got == n["lines"], got
                assert str(int.from_bytes(sigs[1][2][:8], "big")) == n["cosignature_timestamp"]
            case(label + " lines", lines)

    for i, c in enumerate(v["checkpoints"]):
        label = f"checkpoint {i}"
        if "error" in c:
            case(label + " refused", refused(lambda c=c: parse_checkpoint(c["text"])))
            continue

        def run(c=c):
            origin, size, root, ext = parse_checkpoint(c["text"])
            assert (origin, str(size), root.hex(), ext) == (c["origin"], c["size"], c["root_hash_hex"], c["extensions"])
            again = f"{origin}\n{size}\n{b64(root)}\n" + "".join(l + "\n" for l in ext)
            assert again == c["text"], "format"
            if "note" in c:
                text, sigs = parse_note(c["note"].encode())
                verify_note(text, sigs, [parse_vkey(c["log_vkey"])])
                s = parse_skey(c["sign_with"])
                assert c["note"] == text + "\n" + line(s.name, s.id, s.sign(text.encode()))
        case(label, run)

    for i, c in enumerate(v["cosignatures"]):
        label = f"cosignature {i}"

        def run(c=c):
            text, sigs = parse_note(c["note"].encode())
            verify_note(text, sigs, [parse_vkey(c["log_vkey"])])
            ts = verify_cosignature(text, sigs, parse_vkey(c["witness_vkey"]))
            assert str(ts) == c["timestamp"]
            msg = cosigned_message(c["checkpoint"], ts)
            assert msg == c["message"].encode()
            s = parse_skey(c["witness_skey"])
            assert line(s.name, s.id, ts.to_bytes(8, "big") + s.sign(msg)) == c["line"]

        if "error" in c:
            def bad(c=c):
                text, sigs = parse_note(c["note"].encode())
                verify_note(text, sigs, [parse_vkey(c["log_vkey"])])
                verify_cosignature(text, sigs, parse_vkey(c["witness_vkey"]))
            case(label + " refused", refused(bad))
        else:
            case(label, run)

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
