//! Mercure's own conformance suite (third-party, Playwright in Debian's Chromium), both
//! versions (`suite-v0.24.2`: draft-07; `suite-main`: draft-08), against this server's hub URL.
//! The suite lives beside the project, in `../shared/peers/mercure-conformance` (never copied
//! into it): each version is copied to a temporary folder, installed there (`npm ci` with a lock
//! file, else `npm install`; Playwright's browser download skipped) and run with the server's
//! `/.well-known/mercure` as `BASE_URL`, the suite's demo key as `--jwt-key`.
//!
//! It takes a minute or two and needs Node, npm, Chromium and the suite, so it runs only with
//! `REQUIRE_MERCURE_SUITE=1` (which `.ci/run` sets): then anything missing, and any case that
//! does not pass, fails the test. Without it the test says so on stderr and passes. The
//! negative cases (nothing must arrive) are checked on the wire in `tests/mercure_hub.rs` too,
//! since the suite cannot tell "not delivered" from "delivered with another id".

mod common;

use common::Server;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The key the suite's tokens are signed with (Mercure's demo key).
const SUITE_KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";

/// The versions and how many cases each has.
const VERSIONS: [(&str, usize); 2] = [("suite-v0.24.2", 11), ("suite-main", 10)];

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/mercure-conformance")
}

fn required() -> bool {
    std::env::var("REQUIRE_MERCURE_SUITE").as_deref() == Ok("1")
}

/// What is missing to run the suite, if anything.
fn missing() -> Option<String> {
    let dir = suite_dir();
    for (v, _) in VERSIONS {
        if !dir.join(v).join("mercure.spec.ts").is_file() {
            return Some(format!("the suite is not at {}", dir.join(v).display()));
        }
    }
    for tool in ["node", "npm", "npx"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Some(format!("{tool} is not installed"));
        }
    }
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("no Chromium at {chromium} (set CHROMIUM_PATH)"));
    }
    None
}

/// Copies `from` (a flat folder of files) into `to`, writable.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let dest = to.join(entry.file_name());
            std::fs::copy(entry.path(), &dest).unwrap();
            let mut perms = std::fs::metadata(&dest).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&dest, perms).unwrap();
        }
    }
}

/// Every spec of a Playwright JSON report: (title, passed).
fn specs(v: &serde_json::Value, out: &mut Vec<(String, bool)>) {
    if let Some(list) = v.get("specs").and_then(|s| s.as_array()) {
        for s in list {
            let title = s.get("title").and_then(|t| t.as_str()).unwrap_or("?");
            let ok = s.get("ok").and_then(|o| o.as_bool()).unwrap_or(false);
            out.push((title.to_string(), ok));
        }
    }
    if let Some(list) = v.get("suites").and_then(|s| s.as_array()) {
        for s in list {
            specs(s, out);
        }
    }
}

#[test]
fn mercures_conformance_suite_passes_in_both_versions() {
    if !required() {
        eprintln!(
            "mercure_conformance: skipped (set REQUIRE_MERCURE_SUITE=1 to run Mercure's suite from {})",
            suite_dir().display()
        );
        return;
    }
    if let Some(what) = missing() {
        panic!("REQUIRE_MERCURE_SUITE=1 but {what}");
    }
    let server = Server::start(&["--jwt-key", SUITE_KEY]);
    let base = format!(
        "http://127.0.0.1:{}/.well-known/mercure",
        server.addr.port()
    );
    let work = std::env::temp_dir().join(format!("sse-mercure-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let mut failures = Vec::new();
    for (version, cases) in VERSIONS {
        let dir = work.join(version);
        copy_dir(&suite_dir().join(version), &dir);
        let install = if dir.join("package-lock.json").is_file() {
            "ci"
        } else {
            "install"
        };
        let out = Command::new("npm")
            .args([install, "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .output()
            .expect("npm runs");
        assert!(
            out.status.success(),
            "npm {install} in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let results = work.join(format!("{version}.json"));
        let out = Command::new("npx")
            // The configuration's reporters: list on stdout, JSON to RESULTS_JSON (a
            // `--reporter` flag would replace them all).
            .args(["playwright", "test", "-c", "local.config.ts"])
            .current_dir(&dir)
            .env_remove("CI")
            .env("BASE_URL", &base)
            .env("RESULTS_JSON", &results)
            .env("HTML_REPORT", work.join(format!("{version}-html")))
            .output()
            .expect("npx runs");
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("== {version} against {base}\n{listing}");
        let report: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&results)
                .unwrap_or_else(|e| panic!("no report {}: {e}\n{listing}", results.display())),
        )
        .expect("a JSON report");
        let mut got = Vec::new();
        specs(&report, &mut got);
        assert_eq!(got.len(), cases, "{version}: {got:?}");
        for (title, ok) in got {
            if !ok {
                failures.push(format!("{version}: {title}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    assert!(failures.is_empty(), "cases failed: {failures:#?}");
}
