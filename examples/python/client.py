#!/usr/bin/env python3
"""A sealgate client in Python, written from docs/ENVELOPE.md, the proto and
the docs alone (no code of the gateway's): grpcio for gRPC over mTLS,
`cryptography` for Ed25519, googleapis-common-protos for denials.

    client.py vectors                          reproduce tests/vectors/envelope-v1.json
    client.py --profile P tools                initialize, then a verified tools/list
    client.py --profile P call TOOL [--args JSON]
                                               a verified tools/call; a denial prints its
                                               ErrorInfo reason and exits 1
    client.py --profile P self-test            tamper with a real response: each must be refused

Every response is verified (docs/ENVELOPE.md section 5) before any of its
content is used. Nothing here prints a key or a signature.

Dependencies: tests/fixtures/requirements.txt (grpcio, grpcio-tools,
protobuf, cryptography, googleapis-common-protos). The gRPC stubs are
generated from proto/ at start (grpc_tools.protoc into a temporary
directory), so they always match the contract; the equivalent command is

    python3 -m grpc_tools.protoc -I proto --python_out=OUT --grpc_python_out=OUT \\
        proto/sealgate/v1/gateway.proto
"""
import argparse
import base64
import hashlib
import importlib
import json
import os
import secrets
import struct
import sys
import tempfile
import time
import tomllib
from pathlib import Path

# Quiet gRPC core's own logging (set before grpc is imported).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from google.rpc import error_details_pb2, status_pb2

PAYLOAD_TYPE = "application/vnd.sealgate.mcp+json"
REQUEST_CONTEXT = "sealgate/v1/request"
RESPONSE_CONTEXT = "sealgate/v1/response"
# The MCP revision the gateway targets (it also accepts 2025-06-18 and 2025-03-26).
PROTOCOL_VERSION = "2025-11-25"
REPO = Path(__file__).resolve().parents[2]


class ResponseRejected(Exception):
    """A response failed verification: none of its content may be used."""


class Denied(Exception):
    """The gateway refused the request: a gRPC status with an ErrorInfo."""

    def __init__(self, code, reason, domain, message):
        super().__init__(f"{reason} ({code.name}): {message}")
        self.code, self.reason, self.domain, self.message = code, reason, domain, message


# ---- docs/ENVELOPE.md section 2: the signed bytes -------------------------

def signed_bytes(fields):
    """u64be(N) || for each field: u64be(len) || bytes."""
    out = struct.pack(">Q", len(fields))
    for f in fields:
        b = f.encode("utf-8") if isinstance(f, str) else bytes(f)
        out += struct.pack(">Q", len(b)) + b
    return out


def request_signed_bytes(audience, key_id, timestamp_ms, nonce, payload_type, payload):
    return signed_bytes([REQUEST_CONTEXT, audience, key_id, struct.pack(">q", timestamp_ms),
                         nonce, payload_type, payload])


def response_signed_bytes(env, request_digest):
    """The 8 response fields; `request_digest` is the one this client computed."""
    return signed_bytes([RESPONSE_CONTEXT, env.audience, env.key_id,
                         struct.pack(">q", env.timestamp_unix_ms), env.nonce,
                         env.payload_type, env.payload, request_digest])


def key_id_for(public_raw):
    """Section 3: 'ed25519:' + hex of the first 16 bytes of SHA-256(public key)."""
    return "ed25519:" + hashlib.sha256(public_raw).digest()[:16].hex()


def now_ms():
    return time.time_ns() // 1_000_000


# ---- gRPC stubs, generated from proto/ -------------------------------------

def load_stubs(proto_dir=REPO / "proto"):
    """Runs grpc_tools.protoc on gateway.proto into a temporary directory and
    imports the result."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="sealgate-stubs-")
    include = Path(importlib.import_module("grpc_tools").__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", str(proto_dir / "sealgate/v1/gateway.proto")])
    if rc != 0:
        sys.exit(f"protoc failed on {proto_dir} (exit {rc})")
    sys.path.insert(0, out)
    pb2 = importlib.import_module("sealgate.v1.gateway_pb2")
    grpc_pb2 = importlib.import_module("sealgate.v1.gateway_pb2_grpc")
    return pb2, grpc_pb2


# ---- the client profile (docs/CONFIG.md, "The client profile") ----------

def load_profile(path):
    """The TOML profile `sealgate ca issue-client` or `sealgate enroll` writes.
    Paths in it are relative to the profile's directory."""
    path = Path(path)
    p = tomllib.loads(path.read_text())
    for f in ("ca", "cert", "key", "signing_key"):
        p[f] = path.parent / p[f]
    if not p.get("gateway_key"):
        sys.exit(f"{path}: no [[gateway_key]]: responses could not be verified")
    return p


