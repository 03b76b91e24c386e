//! The HTTP endpoint: `/metrics` (the Prometheus text format, or
//! OpenMetrics when `Accept` asks for it), `/healthz`, and 404 for anything
//! else. HTTP/1.1 only, on the tracer's tokio runtime. Anyone who can
//! reach the port can connect, so connections are capped
//! ([`MAX_CONNECTIONS`]; more are closed at once) and a request's header
//! must arrive within [`HEADER_TIMEOUT`]. No authentication or TLS: that
//! is for a proxy in front (see the README).

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};

use super::{
    ServeError,
    metrics::{self, Format},
};
use crate::sys::shutdown::Shutdown;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send a request's header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound listening socket, not yet serving.
pub struct Endpoint {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Endpoint {
    /// Binds `addr` (port 0: any free port, see [`Endpoint::addr`]).
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr).await.map_err(|e| ServeError::Bind { addr, reason: bind_reason(&e) })?;
        let addr = listener.local_addr().map_err(|e| ServeError::Bind { addr, reason: e.to_string() })?;
        Ok(Self { listener, addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `registry` until `stop`.
    pub fn spawn(self, registry: Arc<Registry>, stop: Shutdown) -> JoinHandle<()> {
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
            let stopped = stop.wait();
            tokio::pin!(stopped);
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut stopped => return,
                    r = self.listener.accept() => match r {
                        Ok(c) => c,
                        // Out of fds, or a connection reset before it was
                        // taken: the listener itself is fine.
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let registry = registry.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let registry = registry.clone();
                        async move { Ok::<_, Infallible>(answer(&req, &registry)) }
                    });
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    drop(slot);
                });
            }
        })
    }
}

/// Why a bind failed, as the end of one sentence.
fn bind_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "the port is in use (another program listens there; pick another with --listen)".into(),
        std::io::ErrorKind::AddrNotAvailable => "no interface of this host has that address".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)".into(),
        _ => e.to_string(),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

/// The answer to one request.
fn answer(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let path = req.uri().path();
    if path != "/metrics" && path != "/healthz" {
        return respond(StatusCode::NOT_FOUND, PLAIN, "not found: this endpoint serves /metrics and /healthz\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET and HEAD\n");
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == "/healthz" {
        return respond(StatusCode::OK, PLAIN, "ok\n");
    }
    let format = Format::from_accept(req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    match metrics::encode(registry, format) {
        Ok(body) => respond(StatusCode::OK, format.content_type(), body),
        Err(_) => respond(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, "the metrics could not be encoded\n"),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::serve::Exporter;

    async fn get(addr: SocketAddr, method: &str, path: &str, accept: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connects");
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("writes");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("reads");
        out
    }

    #[tokio::test]
    async fn metrics_healthz_and_nothing_else() {
        let e = Exporter::new(Duration::from_secs(1));
        e.lost("netlink", 2);
        let ep = Endpoint::bind("127.0.0.1:0".parse().expect("addr")).await.expect("binds");
        let addr = ep.addr();
        assert_ne!(addr.port(), 0);
        let (trigger, stop) = Shutdown::new();
        let task = ep.spawn(e.registry(), stop);
        let m = get(addr, "GET", "/metrics", "*/*").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("content-type: text/plain; version=0.0.4"), "{m}");
        assert!(m.contains("tracer_lost_events_total{source=\"netlink\"} 2"), "{m}");
        let om = get(addr, "GET", "/metrics", "application/openmetrics-text;version=1.0.0").await;
        assert!(om.contains("content-type: application/openmetrics-text") && om.ends_with("# EOF\n"), "{om}");
        let h = get(addr, "GET", "/healthz", "*/*").await;
        assert!(h.starts_with("HTTP/1.1 200") && h.ends_with("ok\n"), "{h}");
        for path in ["/", "/metrics/", "/debug", "/healthz?x=1/../metrics"] {
            let r = get(addr, "GET", path, "*/*").await;
            let want = if path.starts_with("/healthz?") { "HTTP/1.1 200" } else { "HTTP/1.1 404" };
            assert!(r.starts_with(want), "{path}: {r}");
        }
        assert!(get(addr, "POST", "/metrics", "*/*").await.starts_with("HTTP/1.1 405"));
        let junk = {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connects");
            s.write_all(b"\x00\x01garbage\r\n\r\n").await.expect("writes");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            out
        };
        assert!(junk.is_empty() || junk.starts_with("HTTP/1.1 400"), "{junk}");
        // Still serving after junk.
        assert!(get(addr, "GET", "/healthz", "*/*").await.starts_with("HTTP/1.1 200"));
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(2), task).await.expect("stops").expect("joins");
    }

    #[tokio::test]
    async fn a_port_in_use_is_one_sentence() {
        let first = Endpoint::bind("127.0.0.1:0".parse().expect("addr")).await.expect("binds");
        let e = Endpoint::bind(first.addr()).await.err().expect("refused");
        let m = e.to_string();
        assert!(m.starts_with(&format!("cannot listen on {}: the port is in use", first.addr())), "{m}");
        assert!(!m.contains('\n'));
        // An address no interface has.
        let e = Endpoint::bind("192.0.2.1:9464".parse().expect("addr")).await.err().expect("refused");
        assert_eq!(e.to_string(), "cannot listen on 192.0.2.1:9464: no interface of this host has that address");
    }
}
