//! A real headless Chromium for tests and benchmarks: Debian's
//! `/usr/bin/chromium` driven by `ui/tests/driver.mjs` (node and
//! `playwright-core`, a devDependency of `ui/`, installed by `cargo xtask
//! build-ui`), which speaks JSON lines on its stdin and stdout (the
//! commands are documented in the driver).
//!
//! ```no_run
//! # fn main() -> Result<(), bulkhead_testkit::browser::BrowserError> {
//! use bulkhead_testkit::browser::Browser;
//! let mut b = Browser::launch()?;
//! b.goto("http://127.0.0.1:9618/ui/")?;
//! let ready: f64 = b.eval("window.bulkhead.whenReady().then(() => window.bulkhead.readyAt)")?;
//! b.click("#export")?;
//! let title = b.text("h1")?;
//! b.screenshot(std::path::Path::new("map.png"))?;
//! assert!(b.console_errors()?.is_empty());
//! # let _ = (ready, title);
//! # Ok(()) }
//! ```
//!
//! Each browser gets a fresh profile (a temporary `--user-data-dir`);
//! dropping a [`Browser`] closes it (asks the driver, then SIGTERM, then
//! SIGKILL) and removes the profile. [`Browser::unavailable`] says why no
//! browser can run here (no chromium, no node, no `playwright-core`), for
//! a test to skip with that message, unless `BULKHEAD_REQUIRE_BROWSER` is
//! set (CI), when it must fail instead.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Environment variable naming the browser (default `/usr/bin/chromium`).
pub const CHROMIUM_ENV: &str = "BULKHEAD_CHROMIUM";
/// Environment variable that makes a missing browser a failure, not a skip.
pub const REQUIRE_ENV: &str = "BULKHEAD_REQUIRE_BROWSER";
/// Debian's chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long the browser may take to start.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one command may take by default (the driver's own timeouts
/// are 30 s: this only catches a hung driver).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// Errors driving the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// Something the browser needs is not installed.
    #[error("no browser: {0}")]
    Unavailable(String),
    /// Starting node or making the profile failed.
    #[error("starting the browser driver: {0}")]
    Spawn(#[source] std::io::Error),
    /// Talking to the driver failed.
    #[error("talking to the browser driver: {0}")]
    Io(#[from] std::io::Error),
    /// The driver ended (its stderr's tail says why).
    #[error("the browser driver exited during {cmd}: {stderr}")]
    Exited {
        /// The command under way.
        cmd: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The driver did not answer in time.
    #[error("the browser driver did not answer {cmd} within {timeout:?}")]
    Timeout {
        /// The command.
        cmd: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The driver's answer is not `{"ok":…}` JSON.
    #[error("the browser driver answered {cmd} with {line:?}")]
    Protocol {
        /// The command.
        cmd: String,
        /// The line.
        line: String,
    },
    /// The command failed in the browser (a selector not found, a script
    /// that threw, a page that did not load).
    #[error("{cmd} failed in the browser: {error}")]
    Command {
        /// The command.
        cmd: String,
        /// The driver's message.
        error: String,
    },
    /// The command's value is not what the caller asked for.
    #[error("the value of {cmd} is not the type asked for: {source} (value: {value})")]
    Decode {
        /// The command.
        cmd: String,
        /// The value.
        value: Value,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

/// A headless Chromium (see the module doc).
#[derive(Debug)]
pub struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    profile: Option<tempfile::TempDir>,
    /// The browser's version, as it reports it.
    pub version: String,
}

/// The repository's `ui/` (the npm project the driver and its
/// `node_modules` are in).
pub fn ui_dir() -> PathBuf {
    let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit.parent().unwrap_or(testkit).join("ui")
}

/// The driver script.
pub fn driver_path() -> PathBuf {
    ui_dir().join("tests/driver.mjs")
}

fn chromium() -> PathBuf {
    std::env::var_os(CHROMIUM_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CHROMIUM))
}

impl Browser {
    /// Why no browser can run here, if it cannot: no chromium, no node,
    /// or no `playwright-core` (in `ui/node_modules` or `$NODE_PATH`).
    pub fn unavailable() -> Option<String> {
        let chromium = chromium();
        if !chromium.is_file() {
            return Some(format!(
                "{} is missing (`cargo xtask setup` installs Debian's chromium)",
                chromium.display()
            ));
        }
        let node = Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !node.is_ok_and(|s| s.success()) {
            return Some("node is missing (`cargo xtask setup` installs it)".to_owned());
        }
        let mut dirs = vec![ui_dir().join("node_modules")];
        if let Some(p) = std::env::var_os("NODE_PATH") {
            dirs.extend(std::env::split_paths(&p));
        }
        if !dirs.iter().any(|d| d.join("playwright-core").is_dir()) {
            return Some(format!(
                "playwright-core is not installed in {} (`cargo xtask build-ui` runs npm ci)",
                ui_dir().join("node_modules").display()
            ));
        }
        None
    }

    /// Whether a test should skip for want of a browser: prints why and
    /// returns true, or panics when [`REQUIRE_ENV`] is set.
    pub fn skip() -> bool {
        let Some(why) = Self::unavailable() else {
            return false;
        };
        assert!(
            std::env::var_os(REQUIRE_ENV).is_none(),
            "{REQUIRE_ENV} is set, but there is no browser: {why}"
        );
        eprintln!("skipped: no browser: {why}");
        true
    }

    /// Starts the driver and its browser, with a fresh profile; returns
    /// once the browser runs.
    pub fn launch() -> Result<Browser, BrowserError> {
        if let Some(why) = Self::unavailable() {
            return Err(BrowserError::Unavailable(why));
        }
        let profile = tempfile::Builder::new()
            .prefix("bulkhead-chromium-")
            .tempdir()
            .map_err(BrowserError::Spawn)?;
        let mut child = Command::new("node")
            .arg(driver_path())
            .arg("--user-data-dir")
            .arg(profile.path())
            .env(CHROMIUM_ENV, chromium())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(BrowserError::Spawn)?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
                // Only the tail matters.
                if s.len() > 16_384 {
                    let cut = s.len() - 8_192;
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                    s.drain(..cut);
                }
            }
        });
        let mut b = Browser {
            child,
            stdin,
            lines,
            stderr: log,
            profile: Some(profile),
            version: String::new(),
        };
        let ready = b.answer("launch", LAUNCH_TIMEOUT)?;
        b.version = ready["version"].as_str().unwrap_or_default().to_owned();
        Ok(b)
    }

    /// Loads `url` (until its `load` event); its HTTP status, if it had one.
    pub fn goto(&mut self, url: &str) -> Result<Option<u16>, BrowserError> {
        let v = self.command(json!({ "cmd": "goto", "url": url }), COMMAND_TIMEOUT)?;
        Ok(v.as_u64().and_then(|s| u16::try_from(s).ok()))
    }

    /// The value of the JavaScript expression `js` in the page (a promise
    /// is awaited), decoded from its JSON.
    pub fn eval<T: DeserializeOwned>(&mut self, js: &str) -> Result<T, BrowserError> {
        self.eval_within(js, COMMAND_TIMEOUT)
    }

    /// [`Browser::eval`] with a longer (or shorter) wait for the driver:
    /// the browser's own timeout for it is `timeout` too.
    pub fn eval_within<T: DeserializeOwned>(
        &mut self,
        js: &str,
        timeout: Duration,
    ) -> Result<T, BrowserError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let c = json!({ "cmd": "eval", "js": js, "timeout_ms": ms });
        let value = self.command(c, timeout + Duration::from_secs(5))?;
        serde_json::from_value(value.clone()).map_err(|source| BrowserError::Decode {
            cmd: "eval".to_owned(),
            value,
            source,
        })
    }

    /// Clicks the first element `selector` matches (waiting for it).
    pub fn click(&mut self, selector: &str) -> Result<(), BrowserError> {
        self.command(
            json!({ "cmd": "click", "selector": selector }),
            COMMAND_TIMEOUT,
        )
        .map(drop)
    }

    /// A real mouse click at page pixels (`x`, `y`): what a user's click
    /// on a canvas (the map's graph) does.
    pub fn mouse_click(&mut self, x: f64, y: f64) -> Result<(), BrowserError> {
        self.command(
            json!({ "cmd": "mouse_click", "x": x, "y": y }),
            COMMAND_TIMEOUT,
        )
        .map(drop)
    }

    /// The rendered text (`innerText`) of the first element `selector`
    /// matches (waiting for it).
    pub fn text(&mut self, selector: &str) -> Result<String, BrowserError> {
        let v = self.command(
            json!({ "cmd": "text", "selector": selector }),
            COMMAND_TIMEOUT,
        )?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Saves a PNG of the whole page at `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), BrowserError> {
        let c = json!({ "cmd": "screenshot", "path": path });
        self.command(c, COMMAND_TIMEOUT).map(drop)
    }

    /// The page's console errors and uncaught exceptions so far.
    pub fn console_errors(&mut self) -> Result<Vec<String>, BrowserError> {
        let v = self.command(json!({ "cmd": "console" }), COMMAND_TIMEOUT)?;
        serde_json::from_value(v.clone()).map_err(|source| BrowserError::Decode {
            cmd: "console".to_owned(),
            value: v,
            source,
        })
    }

    /// Closes the browser and waits for the driver to exit.
    pub fn close(mut self) -> Result<(), BrowserError> {
        self.command(json!({ "cmd": "close" }), COMMAND_TIMEOUT)?;
        self.stdin = None;
        self.wait_exit(Duration::from_secs(10));
        Ok(())
    }

    fn command(&mut self, c: Value, timeout: Duration) -> Result<Value, BrowserError> {
        let name = c["cmd"].as_str().unwrap_or_default().to_owned();
        let mut line = c.to_string();
        line.push('\n');
        let sent = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush())
                .is_ok(),
            None => false,
        };
        if !sent {
            return Err(self.exited(&name));
        }
        self.answer(&name, timeout)
    }

    /// The driver's next answer: its value, or its error.
    fn answer(&mut self, cmd: &str, timeout: Duration) -> Result<Value, BrowserError> {
        let line = match self.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                return Err(BrowserError::Timeout {
                    cmd: cmd.to_owned(),
                    timeout,
                });
            }
            Err(RecvTimeoutError::Disconnected) => return Err(self.exited(cmd)),
        };
        let protocol = || BrowserError::Protocol {
            cmd: cmd.to_owned(),
            line: line.clone(),
        };
        let mut v: Value = serde_json::from_str(&line).map_err(|_| protocol())?;
        match v["ok"].as_bool() {
            Some(true) => Ok(v["value"].take()),
            Some(false) => Err(BrowserError::Command {
                cmd: cmd.to_owned(),
                error: v["error"].as_str().unwrap_or("(no message)").to_owned(),
            }),
            None => Err(protocol()),
        }
    }

    fn exited(&mut self, cmd: &str) -> BrowserError {
        // Let the stderr reader take the last lines.
        self.wait_exit(Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        BrowserError::Exited {
            cmd: cmd.to_owned(),
            stderr: tail.join("\n"),
        }
    }

    /// Waits up to `timeout` for the driver to exit; whether it did.
    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.child.try_wait().is_ok_and(|s| s.is_none()) {
            // Closing stdin ends the driver's loop: it closes the browser.
            self.stdin = None;
            if !self.wait_exit(Duration::from_secs(5)) {
                // Its SIGTERM handler closes the browser too.
                if let Ok(pid) = i32::try_from(self.child.id()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                if !self.wait_exit(Duration::from_secs(5)) {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                }
            }
        }
        if let Some(p) = self.profile.take()
            && let Err(e) = p.close()
        {
            eprintln!("removing the browser's profile: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
