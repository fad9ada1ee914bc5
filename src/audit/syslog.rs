//! The network sinks: syslog (RFC 5424 messages, RFC 6587 octet-counted
//! frames, over TCP or TLS) and an HTTP endpoint (batches of JSON lines,
//! POSTed, retried by the writer with backoff; never through a proxy, and
//! a redirect is a failure).
//!
//! Both run on the writer thread and never on the request path; a sink
//! that fails reconnects on the next attempt. They send exactly the chained
//! line the file holds, so a collector's copy verifies like the file.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use super::config::{SinkConfig, SyslogTransport};
use super::sink::Sink;

/// Facility `log audit` (13), severity informational (6).
const PRI: u8 = 13 * 8 + 6;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn stream(&mut self) -> &mut dyn Write {
        match self {
            Conn::Tcp(s) => s,
            Conn::Tls(s) => &mut **s,
        }
    }
}

/// A TLS client config trusting only the CA in `ca` (PEM), with the
/// process's aws-lc-rs provider.
fn tls_config(ca: &std::path::Path) -> io::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| io::Error::other(format!("syslog ca {}: {e}", ca.display())))?
    {
        let cert =
            cert.map_err(|e| io::Error::other(format!("syslog ca {}: {e}", ca.display())))?;
        roots.add(cert).map_err(io::Error::other)?;
    }
    if roots.is_empty() {
        return Err(io::Error::other(format!(
            "syslog ca {}: no certificate",
            ca.display()
        )));
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(io::Error::other)
    .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// RFC 5424 over TCP or TLS to one collector.
pub(crate) struct SyslogSink {
    address: String,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    hostname: String,
    conn: Option<Conn>,
}

impl SyslogSink {
    /// The sink of `config` (a `Syslog` sink); connects on first use.
    pub(crate) fn new(config: &SinkConfig) -> io::Result<SyslogSink> {
        let SinkConfig::Syslog {
            address,
            transport,
            ca,
            server_name,
            ..
        } = config
        else {
            return Err(io::Error::other("not a syslog sink"));
        };
        let tls = match (transport, ca) {
            (SyslogTransport::Tls, Some(ca)) => {
                let cfg = tls_config(ca)?;
                let host = server_name.clone().unwrap_or_else(|| {
                    address
                        .rsplit_once(':')
                        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
                        .unwrap_or_default()
                });
                let name = rustls_pki_types::ServerName::try_from(host)
                    .map_err(|_| io::Error::other("syslog server_name is not a DNS name or IP"))?;
                Some((Arc::new(cfg), name))
            }
            (SyslogTransport::Tls, None) => {
                return Err(io::Error::other("syslog over tls needs a ca"))
            }
            _ => None,
        };
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
            .unwrap_or_else(|| "-".into());
        Ok(SyslogSink {
            address: address.clone(),
            tls,
            hostname,
            conn: None,
        })
    }

    fn connect(&self) -> io::Result<Conn> {
        use std::net::ToSocketAddrs;
        let addr = self
            .address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other("syslog address resolves to nothing"))?;
        let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        Ok(match &self.tls {
            None => Conn::Tcp(tcp),
            Some((cfg, name)) => {
                let conn = rustls::ClientConnection::new(cfg.clone(), name.clone())
                    .map_err(io::Error::other)?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                // Complete the handshake now, so a bad certificate is an
                // error here and not a silent drop later.
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
                Conn::Tls(Box::new(s))
            }
        })
    }

    /// One RFC 5424 message in an octet-counted frame.
    fn frame(&self, line: &str, out: &mut Vec<u8>) {
        let ts = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
            ))
            .unwrap_or_else(|_| "-".into());
        let msg = format!(
            "<{PRI}>1 {ts} {} sealgate {} audit - {line}",
            self.hostname,
            std::process::id()
        );
        out.extend_from_slice(format!("{} ", msg.len()).as_bytes());
        out.extend_from_slice(msg.as_bytes());
    }

    /// Whether the collector closed the connection: a collector sends
    /// nothing but TLS records, so pending bytes are read (TLS) or peeked
    /// (TCP) without blocking, and end-of-stream or an error means closed.
    fn peer_closed(conn: &mut Conn) -> bool {
        match conn {
            Conn::Tcp(s) => {
                let _ = s.set_nonblocking(true);
                let mut b = [0u8; 1];
                let closed = match s.peek(&mut b) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                };
                let _ = s.set_nonblocking(false);
                closed
            }
            Conn::Tls(s) => {
                let _ = s.sock.set_nonblocking(true);
                let mut closed = false;
                loop {
                    match s.conn.read_tls(&mut s.sock) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(_) => match s.conn.process_new_packets() {
                            Ok(state) if state.peer_has_closed() => {
                                closed = true;
                                break;
                            }
                            Ok(_) => {}
                            Err(_) => {
                                closed = true;
                                break;
                            }
                        },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
                let _ = s.sock.set_nonblocking(false);
                closed
            }
        }
    }
}

impl Sink for SyslogSink {
    fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
        if self.conn.as_mut().is_some_and(Self::peer_closed) {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().map_err(|e| (0, e))?);
        }
        let mut buf = Vec::new();
        for l in lines {
            self.frame(l, &mut buf);
        }
        let result = match self.conn.as_mut() {
            Some(c) => {
                let s = c.stream();
                s.write_all(&buf).and_then(|_| s.flush())
            }
            None => Err(io::Error::other("not connected")),
        };
        result.map_err(|e| {
            self.conn = None;
            (0, e)
        })
    }
}

/// Batches of JSON lines POSTed to an HTTP endpoint.
pub(crate) struct HttpSink {
    url: String,
    batch: usize,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl HttpSink {
    /// The sink of `config` (an `Http` sink).
    pub(crate) fn new(config: &SinkConfig) -> io::Result<HttpSink> {
        let SinkConfig::Http { url, batch, .. } = config else {
            return Err(io::Error::other("not an http sink"));
        };
        // reqwest runs on a small runtime of this (the writer's) thread.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = {
            let _in = rt.enter();
            // The collector is the configured URL and nothing else: no
            // proxy from the environment, and a redirect is a failure (a
            // followed 301/302 turns the POST into a bodiless GET whose 2xx
            // would count a batch nobody kept as delivered).
            reqwest::Client::builder()
                .timeout(IO_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .map_err(io::Error::other)?
        };
        Ok(HttpSink {
            url: url.clone(),
            batch: *batch,
            client,
            rt,
        })
    }
}

impl Sink for HttpSink {
    fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
        let mut done = 0;
        for chunk in lines.chunks(self.batch) {
            let mut body = String::new();
            for l in chunk {
                body.push_str(l);
                body.push('\n');
            }
            let client = &self.client;
            let url = &self.url;
            let status = self
                .rt
                .block_on(async move {
                    client
                        .post(url)
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await
                })
                .map(|r| r.status())
                .map_err(|e| (done, io::Error::other(e.without_url())))?;
            if !status.is_success() {
                // A 3xx included: the batch was not taken where configured.
                return Err((done, io::Error::other(format!("HTTP {status}"))));
            }
            done += chunk.len();
        }
        Ok(())
    }
}
