#!/usr/bin/env python3
"""A second, independent implementation of the C2SP formats sealgate's audit
log speaks, written from the specs alone (c2sp.org/signed-note,
c2sp.org/tlog-checkpoint, c2sp.org/tlog-cosignature), not from src/tlog:
vkeys, Ed25519 note signatures, checkpoints and Ed25519 cosignature/v1.
Private keys are skeys in golang.org/x/mod/sumdb/note's form
(PRIVATE+KEY+<name>+<hex key ID>+<base64(type || seed)>). Needs
`cryptography` for Ed25519.

  c2sp_interop.py                      self-check (spec examples); CI runs it
  c2sp_interop.py verify --log VKEY [--cosigner VKEY]... < NOTE
      verifies a checkpoint note: the log's signature (key name = origin)
      and every given cosigner's cosignature/v1 (each must be present);
      prints {"origin", "size", "root", "cosigned": [{"name", "time"}]}
  c2sp_interop.py sign --skey SKEY --size N --root B64 [--extension LINE]...
      [--cosigner-skey SKEY --time T]...
      prints a checkpoint note (origin = the skey's name) signed by SKEY
      and cosigned by each cosigner at its time
  c2sp_interop.py vkey SKEY            prints the vkey of an skey

A note or key that does not verify exits 1 with "refused: <reason>" on
stderr; bad usage exits 2.
"""
import argparse
import base64
import binascii
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01  # signed-note: Ed25519 note signature
COSIGNATURE_V1 = 0x04  # tlog-cosignature: timestamped Ed25519 cosignature
DASH = "\u2014"
MAX_TIMESTAMP = 2**63 - 1
# Unicode White_Space: key names and origins must not contain them.
SPACES = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)}


class Refused(Exception):
    pass


def b64encode(raw):
    return base64.b64encode(raw).decode("ascii")


def b64decode(text, what):
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise Refused(f"{what} is not base64") from e
    if b64encode(raw) != text:
        raise Refused(f"{what} is not canonical base64")
    return raw


def check_name(name):
    if not name or "+" in name or any(c in SPACES for c in name):
        raise Refused(f"bad key name {name!r}")


def key_id(name, sig_type, public):
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


class Key:
    """A verifier key: name, 4-byte key ID, signature type, Ed25519 key."""

    def __init__(self, name, sig_type, public):
        check_name(name)
        if sig_type not in (ED25519, COSIGNATURE_V1):
            raise Refused(f"unknown signature type 0x{sig_type:02x}")
        if len(public) != 32:
            raise Refused("an Ed25519 public key is 32 bytes")
        self.name, self.type, self.public = name, sig_type, public
        self.id = key_id(name, sig_type, public)
        self.ed = Ed25519PublicKey.from_public_bytes(public)

    @classmethod
    def parse(cls, vkey):
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise Refused("a vkey is <name>+<hex id>+<base64 key>")
        name, hex_id, material = parts
        if len(hex_id) != 8 or hex_id != hex_id.lower():
            raise Refused("a vkey's key ID is 8 lowercase hex digits")
        raw = b64decode(material, "vkey key")
        if not raw:
            raise Refused("empty vkey key")
        key = cls(name, raw[0], raw[1:])
        if bytes.fromhex(hex_id) != key.id:
            raise Refused("vkey key ID does not match its name and key")
        return key

    def text(self):
        return f"{self.name}+{self.id.hex()}+{b64encode(bytes([self.type]) + self.public)}"

    def verify(self, sig, text):
        """Raises Refused unless `sig` (after the key ID) signs note `text`;
        returns the cosignature's time (None for a note signature)."""
        stamp = None
        if self.type == COSIGNATURE_V1:
            if len(sig) != 8 + 64:
                raise Refused(f"cosignature by {self.name} is not 72 bytes")
            stamp = int.from_bytes(sig[:8], "big")
            if stamp > MAX_TIMESTAMP:
                raise Refused(f"cosignature time of {self.name} exceeds 2^63-1")
            message = f"cosignature/v1\ntime {stamp}\n".encode() + text
            sig = sig[8:]
        else:
            message = text
            if len(sig) != 64:
                raise Refused(f"signature by {self.name} is not 64 bytes")
        try:
            self.ed.verify(sig, message)
        except InvalidSignature as e:
            raise Refused(f"signature by {self.name} does not verify") from e
        return stamp


