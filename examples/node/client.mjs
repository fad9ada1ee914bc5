#!/usr/bin/env node
// A sealgate client in Node.js, written from docs/ENVELOPE.md, the proto and
// the docs alone (no code of the gateway's): @grpc/grpc-js over mTLS,
// @grpc/proto-loader reading proto/ at start (no generated code), Node's
// crypto for Ed25519, protobufjs to read a denial's google.rpc.Status.
//
//   client.mjs vectors                         reproduce tests/vectors/envelope-v1.json
//   client.mjs --profile P tools               initialize, then a verified tools/list
//   client.mjs --profile P call TOOL [--args JSON]
//                                              a verified tools/call; a denial prints its
//                                              ErrorInfo reason and exits 1
//   client.mjs --profile P self-test           tamper with a real response: each must be refused
//
// Every response is verified (docs/ENVELOPE.md section 5) before any of its
// content is used. Nothing here prints a key or a signature.
// Dependencies: package.json (npm ci at the repository root).

import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";
import { parse as parseToml } from "smol-toml";

const PAYLOAD_TYPE = "application/vnd.sealgate.mcp+json";
const REQUEST_CONTEXT = "sealgate/v1/request";
const RESPONSE_CONTEXT = "sealgate/v1/response";
// The MCP revision the gateway targets (it also accepts 2025-06-18 and 2025-03-26).
const PROTOCOL_VERSION = "2025-11-25";
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

class ResponseRejected extends Error {}

class Denied extends Error {
  constructor(code, reason, domain, message) {
    super(`${reason} (${code}): ${message}`);
    Object.assign(this, { code, reason, domain, details: message });
  }
}

// ---- docs/ENVELOPE.md section 2: the signed bytes -------------------------