def load_signing_key(path):
    """An Ed25519 PKCS#8 PEM key (v1 or v2 form; `cryptography` reads v1)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        sys.exit(f"{path}: not an Ed25519 private key")
    return key


class Client:
    def __init__(self, profile, stubs):
        self.pb2, grpc_pb2 = stubs
        self.audience = profile["audience"]
        self.key_id = profile["key_id"]
        self.spiffe_id = profile["spiffe_id"]
        self.skew_ms = int(profile.get("clock_skew_secs", 30)) * 1000
        self.signing_key = load_signing_key(profile["signing_key"])
        self.gateway_keys = {
            k["key_id"]: Ed25519PublicKey.from_public_bytes(
                base64.b64decode(k["public_key"], validate=True))
            for k in profile["gateway_key"]
        }
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(profile["ca"]).read_bytes(),
            private_key=Path(profile["key"]).read_bytes(),
            certificate_chain=Path(profile["cert"]).read_bytes(),
        )
        # The endpoint may be an IP address; the certificate is checked
        # against server_name.
        self.channel = grpc.secure_channel(
            profile["endpoint"], creds,
            options=[("grpc.ssl_target_name_override", profile["server_name"])])
        self.stub = grpc_pb2.McpGatewayServiceStub(self.channel)
        self.next_id = 1

    def seal(self, payload):
        """A request envelope for `payload` and its signed bytes."""
        env = self.pb2.SignedEnvelope(
            payload=payload, payload_type=PAYLOAD_TYPE, key_id=self.key_id,
            audience=self.audience, timestamp_unix_ms=now_ms(),
            # A fresh nonce from a CSPRNG for every envelope, retries included.
            nonce=secrets.token_bytes(32))
        data = request_signed_bytes(env.audience, env.key_id, env.timestamp_unix_ms,
                                    env.nonce, env.payload_type, env.payload)
        env.signature = self.signing_key.sign(data)
        return env, data

    def verify(self, env, request_bytes, expected_id):
        """docs/ENVELOPE.md section 5, in order. Returns the payload bytes."""
        if env.payload_type != PAYLOAD_TYPE:
            raise ResponseRejected("payload_type is not " + PAYLOAD_TYPE)
        if env.audience != self.spiffe_id:
            raise ResponseRejected("addressed to another client")
        key = self.gateway_keys.get(env.key_id)
        if key is None:
            raise ResponseRejected("signed with a key this client does not trust")
        digest = hashlib.sha256(request_bytes).digest()
        if env.request_digest != digest:
            raise ResponseRejected("request_digest does not match the request sent")
        try:
            key.verify(env.signature, response_signed_bytes(env, digest))
        except InvalidSignature:
            raise ResponseRejected("signature does not verify") from None
        if abs(now_ms() - env.timestamp_unix_ms) > self.skew_ms:
            raise ResponseRejected("timestamp outside the accepted skew")
        if expected_id is None:  # a notification: the payload must be empty
            if env.payload:
                raise ResponseRejected("a notification's response carries a payload")
            return b""
        try:
            reply = json.loads(env.payload)
        except ValueError:
            raise ResponseRejected("payload is not JSON") from None
        if not isinstance(reply, dict) or reply.get("id") != expected_id:
            raise ResponseRejected("JSON-RPC id does not match the request")
        return reply

    def exchange(self, message):
        """Sends one JSON-RPC message; returns (request signed bytes, response
        envelope) unverified, or raises Denied."""
        payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
        env, data = self.seal(payload)
        try:
            response = self.stub.Call(self.pb2.CallRequest(envelope=env), timeout=30)
        except grpc.RpcError as e:
            raise denial(e) from None
        if not response.HasField("envelope"):
            raise ResponseRejected("no envelope")
        return data, response.envelope

    def request(self, method, params):
        msg_id = self.next_id
        self.next_id += 1
        data, env = self.exchange({"jsonrpc": "2.0", "id": msg_id, "method": method,
                                   "params": params})
        return self.verify(env, data, msg_id)

    def notify(self, method):
        data, env = self.exchange({"jsonrpc": "2.0", "method": method})
        self.verify(env, data, None)

    def initialize(self):
        reply = self.request("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "sealgate-python-example", "version": "1"}})
        self.notify("notifications/initialized")
        return reply["result"]


def denial(err):
    """A denial's reason: the google.rpc.Status in the `grpc-status-details-bin`
    trailer (the gateway sends denials trailers-only: status, message and
    details all in the one HEADERS frame, which grpcio exposes as trailing
    metadata), whose details hold a google.rpc.ErrorInfo."""
    reason = domain = None
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for any_detail in status.details:
                if any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    any_detail.Unpack(info)
                    reason, domain = info.reason, info.domain
    return Denied(err.code(), reason, domain, err.details())


# ---- commands ---------------------------------------------------------------

def cmd_vectors(_args):
    """Reproduces tests/vectors/envelope-v1.json with this file's functions."""
    v = json.loads((REPO / "tests/vectors/envelope-v1.json").read_text())
    req, resp = v["request"], v["response"]
    failures = 0

    def check(name, ok):
        nonlocal failures
        failures += not ok
        print(f"vectors: {name}: {'ok' if ok else 'FAILED'}")

    for label, vec in (("request", req), ("response", resp)):
        sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vec["signing_key_seed_hex"]))
        pub = sk.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
        check(f"{label} public key", pub.hex() == vec["public_key_hex"])
        check(f"{label} key id", key_id_for(pub) == vec["key_id"])
    sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(req["signing_key_seed_hex"]))
    req_bytes = request_signed_bytes(req["audience"], req["key_id"], req["timestamp_unix_ms"],
                                     bytes.fromhex(req["nonce_hex"]), req["payload_type"],
                                     req["payload_utf8"].encode("utf-8"))
    check("request signed bytes", req_bytes.hex() == req["signed_bytes_hex"])
    check("request signature", sk.sign(req_bytes).hex() == req["signature_hex"])
    digest = hashlib.sha256(req_bytes).digest()
    check("request digest", digest.hex() == resp["request_digest_hex"])

    class Env:  # the response vector as an envelope
        audience, key_id = resp["audience"], resp["key_id"]
        timestamp_unix_ms = resp["timestamp_unix_ms"]
        nonce = bytes.fromhex(resp["nonce_hex"])
        payload_type, payload = resp["payload_type"], resp["payload_utf8"].encode("utf-8")

    resp_bytes = response_signed_bytes(Env, digest)
    check("response signed bytes", resp_bytes.hex() == resp["signed_bytes_hex"])
    gk = Ed25519PublicKey.from_public_bytes(bytes.fromhex(resp["public_key_hex"]))
    try:
        gk.verify(bytes.fromhex(resp["signature_hex"]), resp_bytes)
        check("response signature verifies", True)
    except InvalidSignature:
        check("response signature verifies", False)
    print(f"vectors: {'all reproduced' if failures == 0 else f'{failures} FAILED'}")
    return 0 if failures == 0 else 1


