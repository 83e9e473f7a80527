//! The serving side: a tokio runtime on its own thread, an accept loop
//! that serves HTTP/1.1 connections with hyper, and outages (while the
//! server is "down", every open connection is closed and every new one is
//! closed at once, without an answer).
//!
//! The accept loop is hand-written over hyper rather than `axum::serve`
//! because outages need to cut individual connections.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::Shared;
use super::routes;

/// Starts serving `listener` on a new thread; the server stops when the
/// returned sender is dropped or sent to.
pub(crate) fn spawn(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
) -> io::Result<(JoinHandle<()>, oneshot::Sender<()>)> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fake-apiserver")
        .enable_all()
        .build()?;
    let listener = {
        let _guard = rt.enter();
        TcpListener::from_std(listener)?
    };
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("fake-apiserver".into())
        .spawn(move || {
            rt.block_on(accept_loop(listener, shared, stop_rx));
            // Open connections and watch tasks are dropped with the runtime.
            rt.shutdown_timeout(Duration::from_secs(1));
        })?;
    Ok((thread, stop_tx))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let router = routes::router(shared.clone());
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "fake apiserver: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !*shared.up_tx.borrow() {
            shared
                .stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        tokio::spawn(serve_connection(stream, router.clone(), shared.clone()));
    }
}

/// Serves one connection until it ends or an outage starts (dropping the
/// connection closes the socket mid-whatever, as a crashed server would).
async fn serve_connection(stream: TcpStream, router: axum::Router, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut up = shared.up_tx.subscribe();
    let service = TowerToHyperService::new(router);
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "fake apiserver: connection ended with an error");
            }
        }
        _ = up.wait_for(|up| !*up) => {}
    }
}
