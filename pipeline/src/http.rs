//! The HTTP endpoints of the streaming job `spcvm run`: Prometheus metrics, liveness and
//! readiness.
//!
//! The runtime creates one [`Health`] (live, not yet ready) and one
//! `Arc<`[`Metrics`]`>`, calls [`bind`] with the configured address and a shutdown future,
//! and `tokio::spawn`s the returned [`ServeFuture`]. A bind failure is reported before
//! anything else starts. Once partitions are assigned and their state is restored, the
//! runtime calls [`Health::set_ready`]`(true)`; on revocation or shutdown it sets it back to
//! `false`, and it clears liveness ([`Health::set_live`]`(false)`) when the job is wedged and
//! should be restarted.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | 200, [`Metrics::render`] as `text/plain; version=0.0.4` |
//! | `GET /healthz` | 200 `ok` when live, else 503 `not live` |
//! | `GET /readyz` | 200 `ready` when ready, else 503 with a short reason |
//! | anything else | 404 `not found` (405 for another method on a known route) |
//!
//! `HEAD` is answered on every `GET` route.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Body of a `503` from `/readyz`.
pub const NOT_READY_REASON: &str = "not ready: partitions not assigned or state not restored yet";

/// Liveness and readiness flags shared with the runtime.
///
/// Cloning is cheap and every clone sees the same flags (an `Arc` of atomics inside). A new
/// `Health` is live and not ready.
#[derive(Clone)]
pub struct Health {
    flags: Arc<Flags>,
}

struct Flags {
    live: AtomicBool,
    ready: AtomicBool,
}

// The flags publish no other data, so relaxed ordering is enough: a reader only needs to see
// the latest value eventually (the next probe), not in order with other memory.
impl Health {
    /// Marks the process ready (partitions assigned and state restored) or not.
    pub fn set_ready(&self, ready: bool) {
        self.flags.ready.store(ready, Ordering::Relaxed);
    }

    /// Marks the process live or not; not live makes `/healthz` answer 503 so that the
    /// orchestrator restarts it.
    pub fn set_live(&self, live: bool) {
        self.flags.live.store(live, Ordering::Relaxed);
    }

    /// Whether the process is ready (`false` until [`Health::set_ready`]`(true)`).
    pub fn is_ready(&self) -> bool {
        self.flags.ready.load(Ordering::Relaxed)
    }

    /// Whether the process is live (`true` until [`Health::set_live`]`(false)`).
    pub fn is_live(&self) -> bool {
        self.flags.live.load(Ordering::Relaxed)
    }
}

impl Default for Health {
    /// Live and not ready.
    fn default() -> Self {
        Health {
            flags: Arc::new(Flags {
                live: AtomicBool::new(true),
                ready: AtomicBool::new(false),
            }),
        }
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("live", &self.is_live())
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be resolved or bound (bad syntax, in use, no permission).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address as given to [`bind`].
        addr: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// The socket was bound but its local address could not be read.
    #[error("cannot read the address bound for {addr}: {source}")]
    LocalAddr {
        /// The address as given to [`bind`].
        addr: String,
        /// What the operating system said.
        source: io::Error,
    },
}

/// The server returned by [`bind`]: resolves when the shutdown future has resolved and
/// in-flight requests have finished, or with an I/O error if serving fails. `Send + 'static`,
/// so it can be `tokio::spawn`ed or stored.
pub type ServeFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'static>>;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Binds `addr` (e.g. `"0.0.0.0:9464"`, or `"127.0.0.1:0"` for any free port) and returns
/// the bound address and the server.
///
/// The server only runs while the returned [`ServeFuture`] is polled (spawn it); connections
/// that arrive before that wait in the listen backlog. It stops accepting when `shutdown`
/// resolves, lets in-flight requests finish, then resolves with `Ok(())`.
///
/// # Errors
///
/// [`HttpError::Bind`] (naming `addr`) when the address cannot be resolved or bound.
pub async fn bind<F>(
    addr: &str,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: F,
) -> Result<(SocketAddr, ServeFuture), HttpError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| HttpError::LocalAddr {
            addr: addr.to_owned(),
            source,
        })?;
    tracing::info!(addr = %local, "serving /metrics, /healthz and /readyz");
    let serve = axum::serve(listener, router(metrics, health)).with_graceful_shutdown(shutdown);
    Ok((local, Box::pin(async move { serve.await })))
}

fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        state.metrics.render(),
    )
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.is_live() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not live")
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, NOT_READY_REASON)
    }
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    struct Reply {
        status: u16,
        content_type: String,
        body: String,
    }

    /// One request with ureq (blocking, so on the blocking pool), statuses not turned into
    /// errors and no proxy from the environment.
    async fn request(method: &'static str, addr: SocketAddr, path: &str) -> Reply {
        let url = format!("http://{addr}{path}");
        tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .new_agent();
            let mut resp = match method {
                "GET" => agent.get(&url).call(),
                "POST" => agent.post(&url).send(""),
                other => unreachable!("method {other}"),
            }
            .expect("request");
            let content_type = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            Reply {
                status: resp.status().as_u16(),
                content_type,
                body: resp.body_mut().read_to_string().expect("body"),
            }
        })
        .await
        .expect("request task")
    }

    async fn get(addr: SocketAddr, path: &str) -> Reply {
        request("GET", addr, path).await
    }

    /// Starts a server on a free port; dropping the sender (or sending) shuts it down.
    async fn start(
        metrics: Arc<Metrics>,
        health: Health,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<io::Result<()>>,
    ) {
        let (tx, rx) = oneshot::channel::<()>();
        let (addr, serve) = bind("127.0.0.1:0", metrics, health, async {
            let _ = rx.await;
        })
        .await
        .expect("bind");
        (addr, tx, tokio::spawn(serve))
    }

    #[test]
    fn health_defaults_live_not_ready_and_clones_share() {
        let h = Health::default();
        assert!(h.is_live());
        assert!(!h.is_ready());
        let c = h.clone();
        c.set_ready(true);
        c.set_live(false);
        assert!(h.is_ready());
        assert!(!h.is_live());
        assert_eq!(format!("{h:?}"), "Health { live: false, ready: true }");
    }

    #[tokio::test]
    async fn metrics_route_serves_the_text_format() {
        let metrics = Arc::new(Metrics::new());
        let (addr, _tx, _server) = start(metrics.clone(), Health::default()).await;
        metrics.decode_failure("too_large");
        metrics.decode_failure("too_large");
        let reply = get(addr, "/metrics").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, "text/plain; version=0.0.4");
        assert!(
            reply
                .body
                .lines()
                .any(|l| l == r#"spcvm_decode_failures_total{kind="too_large"} 2"#),
            "{}",
            reply.body
        );
        assert!(
            reply
                .body
                .contains("# TYPE spcvm_decode_failures_total counter")
        );
        // A later scrape sees later increments.
        metrics.decode_failure("too_large");
        let reply = get(addr, "/metrics").await;
        assert!(
            reply
                .body
                .contains(r#"spcvm_decode_failures_total{kind="too_large"} 3"#)
        );
    }

    #[tokio::test]
    async fn healthz_follows_the_live_flag() {
        let health = Health::default();
        let (addr, _tx, _server) = start(Arc::new(Metrics::new()), health.clone()).await;
        let reply = get(addr, "/healthz").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
        health.set_live(false);
        let reply = get(addr, "/healthz").await;
        assert_eq!((reply.status, reply.body.as_str()), (503, "not live"));
        health.set_live(true);
        assert_eq!(get(addr, "/healthz").await.status, 200);
    }

    #[tokio::test]
    async fn readyz_follows_the_ready_flag() {
        let health = Health::default();
        let (addr, _tx, _server) = start(Arc::new(Metrics::new()), health.clone()).await;
        let reply = get(addr, "/readyz").await;
        assert_eq!((reply.status, reply.body.as_str()), (503, NOT_READY_REASON));
        health.set_ready(true);
        let reply = get(addr, "/readyz").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ready"));
        health.set_ready(false);
        assert_eq!(get(addr, "/readyz").await.status, 503);
        // Liveness is independent of readiness.
        assert_eq!(get(addr, "/healthz").await.status, 200);
    }

    #[tokio::test]
    async fn unknown_routes_are_404_and_other_methods_405() {
        let (addr, _tx, _server) = start(Arc::new(Metrics::new()), Health::default()).await;
        for path in ["/", "/metrics/x", "/health", "/readyz/"] {
            let reply = get(addr, path).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (404, "not found"),
                "{path}"
            );
        }
        assert_eq!(request("POST", addr, "/metrics").await.status, 405);
    }

    #[tokio::test]
    async fn shutdown_future_stops_the_server() {
        let (addr, tx, server) = start(Arc::new(Metrics::new()), Health::default()).await;
        assert_eq!(get(addr, "/healthz").await.status, 200);
        tx.send(()).expect("server still running");
        let result = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops within 10 s")
            .expect("server task");
        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn bad_address_is_an_error_naming_it() {
        let health = Health::default();
        let metrics = Arc::new(Metrics::new());
        let err = bind("not an address", metrics.clone(), health.clone(), async {})
            .await
            .err()
            .expect("bad syntax must fail");
        assert!(matches!(err, HttpError::Bind { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("cannot bind not an address: "),
            "{err}"
        );

        // An address already in use.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let err = bind(&addr, metrics, health, async {})
            .await
            .err()
            .expect("address in use must fail");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot bind {addr}: ")),
            "{err}"
        );
    }
}
