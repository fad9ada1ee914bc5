"""Extract the x509-limbo cases that matter for mTLS client certificates.

Source: C2SP/x509-limbo (Apache-2.0, LICENSE beside this file), commit in
COMMIT. The compiled limbo.json is a release artifact, so the cases are made
by limbo's own generators (its `limbo/testcases` package), with one change:
a leaf made without an explicit EKU gets `serverAuth, clientAuth` instead of
limbo's default `serverAuth`, so that each case's defect, not the purpose,
is what a client-certificate verifier meets. limbo's expectations still
hold (serverAuth is still there); cases that set their own EKU keep it.

Kept: every case except those whose verdict depends on a check sealgate does
not make for a client certificate (matching an expected peer name, a
maximum chain depth: see SKIPPED_BECAUSE), and the bettertls/online sets.

Run from a checkout of x509-limbo, with its Python dependencies
(cryptography, pydantic):
    python extract.py > cases.json
Keys and serials are fresh on every run, so the output differs byte-wise
from the committed file while testing the same things.
"""

import json
import sys

sys.path.insert(0, ".")

from cryptography import x509  # noqa: E402

from limbo import testcases  # noqa: E402
from limbo.models import Limbo  # noqa: E402
from limbo.testcases import _core  # noqa: E402

_leaf_cert = _core.Builder.leaf_cert


def _client_usable_leaf(self, *args, **kwargs):
    if "eku" not in kwargs:
        kwargs["eku"] = _core.ext(
            x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH, x509.OID_CLIENT_AUTH]),
            critical=False,
        )
    return _leaf_cert(self, *args, **kwargs)


_core.Builder.leaf_cert = _client_usable_leaf

SKIPPED_BECAUSE = {
    # Peer-name matching (DNS/IP/CN against an expected server name): a
    # client certificate's identity is its SPIFFE URI, read afterwards.
    "webpki::san::": "peer name",
    "webpki::cn::": "peer name",
    "rfc5280::san::": "peer name",
    "rfc5280::ca-as-leaf-wrong-san": "peer name",
    # A per-validation chain depth limit: sealgate sets none (webpki's own
    # path-building budget applies).
    "pathlen::max-chain-depth": "max_chain_depth",
    "pathological::intermediate-cycle-distinct-cas-max-depth": "max_chain_depth",
    # Name-constraint work bombs need an intermediate CA with hundreds of
    # constraints signed by the trusted root; sealgate's CA issues no
    # intermediates (and they are 450 KB of the file).
    "pathological::nc-dos-": "needs an intermediate from our CA",
}

kept, failed = [], []
for name, make in testcases.registry.items():
    if any(name.startswith(p) for p in SKIPPED_BECAUSE):
        continue
    try:
        kept.append(make())
    except Exception:  # a generator this cryptography version cannot run
        failed.append(name)
print(Limbo(version=1, testcases=kept).model_dump_json(indent=1))
print("generators that failed:", failed, file=sys.stderr)
