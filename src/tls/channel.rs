//! The client SDK's channel to the gateway over our own rustls connector,
//! keeping the TLS error (the gateway's alert) that HTTP/2 would lose
//! ([`TlsFailures`]).

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

/// Opens a tonic channel over our own rustls connector, so the client side
/// is TLS 1.3-only with exactly the config given (tonic's built-in TLS
/// would not let us pin the protocol version).
pub async fn connect_channel(
    addr: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<tonic::transport::Channel, ConnectError> {
    connect_channel_watched(addr, server_name, config)
        .await
        .map(|(channel, _)| channel)
}

/// The last TLS error seen on any connection of a channel.
///
/// Under TLS 1.3 the gateway's verdict on the client certificate arrives
/// after the client's side of the handshake, as an alert on the first read,
/// inside the HTTP/2 connection task; a call on that connection then fails
/// with a bare "transport error" or "operation was canceled" that has lost
/// the alert. This keeps it, so the client can say why.
#[derive(Debug, Clone, Default)]
pub struct TlsFailures(Arc<std::sync::Mutex<Option<rustls::Error>>>);

impl TlsFailures {
    /// The last TLS error seen, if any.
    pub fn last(&self) -> Option<rustls::Error> {
        self.0.lock().map(|slot| slot.clone()).unwrap_or(None)
    }

    /// Forgets the last error: a later connection got data from the
    /// gateway, so it accepted this client.
    fn clear(&self) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = None;
        }
    }

    fn record(&self, error: &std::io::Error) {
        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let (Some(tls), Ok(mut slot)) = (tls, self.0.lock()) {
            *slot = Some(tls.clone());
        }
    }
}

/// A client TLS stream that records its TLS errors in [`TlsFailures`].
struct Watched<T> {
    inner: T,
    failures: TlsFailures,
    /// Whether data has come from the gateway on this connection: the first
    /// data clears the errors of earlier connections (once, off the hot path).
    accepted: bool,
}

impl<T> Watched<T> {
    fn note<R>(
        &self,
        poll: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        if let std::task::Poll::Ready(Err(e)) = &poll {
            self.failures.record(e);
        }
        poll
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.accepted
            && matches!(poll, std::task::Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            self.accepted = true;
            self.failures.clear();
        }
        self.note(poll)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.note(poll)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(poll)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// [`connect_channel`], also returning where the channel's connections
/// record their TLS errors (the gateway's alerts among them).
pub async fn connect_channel_watched(
    addr: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<(tonic::transport::Channel, TlsFailures), ConnectError> {
    let server_name = ServerName::try_from(server_name.to_string())
        .map_err(|_| ConnectError::ServerName(server_name.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let failures = TlsFailures::default();
    let watch = failures.clone();
    let target = addr.to_string();
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(ConnectError::Transport)?
        .connect_timeout(std::time::Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let target = target.clone();
            let failures = watch.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await.inspect_err(|e| {
                    failures.record(e);
                })?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(Watched {
                    inner: tls,
                    failures,
                    accepted: false,
                }))
            }
        }))
        .await
        .map(|channel| (channel, failures))
        .map_err(ConnectError::Transport)
}

/// Why [`connect_channel`] could not open a channel to the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configured server name is neither a DNS name nor an IP address.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// The endpoint was malformed, or the TCP connection or TLS handshake
    /// failed or timed out (after 10 s).
    #[error("cannot connect: {0}")]
    Transport(#[source] tonic::transport::Error),
}