class Signer:
    def __init__(self, skey):
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise Refused("an skey is PRIVATE+KEY+<name>+<hex id>+<base64 key>")
        name, hex_id, material = parts[2:]
        raw = b64decode(material, "skey key")
        if len(raw) != 33:
            raise Refused("an Ed25519 skey holds a type byte and a 32-byte seed")
        self.ed = Ed25519PrivateKey.from_private_bytes(raw[1:])
        public = self.ed.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key = Key(name, raw[0], public)
        if hex_id != self.key.id.hex():
            raise Refused("skey key ID does not match its name and key")

    def line(self, text, stamp=None):
        """The signature line (with its newline) over note text `text`."""
        if self.key.type == COSIGNATURE_V1:
            head = stamp.to_bytes(8, "big")
            sig = head + self.ed.sign(f"cosignature/v1\ntime {stamp}\n".encode() + text)
        else:
            sig = self.ed.sign(text)
        return f"{DASH} {self.key.name} {b64encode(self.key.id + sig)}\n"


def make_skey(name, sig_type, seed):
    """The skey text of an Ed25519 seed."""
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = key_id(name, sig_type, public).hex()
    return f"PRIVATE+KEY+{name}+{kid}+{b64encode(bytes([sig_type]) + seed)}"


def split_note(note):
    """(text bytes, [(name, key ID, signature bytes)]) of a signed note."""
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refused("a note is UTF-8") from e
    if any(ord(c) < 0x20 and c != "\n" for c in decoded):
        raise Refused("a note holds no control characters but newline")
    cut = decoded.rfind("\n\n")
    if cut < 0 or not decoded.endswith("\n"):
        raise Refused("a note is text, a blank line and signature lines")
    text, sigs = decoded[:cut + 1], decoded[cut + 2:]
    found = []
    for line in sigs[:-1].split("\n"):
        fields = line.split(" ")
        if len(fields) != 3 or fields[0] != DASH:
            raise Refused(f"bad signature line {line!r}")
        check_name(fields[1])
        raw = b64decode(fields[2], "signature")
        if len(raw) < 5:
            raise Refused("a signature is a key ID and signature bytes")
        found.append((fields[1], raw[:4], raw[4:]))
    return text.encode(), found


def parse_checkpoint(text):
    lines = text.decode().split("\n")[:-1]
    if len(lines) < 3 or any(not line for line in lines):
        raise Refused("a checkpoint is at least three non-empty lines")
    origin, size, root = lines[:3]
    if not size.isascii() or not size.isdigit() or (len(size) > 1 and size[0] == "0"):
        raise Refused("a tree size is decimal without leading zeroes")
    if int(size) > 2**64 - 1:
        raise Refused("a tree size fits 64 bits")
    if len(b64decode(root, "root hash")) != 32:
        raise Refused("a root hash is 32 bytes")
    return origin, int(size), root


def verify_checkpoint(note, log, cosigners):
    """Verifies a checkpoint note: signed by `log` (name = origin), and
    cosigned by every one of `cosigners`. Signatures by unknown keys are
    ignored; a known key whose signature fails refuses the note."""
    text, sigs = split_note(note)
    origin, size, root = parse_checkpoint(text)
    if log.name != origin:
        raise Refused(f"the log key {log.name} is not named after the origin {origin}")
    known = {(k.name, k.id): k for k in [log, *cosigners]}
    times = {}
    for name, kid, sig in sigs:
        key = known.get((name, kid))
        if key is not None:
            times[(name, kid)] = key.verify(sig, text)
    if (log.name, log.id) not in times:
        raise Refused("no signature by the log key")
    cosigned = []
    for c in cosigners:
        if (c.name, c.id) not in times:
            raise Refused(f"no cosignature by {c.name}")
        cosigned.append({"name": c.name, "time": times[(c.name, c.id)]})
    return {"origin": origin, "size": size, "root": root, "cosigned": cosigned}