def connect(args):
    if not args.profile:
        sys.exit("--profile is required")
    return Client(load_profile(args.profile), load_stubs())


def cmd_tools(args):
    client = connect(args)
    init = client.initialize()
    print(f"verified initialize: protocolVersion {init['protocolVersion']}")
    reply = client.request("tools/list", {})
    names = [t["name"] for t in reply["result"]["tools"]]
    print("verified tools/list: " + ", ".join(names))
    return 0


def cmd_call(args):
    client = connect(args)
    arguments = json.loads(args.args)
    try:
        reply = client.request("tools/call", {"name": args.tool, "arguments": arguments})
    except Denied as d:
        # Match on the reason (stable), never on the message (for people).
        print(f"denied: {d.reason} (gRPC {d.code.name}, domain {d.domain}): {d.message}")
        return 1
    if "error" in reply:
        print(f"verified JSON-RPC error: {json.dumps(reply['error'])}")
        return 3
    print(f"verified tools/call {args.tool}: {json.dumps(reply['result'], sort_keys=True)}")
    return 3 if reply["result"].get("isError") else 0


def cmd_self_test(args):
    """Takes one real, verified response and shows that each tampering with
    it, or verifying it against another request, is refused."""
    client = connect(args)
    msg_id = 7
    data, env = client.exchange({"jsonrpc": "2.0", "id": msg_id, "method": "tools/list",
                                 "params": {}})
    client.verify(env, data, msg_id)
    print("self-test: the recorded response verifies")
    pb2 = client.pb2

    def tampered(field, mutate):
        e = pb2.SignedEnvelope()
        e.CopyFrom(env)
        value = bytearray(getattr(e, field))
        mutate(value)
        setattr(e, field, bytes(value))
        return e

    def flip(i):
        def f(b):
            b[i] ^= 0x01
        return f

    _, other_request = client.seal(b'{"jsonrpc":"2.0","id":7,"method":"tools/list"}')
    cases = [
        ("a flipped signature byte", tampered("signature", flip(5)), data),
        ("a flipped payload byte", tampered("payload", flip(len(env.payload) // 2)), data),
        ("a flipped request_digest byte", tampered("request_digest", flip(0)), data),
        ("a flipped nonce byte", tampered("nonce", flip(3)), data),
        ("the response bound to another request", env, other_request),
    ]
    refused = 0
    for name, e, req in cases:
        try:
            client.verify(e, req, msg_id)
            print(f"self-test: ACCEPTED {name}")
        except ResponseRejected as r:
            refused += 1
            print(f"self-test: refused {name}: {r}")
    print(f"self-test: {refused} of {len(cases)} tampered responses refused")
    return 0 if refused == len(cases) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", help="client profile (TOML)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("vectors").set_defaults(run=cmd_vectors)
    sub.add_parser("tools").set_defaults(run=cmd_tools)
    c = sub.add_parser("call")
    c.add_argument("tool")
    c.add_argument("--args", default="{}")
    c.set_defaults(run=cmd_call)
    sub.add_parser("self-test").set_defaults(run=cmd_self_test)
    args = ap.parse_args()
    try:
        return args.run(args)
    except Denied as d:
        print(f"denied: {d.reason} (gRPC {d.code.name}): {d.message}")
        return 1
    except ResponseRejected as r:
        print(f"response rejected: {r}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
