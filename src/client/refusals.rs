//! Every way this client explains a handshake refused over a certificate,
//! by the gateway (an alert) or by this client (the gateway's certificate):
//! what happened and what to do, in words for people.

/// One known way a handshake is refused over a certificate: who refused,
/// the alert (or rustls reason) name, what happened and what to do.
pub(super) struct Refusal {
    pub(super) by_gateway: bool,
    pub(super) alert: &'static str,
    pub(super) what: &'static str,
    pub(super) advice: &'static str,
}

pub(super) const NEW_CERT: &str = "ask the CA operator for a new client certificate";

/// Every refusal this client explains; the first entry of each side whose
/// `alert` is empty is the fallback for that side.
const REFUSALS: &[Refusal] = &[
    Refusal {
        by_gateway: true,
        alert: "certificate_revoked",
        what: "it has been revoked",
        advice: NEW_CERT,
    },
    Refusal {
        by_gateway: true,
        alert: "certificate_expired",
        what: "it has expired or is not valid yet",
        advice: "ask the CA operator for a new client certificate, and check this machine's clock",
    },
    Refusal {
        by_gateway: true,
        alert: "unknown_ca",
        what: "it was not issued by the gateway's client CA, or the gateway cannot check \
               its revocation status (its CRL may be past its next update)",
        advice: "check that the profile's cert was issued by the gateway's CA; if it was, \
                 ask the gateway operator to re-issue the CRL (`sealgate ca crl`) and reload",
    },
    Refusal {
        by_gateway: true,
        alert: "certificate_required",
        what: "no client certificate was sent",
        advice: "set cert and key in the profile to this client's certificate and key",
    },
    Refusal {
        by_gateway: true,
        alert: "protocol_version",
        what: "the TLS version was refused (the gateway speaks TLS 1.3 only)",
        advice: "connect with a TLS 1.3 client",
    },
    Refusal {
        by_gateway: true,
        alert: "unsupported_certificate",
        what: "its extended key usage does not allow client authentication",
        advice: "ask the CA operator for a client certificate (`sealgate ca issue-client`)",
    },
    Refusal {
        by_gateway: true,
        alert: "bad_certificate",
        what: "it is malformed",
        advice: NEW_CERT,
    },
    Refusal {
        by_gateway: true,
        alert: "access_denied",
        what: "this source address is blocked (too many failed handshakes or refused \
               identities came from it)",
        advice: "the block ends after its cool-down; if this client is not the cause (a shared \
                 or NAT address), ask the gateway operator to lift it \
                 (`sealgate admin unblock ADDRESS`)",
    },
    Refusal {
        by_gateway: true,
        alert: "internal_error",
        what: "the gateway is busy (too many handshakes in progress, from this source address \
               or in all, or no file descriptor left)",
        advice: "retry in a few seconds; if it persists, ask the gateway operator",
    },
    Refusal {
        by_gateway: true,
        alert: "",
        what: "the handshake was refused",
        advice: "the gateway's log names the reason; ask its operator",
    },
    Refusal {
        by_gateway: false,
        alert: "unknown_issuer",
        what: "it was not issued by the CA in this client's profile",
        advice: "set the profile's ca to the CA that issued the gateway's server certificate",
    },
    Refusal {
        by_gateway: false,
        alert: "not_valid_for_name",
        what: "it is not valid for the profile's server_name",
        advice: "set the profile's server_name to a name in the gateway's certificate",
    },
    Refusal {
        by_gateway: false,
        alert: "expired",
        what: "it has expired",
        advice: "ask the gateway operator to renew its server certificate, \
                 and check this machine's clock",
    },
    Refusal {
        by_gateway: false,
        alert: "not_valid_yet",
        what: "it is not valid yet",
        advice: "check this machine's clock",
    },
    Refusal {
        by_gateway: false,
        alert: "",
        what: "it could not be verified",
        advice: "check the profile's ca and server_name",
    },
];

/// The entry for a refusal: by the gateway (a received alert) or by this
/// client (a local verification failure).
pub(super) fn refusal_entry(by_gateway: bool, alert: &str) -> &'static Refusal {
    let side = || REFUSALS.iter().filter(move |r| r.by_gateway == by_gateway);
    side()
        .find(|r| r.alert == alert)
        .or_else(|| side().find(|r| r.alert.is_empty()))
        .unwrap_or(&REFUSALS[0])
}

/// The alerts the gateway sends when it refuses a connection at accept,
/// before looking at any certificate.
const CONNECTION_ALERTS: &[&str] = &["access_denied", "internal_error"];

/// The Display of [`ClientError::Handshake`](super::ClientError::Handshake):
/// who refused what, in words, and the advice.
pub(super) fn handshake_message(alert: &str, advice: &str) -> String {
    let by_gateway = !REFUSALS.iter().any(|r| !r.by_gateway && r.advice == advice);
    let what = refusal_entry(by_gateway, alert).what;
    if CONNECTION_ALERTS.contains(&alert) {
        format!("the gateway refused this connection before the handshake: {what} (TLS alert {alert}); {advice}")
    } else if by_gateway {
        format!("the gateway refused this client certificate: {what} (TLS alert {alert}); {advice}")
    } else {
        format!("this client refused the gateway's certificate: {what} ({alert}); {advice}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_side_has_its_own_advice() {
        // The message tells the sides apart by the advice.
        for gateway in REFUSALS.iter().filter(|r| r.by_gateway) {
            assert!(
                !REFUSALS
                    .iter()
                    .any(|r| !r.by_gateway && r.advice == gateway.advice),
                "{}",
                gateway.advice
            );
        }
    }
}