def sign_checkpoint(log, size, root, extensions, cosigners):
    """A checkpoint note: origin = the log key's name; `cosigners` is a list
    of (Signer, time)."""
    if log.key.type != ED25519:
        raise Refused("a log's skey has type 0x01")
    lines = [log.key.name, str(size), root, *extensions]
    text = ("\n".join(lines) + "\n").encode()
    parse_checkpoint(text)
    note = text.decode() + "\n" + log.line(text)
    for signer, stamp in cosigners:
        if signer.key.type != COSIGNATURE_V1:
            raise Refused("a cosigner's skey has type 0x04")
        note += signer.line(text, stamp)
    return note


def self_check():
    """The spec's own examples, and what we sign verifies and breaks."""
    passed = failed = 0

    def check(what, ok):
        nonlocal passed, failed
        print(("ok   " if ok else "FAIL ") + what)
        passed, failed = passed + ok, failed + (not ok)

    def refused(fn):
        try:
            fn()
        except Refused as e:
            return str(e)
        return None

    spec_vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    spec_note = ("This is an example message.\n\n" + DASH + " example.com/foo Uw2QOkn8srV1yJGh2"
                 "VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")
    key = Key.parse(spec_vkey)
    check("signed-note example vkey round-trips", key.text() == spec_vkey)
    text, sigs = split_note(spec_note.encode())
    check("signed-note example verifies",
          len(sigs) == 1 and sigs[0][1] == key.id and key.verify(sigs[0][2], text) is None)
    check("signed-note example with its text changed is refused",
          refused(lambda: key.verify(sigs[0][2], text.replace(b"an", b"my"))) is not None)
    check("vkey with a wrong key ID is refused",
          refused(lambda: Key.parse(spec_vkey.replace("530d903a", "530d903b"))) is not None)

    log = Signer(make_skey("example.com/log", ED25519, bytes(range(32))))
    witness = Signer(make_skey("w.example/1", COSIGNATURE_V1, bytes(range(32, 64))))
    root = b64encode(hashlib.sha256(b"").digest())
    note = sign_checkpoint(log, 7, root, [], [(witness, 1679315147)]).encode()
    got = verify_checkpoint(note, Key.parse(log.key.text()), [Key.parse(witness.key.text())])
    check("own checkpoint and cosignature verify",
          got == {"origin": "example.com/log", "size": 7, "root": root,
                  "cosigned": [{"name": "w.example/1", "time": 1679315147}]})
    bad = note.replace(b"\n7\n", b"\n8\n")
    check("own checkpoint with its size changed is refused",
          refused(lambda: verify_checkpoint(bad, log.key, [])) == "signature by example.com/log does not verify")
    check("a missing cosigner is refused",
          refused(lambda: verify_checkpoint(note, log.key, [Key(
              "w.example/2", COSIGNATURE_V1, witness.key.public)])) == "no cosignature by w.example/2")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    if len(sys.argv) == 1:
        return self_check()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--log", required=True)
    v.add_argument("--cosigner", action="append", default=[])
    s = sub.add_parser("sign")
    s.add_argument("--skey", required=True)
    s.add_argument("--size", required=True, type=int)
    s.add_argument("--root", required=True)
    s.add_argument("--extension", action="append", default=[])
    s.add_argument("--cosigner-skey", action="append", default=[])
    s.add_argument("--time", action="append", default=[], type=int)
    k = sub.add_parser("vkey")
    k.add_argument("skey")
    a = p.parse_args()
    try:
        if a.cmd == "verify":
            got = verify_checkpoint(sys.stdin.buffer.read(), Key.parse(a.log),
                                    [Key.parse(c) for c in a.cosigner])
            print(json.dumps(got))
        elif a.cmd == "sign":
            if len(a.time) != len(a.cosigner_skey):
                p.error("one --time per --cosigner-skey")
            cos = [(Signer(c), t) for c, t in zip(a.cosigner_skey, a.time)]
            sys.stdout.write(sign_checkpoint(Signer(a.skey), a.size, a.root, a.extension, cos))
        else:
            print(Signer(a.skey).key.text())
    except Refused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
