//! The runtime proxies' black-box self-test (`runtimes/selftest.py`): every proxy started on
//! its own socket and driven over HTTP through the behaviours of the runtime contract
//! (init/run, results, errors, environment, log tagging and sentinels, concurrency, zips).

use std::process::Command;

#[test]
fn every_proxy_passes_its_self_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runtimes");
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("-c")
                .arg("0")
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("python3 is needed to run the proxy self-test");
    let out = Command::new(python)
        .arg(dir.join("selftest.py"))
        .args(["node", "python", "native", "--bench", "50"])
        .output()
        .expect("run selftest.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("FAIL"))
        .collect();
    assert!(
        out.status.success() && failed.is_empty(),
        "self-test failed ({}):\n{}\n{stdout}\n{}",
        out.status,
        failed.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
