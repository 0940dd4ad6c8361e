//! A minimal W3C WebDriver client for the browser test: starts `chromedriver` as a child on a
//! free port, opens one headless Chromium session and speaks HTTP/1.1 + JSON to it over plain
//! `std::net::TcpStream`. Every call has a timeout, and dropping the [`Browser`] ends the
//! session, stops `chromedriver` and removes the throwaway profile directory.
#![allow(dead_code)] // not every helper is used by every test

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one ordinary WebDriver call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long starting the browser (the new-session call) may take.
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// One entry of the browser's console log, as chromedriver reports it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

/// How a session's browser differs from the default one.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The browser's languages (`--lang` and the `intl.accept_languages` preference, so
    /// `navigator.languages` says them), e.g. `"zh-CN,zh"`; `None`: Chromium's default.
    pub languages: Option<String>,
    /// A fontconfig file for the browser (`FONTCONFIG_FILE`), e.g. one without any CJK font.
    pub fontconfig: Option<PathBuf>,
    /// More Chromium switches, after the default ones (e.g. a certificate pin, or
    /// `--disable-http2`).
    pub args: Vec<String>,
    /// No speculative connections (Chromium's network prediction off): the connections the
    /// server counts are the ones the pages asked for.
    pub no_preconnect: bool,
}

/// A running `chromedriver` with one headless Chromium session.
pub struct Browser {
    child: Child,
    port: u16,
    session: Option<String>,
    profile: PathBuf,
}

impl Browser {
    /// Starts `chromedriver` (path given) on a free local port and opens a headless session of
    /// the Chromium binary given, with a fresh profile and the browser console log enabled.
    pub fn start(chromedriver: &str, chromium: &str) -> Browser {
        Self::start_with(chromedriver, chromium, &Options::default())
    }

