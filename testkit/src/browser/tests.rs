use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

const PAGE: &str = r#"<!doctype html><title>t</title><link rel="icon" href="data:,">
<h1 id="h">before</h1>
<button id="b" onclick="document.getElementById('h').textContent = 'after'; console.error('clicked')">go</button>
<script>window.answer = () => new Promise(r => setTimeout(() => r({ n: 42, s: 'x' }), 10));</script>"#;

/// A tiny HTTP server of [`PAGE`] on loopback, until dropped.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let page = head.starts_with(b"GET / ");
                let (status, body) = if page {
                    ("200 OK", PAGE)
                } else {
                    ("404 Not Found", "")
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server { addr, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(needle))
        .count()
}

#[test]
fn drives_a_real_chromium_and_leaves_nothing_behind() {
    if Browser::skip() {
        return;
    }
    let server = Server::start();
    let mut b = Browser::launch().unwrap();
    assert!(
        b.version.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{}",
        b.version
    );
    let profile = b.profile.as_ref().unwrap().path().to_owned();
    let needle = profile.display().to_string();
    assert!(
        processes_with(&needle) >= 1,
        "chromium runs with its profile"
    );

    let url = format!("http://{}/", server.addr);
    assert_eq!(b.goto(&url).unwrap(), Some(200));
    assert_eq!(b.text("#h").unwrap(), "before");
    let v: serde_json::Value = b.eval("answer()").unwrap();
    assert_eq!(v, json!({ "n": 42, "s": "x" }));
    let n: u32 = b.eval("1 + 2").unwrap();
    assert_eq!(n, 3);
    let nothing: Option<u32> = b.eval("undefined").unwrap();
    assert_eq!(nothing, None);
    let errors = b.console_errors().unwrap();
    assert!(errors.is_empty(), "{errors:?}");

    b.click("#b").unwrap();
    assert_eq!(b.text("#h").unwrap(), "after");
    assert_eq!(b.console_errors().unwrap(), vec!["clicked".to_owned()]);

    match b.eval::<u32>("Promise.reject(new Error('nope'))") {
        Err(BrowserError::Command { cmd, error }) => {
            assert_eq!(cmd, "eval");
            assert!(error.contains("nope"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    match b.eval::<u32>("'text'") {
        Err(BrowserError::Decode { value, .. }) => assert_eq!(value, json!("text")),
        other => panic!("{other:?}"),
    }

    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("page.png");
    b.screenshot(&shot).unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000);

    // Dropped without close: the browser and its profile go.
    drop(b);
    assert!(!profile.exists(), "the profile is removed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(&needle) > 0 {
        assert!(Instant::now() < deadline, "chromium outlived the Browser");
        std::thread::sleep(Duration::from_millis(50));
    }

    // And closed on purpose.
    let mut b = Browser::launch().unwrap();
    assert_eq!(b.goto(&url).unwrap(), Some(200));
    b.close().unwrap();
}
