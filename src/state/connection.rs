//! How a replica reaches the store: its address, TLS 1.3 with the
//! configured CA only for `rediss://`, and the password read from the
//! secrets source at every connection (so a rotated secret is used from the
//! next one, and never logged).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::error::{classify, StoreError};
use crate::config::{StateConfig, StoreAddress};
use crate::secrets::{SecretRef, Secrets};

/// The longest a connection attempt may take (and any round trip that is
/// not a call's: probes, write-back, listing).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the store is and how to authenticate to it.
pub(super) struct Connector {
    pub(super) address: StoreAddress,
    /// The TLS 1.3 config for `rediss://` (the configured CA only).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Where the password is read from, at every (re)connection, so a
    /// rotated secret is used from the next one.
    password: Option<SecretRef>,
    secrets: Arc<Secrets>,
}

impl Connector {
    /// The connector of a validated `[state] kind = "redis"`.
    pub(super) fn new(config: &StateConfig, secrets: Arc<Secrets>) -> Result<Connector, String> {
        let address = config.address()?;
        let tls = match (&address.tls, &config.ca) {
            (true, Some(ca)) => {
                let mut c = crate::tls::backend_client_config(ca)
                    .map_err(|e| format!("field state.ca: {e}"))?;
                c.alpn_protocols.clear();
                Some(Arc::new(c))
            }
            (true, None) => return Err("field state.ca: required with rediss://".into()),
            _ => None,
        };
        Ok(Connector {
            address,
            tls,
            password: config.password_ref()?,
            secrets,
        })
    }

    /// `host:port`, for logs and events.
    pub(super) fn endpoint(&self) -> String {
        format!("{}:{}", self.address.host, self.address.port)
    }

    /// Opens and authenticates one connection, within [`CONNECT_TIMEOUT`].
    pub(super) async fn connect(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut info = redis::RedisConnectionInfo::default().set_db(self.address.db);
        if let Some(user) = &self.address.username {
            info = info.set_username(user);
        }
        if let Some(r) = &self.password {
            let value = self.secrets.get(r).ok_or(StoreError::Refused)?;
            info = info.set_password(secrecy::ExposeSecret::expose_secret(&value));
        }
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((self.address.host.as_str(), self.address.port)),
        )
        .await
        .map_err(|_| StoreError::Connect)?
        .map_err(|_| StoreError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        let setup = async {
            match &self.tls {
                None => redis::aio::MultiplexedConnection::new_with_config(&info, tcp, config)
                    .await
                    .map(|(c, driver)| {
                        tokio::spawn(driver);
                        c
                    })
                    .map_err(|e| classify(&e)),
                Some(tls) => {
                    let name = rustls_pki_types::ServerName::try_from(self.address.host.clone())
                        .map_err(|_| StoreError::Connect)?;
                    let stream = tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|_| StoreError::Connect)?;
                    redis::aio::MultiplexedConnection::new_with_config(&info, stream, config)
                        .await
                        .map(|(c, driver)| {
                            tokio::spawn(driver);
                            c
                        })
                        .map_err(|e| classify(&e))
                }
            }
        };
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, setup)
            .await
            .map_err(|_| StoreError::Connect)??;
        Ok(conn)
    }
}
