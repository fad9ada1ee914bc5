//! What a request carries between the first stages: the server-side
//! [`Ticket`] of the early admission layer, [`Admitted`] (stages 1 and 2
//! passed) and [`Authenticated`] (stages 1 to 3 passed, the envelope
//! verified).

use std::sync::Arc;

use crate::envelope;
use crate::error::{Denial, Reason};
use crate::identity::{ClientEntry, ClientIdentity};
use crate::peer::PeerInfo;

/// Proof, inside the server, that stages 1 and 2 admitted this request.
#[derive(Clone)]
pub struct Ticket {
    client: Arc<ClientEntry>,
}

impl Ticket {
    /// The ticket of a request stages 1 and 2 admitted for `client`.
    pub(crate) fn new(client: Arc<ClientEntry>) -> Self {
        Ticket { client }
    }

    /// The admission the layer made, for the service's stage 3. The
    /// connection's identity was checked by the layer; a request without one
    /// never gets a ticket, so the error is only a guard.
    pub fn admitted<'p>(&self, peer: Option<&'p PeerInfo>) -> Result<Admitted<'p>, Denial> {
        match peer.map(|p| &p.identity) {
            Some(Ok(identity)) => Ok(Admitted {
                identity,
                client: self.client.clone(),
                in_flight: None,
            }),
            _ => Err(Denial::new(
                Reason::IdentityMissing,
                "no verified client certificate on this connection",
            )),
        }
    }
}

/// A request that passed stages 1 and 2.
pub struct Admitted<'p> {
    /// The caller, as its certificate names it.
    pub identity: &'p ClientIdentity,
    /// Its registry entry, as loaded when the request arrived.
    pub client: Arc<ClientEntry>,
    /// One of its concurrent-call permits, held until the request ends.
    pub in_flight: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A request that passed stages 1 to 3.
pub struct Authenticated<'p> {
    /// The caller, as its certificate names it.
    pub identity: &'p ClientIdentity,
    /// Its registry entry, as loaded when the request arrived.
    pub client: Arc<ClientEntry>,
    /// The envelope, signature and freshness checked, nonce recorded.
    pub verified: envelope::VerifiedEnvelope,
    /// One of its concurrent-call permits, held until the request ends.
    pub in_flight: Option<tokio::sync::OwnedSemaphorePermit>,
}