function u64be(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function i64be(n) {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return b;
}

// u64be(N) || for each field: u64be(len) || bytes
function signedBytes(fields) {
  const parts = [u64be(fields.length)];
  for (const f of fields) {
    const b = typeof f === "string" ? Buffer.from(f, "utf8") : Buffer.from(f);
    parts.push(u64be(b.length), b);
  }
  return Buffer.concat(parts);
}

function requestSignedBytes(env) {
  return signedBytes([REQUEST_CONTEXT, env.audience, env.key_id, i64be(env.timestamp_unix_ms),
    env.nonce, env.payload_type, env.payload]);
}

// The 8 response fields; `requestDigest` is the one this client computed.
function responseSignedBytes(env, requestDigest) {
  return signedBytes([RESPONSE_CONTEXT, env.audience, env.key_id, i64be(env.timestamp_unix_ms),
    env.nonce, env.payload_type, env.payload, requestDigest]);
}

const sha256 = (b) => crypto.createHash("sha256").update(b).digest();

// Section 3: "ed25519:" + hex of the first 16 bytes of SHA-256(public key).
const keyIdFor = (raw) => "ed25519:" + sha256(raw).subarray(0, 16).toString("hex");

// Raw 32-byte Ed25519 public key <-> KeyObject, through JWK.
const publicKeyFromRaw = (raw) =>
  crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
const rawPublicKey = (key) => Buffer.from(key.export({ format: "jwk" }).x, "base64url");

// A seed as PKCS#8 v1 DER: the 16-byte RFC 8410 prefix, then the 32 bytes.
const PKCS8_V1_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const privateKeyFromSeed = (seed) =>
  crypto.createPrivateKey({ key: Buffer.concat([PKCS8_V1_ED25519, seed]), format: "der", type: "pkcs8" });

// ---- denials: google.rpc.Status with a google.rpc.ErrorInfo ---------------

// The two messages of googleapis' google/rpc/status.proto and
// error_details.proto a client needs, with their field numbers.
const rpcTypes = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }   // google.protobuf.Any
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
`, { keepCase: true }).root;
const StatusType = rpcTypes.lookupType("google.rpc.Status");
const ErrorInfoType = rpcTypes.lookupType("google.rpc.ErrorInfo");
const ERROR_INFO_URL = "type.googleapis.com/google.rpc.ErrorInfo";

// The gateway sends a denial trailers-only: status, message and details in
// the one HEADERS frame. grpc-js gives them as the error's metadata; the
// details are the binary `grpc-status-details-bin` entry.
function denial(err) {
  let reason = null;
  let domain = null;
  for (const bin of err.metadata?.get("grpc-status-details-bin") ?? []) {
    const status = StatusType.decode(bin);
    for (const any of status.details) {
      if (any.type_url === ERROR_INFO_URL) {
        const info = ErrorInfoType.decode(any.value);
        reason = info.reason;
        domain = info.domain;
      }
    }
  }
  return new Denied(grpc.status[err.code] ?? String(err.code), reason, domain, err.details);
}

// ---- the client profile (docs/CONFIG.md, "The client profile") ----------

// The TOML profile `sealgate ca issue-client` or `sealgate enroll` writes.
// Paths in it are relative to the profile's directory.
function loadProfile(file) {
  const p = parseToml(fs.readFileSync(file, "utf8"));
  for (const f of ["ca", "cert", "key", "signing_key"]) p[f] = path.resolve(path.dirname(file), p[f]);
  if (!p.gateway_key?.length) throw new Error(`${file}: no [[gateway_key]]: responses could not be verified`);
  return p;
}

// An Ed25519 PKCS#8 PEM key (Node 20 / OpenSSL 3.0 read the v1 form).
function loadSigningKey(file) {
  const key = crypto.createPrivateKey(fs.readFileSync(file));
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`${file}: not an Ed25519 private key`);
  return key;
}

class Client {
  constructor(profile) {
    const def = protoLoader.loadSync("sealgate/v1/gateway.proto", {
      includeDirs: [path.join(REPO, "proto")],
      keepCase: true, longs: String, bytes: Buffer, defaults: true,
    });
    const Service = grpc.loadPackageDefinition(def).sealgate.v1.McpGatewayService;
    const creds = grpc.credentials.createSsl(
      fs.readFileSync(profile.ca), fs.readFileSync(profile.key), fs.readFileSync(profile.cert));
    // The endpoint may be an IP address; the certificate is checked against server_name.
    this.rpc = new Service(profile.endpoint, creds, {
      "grpc.ssl_target_name_override": profile.server_name,
      "grpc.default_authority": profile.server_name,
    });
    this.audience = profile.audience;
    this.keyId = profile.key_id;
    this.spiffeId = profile.spiffe_id;
    this.skewMs = Number(profile.clock_skew_secs ?? 30) * 1000;
    this.signingKey = loadSigningKey(profile.signing_key);
    this.gatewayKeys = new Map(profile.gateway_key.map((k) =>
      [k.key_id, publicKeyFromRaw(Buffer.from(k.public_key, "base64"))]));
    this.nextId = 1;
  }

  close() { this.rpc.close(); }

  // A request envelope for `payload` and its signed bytes.
  seal(payload) {
    const env = {
      payload, payload_type: PAYLOAD_TYPE, key_id: this.keyId, audience: this.audience,
      timestamp_unix_ms: Date.now(),
      // A fresh nonce from a CSPRNG for every envelope, retries included.
      nonce: crypto.randomBytes(32),
    };
    const data = requestSignedBytes(env);
    env.signature = crypto.sign(null, data, this.signingKey);
    return { env, data };
  }

  // docs/ENVELOPE.md section 5, in order. Returns the parsed JSON-RPC reply
  // (or null for a notification).
  verify(env, requestBytes, expectedId) {
    if (env.payload_type !== PAYLOAD_TYPE) throw new ResponseRejected(`payload_type is not ${PAYLOAD_TYPE}`);
    if (env.audience !== this.spiffeId) throw new ResponseRejected("addressed to another client");
    const key = this.gatewayKeys.get(env.key_id);
    if (!key) throw new ResponseRejected("signed with a key this client does not trust");
    const digest = sha256(requestBytes);
    if (!digest.equals(env.request_digest)) throw new ResponseRejected("request_digest does not match the request sent");
    if (!crypto.verify(null, responseSignedBytes(env, digest), key, env.signature)) {
      throw new ResponseRejected("signature does not verify");
    }
    if (Math.abs(Date.now() - Number(env.timestamp_unix_ms)) > this.skewMs) {
      throw new ResponseRejected("timestamp outside the accepted skew");
    }
    if (expectedId === null) {
      if (env.payload.length !== 0) throw new ResponseRejected("a notification's response carries a payload");
      return null;
    }
    let reply;
    try { reply = JSON.parse(env.payload.toString("utf8")); } catch { throw new ResponseRejected("payload is not JSON"); }
    if (reply === null || typeof reply !== "object" || reply.id !== expectedId) {
      throw new ResponseRejected("JSON-RPC id does not match the request");
    }
    return reply;
  }

  // Sends one JSON-RPC message; resolves to { data, env } unverified, or
  // rejects with Denied.
  exchange(message) {
    const { env, data } = this.seal(Buffer.from(JSON.stringify(message), "utf8"));
    return new Promise((resolve, reject) => {
      this.rpc.Call({ envelope: env }, { deadline: Date.now() + 30_000 }, (err, response) => {
        if (err) return reject(denial(err));
        if (!response.envelope) return reject(new ResponseRejected("no envelope"));
        resolve({ data, env: response.envelope });
      });
    });
  }

  async request(method, params) {
    const id = this.nextId++;
    const { data, env } = await this.exchange({ jsonrpc: "2.0", id, method, params });
    return this.verify(env, data, id);
  }

  async notify(method) {
    const { data, env } = await this.exchange({ jsonrpc: "2.0", method });
    this.verify(env, data, null);
  }

  async initialize() {
    const reply = await this.request("initialize", {
      protocolVersion: PROTOCOL_VERSION, capabilities: {},
      clientInfo: { name: "sealgate-node-example", version: "1" },
    });
    await this.notify("notifications/initialized");
    return reply.result;
  }
}

// ---- commands ---------------------------------------------------------------

function cmdVectors() {
  const v = JSON.parse(fs.readFileSync(path.join(REPO, "tests/vectors/envelope-v1.json"), "utf8"));
  const { request: req, response: resp } = v;
  let failures = 0;
  const check = (name, ok) => {
    if (!ok) failures++;
    console.log(`vectors: ${name}: ${ok ? "ok" : "FAILED"}`);
  };
  for (const [label, vec] of [["request", req], ["response", resp]]) {
    const sk = privateKeyFromSeed(Buffer.from(vec.signing_key_seed_hex, "hex"));
    const pub = rawPublicKey(crypto.createPublicKey(sk));
    check(`${label} public key`, pub.toString("hex") === vec.public_key_hex);
    check(`${label} key id`, keyIdFor(pub) === vec.key_id);
  }
  const fields = (vec) => ({
    audience: vec.audience, key_id: vec.key_id, timestamp_unix_ms: vec.timestamp_unix_ms,
    nonce: Buffer.from(vec.nonce_hex, "hex"), payload_type: vec.payload_type,
    payload: Buffer.from(vec.payload_utf8, "utf8"),
  });
  const reqBytes = requestSignedBytes(fields(req));
  check("request signed bytes", reqBytes.toString("hex") === req.signed_bytes_hex);
  const sk = privateKeyFromSeed(Buffer.from(req.signing_key_seed_hex, "hex"));
  check("request signature", crypto.sign(null, reqBytes, sk).toString("hex") === req.signature_hex);
  const digest = sha256(reqBytes);
  check("request digest", digest.toString("hex") === resp.request_digest_hex);
  const respBytes = responseSignedBytes(fields(resp), digest);
  check("response signed bytes", respBytes.toString("hex") === resp.signed_bytes_hex);
  const gk = publicKeyFromRaw(Buffer.from(resp.public_key_hex, "hex"));
  check("response signature verifies", crypto.verify(null, respBytes, gk, Buffer.from(resp.signature_hex, "hex")));
  console.log(`vectors: ${failures === 0 ? "all reproduced" : `${failures} FAILED`}`);
  return failures === 0 ? 0 : 1;
}

async function cmdTools(client) {
  const init = await client.initialize();
  console.log(`verified initialize: protocolVersion ${init.protocolVersion}`);
  const reply = await client.request("tools/list", {});
  console.log("verified tools/list: " + reply.result.tools.map((t) => t.name).join(", "));
  return 0;
}

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

async function cmdCall(client, tool, args) {
  let reply;
  try {
    reply = await client.request("tools/call", { name: tool, arguments: JSON.parse(args) });
  } catch (e) {
    if (!(e instanceof Denied)) throw e;
    // Match on the reason (stable), never on the message (for people).
    console.log(`denied: ${e.reason} (gRPC ${e.code}, domain ${e.domain}): ${e.details}`);
    return 1;
  }
  if (reply.error) {
    console.log(`verified JSON-RPC error: ${JSON.stringify(reply.error)}`);
    return 3;
  }
  console.log(`verified tools/call ${tool}: ${JSON.stringify(sortKeys(reply.result))}`);
  return reply.result.isError ? 3 : 0;
}

// Takes one real, verified response and shows that each tampering with it,
// or verifying it against another request, is refused.
async function cmdSelfTest(client) {
  const id = 7;
  const { data, env } = await client.exchange({ jsonrpc: "2.0", id, method: "tools/list", params: {} });
  client.verify(env, data, id);
  console.log("self-test: the recorded response verifies");
  const tampered = (field, i) => {
    const copy = { ...env, [field]: Buffer.from(env[field]) };
    copy[field][i] ^= 0x01;
    return copy;
  };
  const other = client.seal(Buffer.from('{"jsonrpc":"2.0","id":7,"method":"tools/list"}')).data;
  const cases = [
    ["a flipped signature byte", tampered("signature", 5), data],
    ["a flipped payload byte", tampered("payload", env.payload.length >> 1), data],
    ["a flipped request_digest byte", tampered("request_digest", 0), data],
    ["a flipped nonce byte", tampered("nonce", 3), data],
    ["the response bound to another request", env, other],
  ];
  let refused = 0;
  for (const [name, e, req] of cases) {
    try {
      client.verify(e, req, id);
      console.log(`self-test: ACCEPTED ${name}`);
    } catch (r) {
      if (!(r instanceof ResponseRejected)) throw r;
      refused++;
      console.log(`self-test: refused ${name}: ${r.message}`);
    }
  }
  console.log(`self-test: ${refused} of ${cases.length} tampered responses refused`);
  return refused === cases.length ? 0 : 1;
}

async function main(argv) {
  let profile = null;
  let args = "{}";
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--profile") profile = argv[++i];
    else if (argv[i] === "--args") args = argv[++i];
    else rest.push(argv[i]);
  }
  const [cmd, tool] = rest;
  if (cmd === "vectors") return cmdVectors();
  if (!["tools", "call", "self-test"].includes(cmd) || !profile || (cmd === "call" && !tool)) {
    console.error("usage: client.mjs vectors | --profile P (tools | call TOOL [--args JSON] | self-test)");
    return 2;
  }
  const client = new Client(loadProfile(profile));
  try {
    if (cmd === "tools") return await cmdTools(client);
    if (cmd === "call") return await cmdCall(client, tool, args);
    return await cmdSelfTest(client);
  } catch (e) {
    if (e instanceof Denied) {
      console.log(`denied: ${e.reason} (gRPC ${e.code}): ${e.details}`);
      return 1;
    }
    if (e instanceof ResponseRejected) {
      console.log(`response rejected: ${e.message}`);
      return 1;
    }
    throw e;
  } finally {
    client.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