    /// Like [`start`](Self::start), with the languages and fonts of `opts`.
    pub fn start_with(chromedriver: &str, chromium: &str, opts: &Options) -> Browser {
        let port = free_port();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let profile =
            std::env::temp_dir().join(format!("sse-browser-test-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("create the profile directory");
        let mut cmd = Command::new(chromedriver);
        // The browser is chromedriver's child and inherits its environment.
        if let Some(conf) = &opts.fontconfig {
            cmd.env("FONTCONFIG_FILE", conf);
        }
        let child = cmd
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
        let mut browser = Browser {
            child,
            port,
            session: None,
            profile,
        };

        // Wait for chromedriver to answer /status with ready: true.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok((_, v)) = http(port, "GET", "/status", None, Duration::from_secs(2)) {
                if v["value"]["ready"] == json!(true) {
                    break;
                }
            }
            if let Ok(Some(status)) = browser.child.try_wait() {
                panic!("{chromedriver} exited at startup: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{chromedriver} not ready on port {port} after 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", browser.profile.display()),
        ];
        args.extend(opts.args.iter().cloned());
        let mut prefs = json!({});
        if let Some(langs) = &opts.languages {
            args.push(format!(
                "--lang={}",
                langs.split(',').next().unwrap_or(langs)
            ));
            prefs["intl.accept_languages"] = json!(langs);
        }
        if opts.no_preconnect {
            // 2: never predict (no preconnect, no prefetch).
            prefs["net"] = json!({ "network_prediction_options": 2 });
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "timeouts": { "pageLoad": 10_000, "script": 5_000, "implicit": 0 },
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": args,
                        "prefs": prefs,
                    },
                },
            },
        });
        let (status, v) = http(port, "POST", "/session", Some(&caps), SESSION_TIMEOUT)
            .unwrap_or_else(|e| panic!("new session: {e}"));
        assert_eq!(status, 200, "new session failed: {v}");
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {v}"));
        browser.session = Some(id.to_owned());
        browser
    }

    /// A command on the session: `path` is relative to `/session/{id}`. Panics on a WebDriver
    /// error; returns the reply's `value`.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let id = self.session.as_deref().expect("session open");
        let full = format!("/session/{id}{path}");
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        let (status, v) = http(self.port, method, &full, body.as_ref(), CALL_TIMEOUT)
            .unwrap_or_else(|e| panic!("{method} {full}: {e}"));
        if status != 200 {
            panic!("{method} {full} failed with {status}: {}", v["value"]);
        }
        v["value"].clone()
    }

    /// Navigates to `url` and waits for the load (bounded by the session's pageLoad timeout).
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Goes back one page in the session's history (bounded by the pageLoad timeout).
    pub fn back(&self) {
        self.cmd("POST", "/back", None);
    }

    pub fn title(&self) -> String {
        self.cmd("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element reference of the first match of a CSS selector.
    pub fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element reference for {css}: {v}"))
            .to_owned()
    }

    /// A real WebDriver click (scrolls into view, checks the element is interactable).
    pub fn click(&self, css: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{el}/click"), None);
    }

    /// The rendered text of the first match of a CSS selector.
    pub fn text(&self, css: &str) -> String {
        let el = self.find(css);
        self.cmd("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs a synchronous script (a function body) in the page and returns its result.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Drains the browser console log collected since the last call (`goog:loggingPrefs`).
    pub fn browser_log(&self) -> Vec<LogEntry> {
        let v = self.cmd("POST", "/se/log", Some(json!({ "type": "browser" })));
        v.as_array()
            .unwrap_or_else(|| panic!("browser log is not an array: {v}"))
            .iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or_default().to_owned(),
                source: e["source"].as_str().unwrap_or_default().to_owned(),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Sets the window's outer size (in headless mode this is the viewport).
    pub fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Emulates a device viewport through the DevTools protocol (for widths below the
    /// window's minimum), or clears the emulation with `None`.
    pub fn emulate_viewport(&self, size: Option<(u32, u32, f64, bool)>) {
        let (cmd, params) = match size {
            Some((width, height, scale, mobile)) => (
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile }),
            ),
            None => ("Emulation.clearDeviceMetricsOverride", json!({})),
        };
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        );
    }

    /// Emulates `prefers-color-scheme` (`Some("dark")`, `Some("light")`), or clears it.
    pub fn emulate_color_scheme(&self, scheme: Option<&str>) {
        let features = match scheme {
            Some(s) => json!([{ "name": "prefers-color-scheme", "value": s }]),
            None => json!([]),
        };
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(
                json!({ "cmd": "Emulation.setEmulatedMedia", "params": { "features": features } }),
            ),
        );
    }

    /// The current window's handle.
    pub fn window_handle(&self) -> String {
        self.cmd("GET", "/window", None)
            .as_str()
            .expect("window handle")
            .to_owned()
    }

    /// Opens a new tab (not switching to it) and returns its handle.
    pub fn new_tab(&self) -> String {
        let v = self.cmd("POST", "/window/new", Some(json!({ "type": "tab" })));
        v["handle"]
            .as_str()
            .unwrap_or_else(|| panic!("no handle in {v}"))
            .to_owned()
    }

    /// Makes the window with this handle the target of later commands.
    pub fn switch_to(&self, handle: &str) {
        self.cmd("POST", "/window", Some(json!({ "handle": handle })));
    }

    /// Closes the current window (switch to another before the next command).
    pub fn close_window(&self) {
        self.cmd("DELETE", "/window", None);
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot_png(&self) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", None);
        base64_decode(v.as_str().expect("base64 screenshot"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = http(
                self.port,
                "DELETE",
                &format!("/session/{id}"),
                None,
                Duration::from_secs(10),
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A port that was free a moment ago (the small race with other processes is acceptable here).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the JSON body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, Value), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;

    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut need: Option<usize> = None;
    loop {
        if let Some(n) = need {
            if buf.len() >= n {
                break;
            }
        } else if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            need = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .map(|n| end + 4 + n);
            if need.is_some_and(|n| buf.len() >= n) {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?}"));
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let end = find(&buf, b"\r\n\r\n")
        .ok_or_else(|| format!("no response head in {:?}", String::from_utf8_lossy(&buf)))?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let body = &buf[end + 4..need.unwrap_or(buf.len()).min(buf.len())];
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| format!("bad JSON ({e}): {:?}", String::from_utf8_lossy(body)))?
    };
    Ok((status, value))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Standard base64 (with padding), as WebDriver returns screenshots.
pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for group in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in group.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    out
}
