//! `assent bench` against a real `assent serve`: a short run of the HTTP scenarios completes
//! without errors and removes its environment, also when interrupted; bad targets are refused
//! with a clear message. No timed assertions: only counts, error kinds and what is left.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{Running, cli, command, free_port, serve, temp_dir};

fn bench(dir: &Path, server: &Running, args: &[&str]) -> Command {
    let mut c = command();
    c.arg("bench")
        .args(args)
        .arg("--server")
        .arg(&server.base)
        .arg("--data-dir")
        .arg(dir);
    c
}

/// The ids and names of the environments the server has.
fn environments(dir: &Path, server: &Running) -> Vec<(String, String)> {
    let (ok, stdout, stderr) = cli(dir, &server.base, &["env", "list", "--json"]);
    assert!(ok, "{stderr}");
    let list: Value = serde_json::from_str(&stdout).unwrap();
    list["_embedded"]["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn assert_no_bench_environment(dir: &Path, server: &Running, id: &str) {
    let envs = environments(dir, server);
    assert!(
        envs.iter()
            .all(|(i, name)| i != id && !name.starts_with("assent-bench-")),
        "left behind: {envs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_runs_the_scenarios_without_errors_and_deletes_its_environment() {
    let dir = temp_dir("bench");
    let port = free_port();
    let mut server = serve(&dir, port);
    let before = environments(&dir, &server);

    let out = bench(
        &dir,
        &server,
        &[
            "--scenario",
            "flow",
            "--scenario",
            "init",
            "--scenario",
            "poll",
            "--duration",
            "1",
            "--pending",
            "50",
            "--json",
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flow", "init", "poll-seed", "poll"], "{stdout}");
    for s in report["scenarios"].as_array().unwrap() {
        assert!(s["operations"].as_u64().unwrap() > 0, "{s}");
        assert_eq!(s["errors"], 0, "{s}");
        assert_eq!(s["errorsByKind"], serde_json::json!({}), "{s}");
        assert!(s["latencyMs"]["p99"].is_number(), "{s}");
        // The server is this test's child, found through its listening socket.
        assert!(s["serverCpuUsPerOperation"].is_number(), "{s}");
    }
    assert_eq!(
        report["scenarios"][2]["operations"], 50,
        "every pending request was seeded"
    );
    assert_eq!(report["serverPid"], server.child.id());
    let env = &report["environment"];
    assert_eq!(env["deleted"], true, "{stdout}");
    assert!(env["name"].as_str().unwrap().starts_with("assent-bench-"));
    assert!(stderr.contains("deleted the bench environment"), "{stderr}");
    assert_no_bench_environment(&dir, &server, env["id"].as_str().unwrap());
    assert_eq!(environments(&dir, &server), before);

    // Refusals, each with its reason and without a panic.
    let out = bench(
        &dir,
        &server,
        &["--admin-token", "not-the-token", "--scenario", "init"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("INVALID_TOKEN") && stderr.contains("--admin-token"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let out = command()
        .args(["bench", "--scenario", "init", "--admin-token", "t"])
        .args(["--server", &unreachable])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the Assent server"),
        "{stderr}"
    );

    let out = command()
        .args(["bench", "--scenario", "init", "--admin-token", "t"])
        .env("ASSENT_SERVER", "http://192.0.2.1:8080")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("--server"),
        "{stderr}"
    );
    assert_eq!(environments(&dir, &server), before);

    assert!(super::sigterm(&mut server.child).success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C in the middle of a scenario: the run stops, reports what it measured, deletes the
/// environment and exits with an error.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_bench_still_deletes_its_environment() {
    let dir = temp_dir("bench-interrupt");
    let port = free_port();
    let mut server = serve(&dir, port);

    let mut child = bench(
        &dir,
        &server,
        &[
            "--scenario",
            "init",
            "--duration",
            "600",
            "--concurrency",
            "4",
            "--json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // The first progress line comes once the scenario runs (a plain line per second, since
    // stderr is a pipe).
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "bench ended before its progress line: {seen}"
        );
        seen.push_str(&line);
        if line.starts_with("init: ") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(rest.contains("interrupted"), "{rest}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["environment"]["deleted"], true, "{stdout}\n{rest}");
    assert!(report["scenarios"][0]["operations"].as_u64().unwrap() > 0);
    assert_no_bench_environment(&dir, &server, report["environment"]["id"].as_str().unwrap());

    assert!(super::sigterm(&mut server.child).success());
    let _ = std::fs::remove_dir_all(&dir);
}
