//! `brisk property`, configuration precedence, and the errors a user meets first: nothing
//! configured, bad flags, an unreachable host, a bad key.

mod common;

use common::{GUEST_KEY, Server, Wsk};

#[test]
fn properties_precedence_and_connection_errors() {
    let server = Server::start();
    let wsk = Wsk::unconfigured();

    // Nothing configured: say exactly what to run.
    let run = wsk.fails(&["action", "list"], 1);
    assert!(
        run.stderr.contains("error: no API host is configured")
            && run
                .stderr
                .contains("brisk property set --apihost <host:port> --auth <uuid:key>"),
        "{run:?}"
    );
    let run = wsk.fails(&["--apihost", &server.apihost, "action", "list"], 1);
    assert!(run.stderr.contains("brisk property set --auth"), "{run:?}");

    // property set writes wsk's KEY=value file.
    let out = wsk.ok(&[
        "property",
        "set",
        "--apihost",
        &server.apihost,
        "--auth",
        GUEST_KEY,
        "--namespace",
        "guest",
    ]);
    assert!(
        out.contains(&format!("ok: whisk API host set to {}", server.apihost)),
        "{out}"
    );
    assert!(out.contains("ok: whisk auth set"), "{out}");
    assert!(out.contains("ok: whisk namespace set to guest"), "{out}");
    let file = std::fs::read_to_string(&wsk.config).expect("props file");
    for line in [
        format!("APIHOST={}", server.apihost),
        format!("AUTH={GUEST_KEY}"),
        "NAMESPACE=guest".to_owned(),
    ] {
        assert!(file.lines().any(|l| l == line), "{line} in {file}");
    }

    // property get: one or all.
    let out = wsk.ok(&["property", "get", "--apihost"]);
    assert_eq!(out, format!("whisk API host\t\t{}\n", server.apihost));
    let out = wsk.ok(&["property", "get"]);
    for needle in [
        "whisk auth\t\t",
        "whisk API host",
        "whisk namespace\t\tguest",
        "whisk API version\tv1",
    ] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
    let doc = wsk.json(&["property", "get"]);
    assert_eq!(doc["apihost"], server.apihost.as_str());
    assert_eq!(doc["auth"], GUEST_KEY);
    assert_eq!(doc["namespace"], "guest");

    // The configured namespace is used in names.
    let out = wsk.ok(&["namespace", "list"]);
    assert_eq!(out, "namespaces\nguest\n");
    assert_eq!(
        wsk.json(&["namespace", "list"]),
        serde_json::json!(["guest"])
    );

    // Environment beats the file; flags beat the environment.
    let out = wsk
        .command(&["action", "list"])
        .env("__OW_API_HOST", "http://127.0.0.1:1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: cannot reach the API host http://127.0.0.1:1")
            && stderr.contains("is the server running?"),
        "{stderr}"
    );
    let out = wsk
        .command(&["--apihost", &server.apihost, "action", "list"])
        .env("__OW_API_HOST", "http://127.0.0.1:1")
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let out = wsk
        .command(&["property", "get", "--namespace"])
        .env("__OW_NAMESPACE", "other")
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "whisk namespace\t\tother\n"
    );

    // Bare loopback hosts mean http (a local server); other bare hosts mean https like wsk.
    let bare = server.apihost.trim_start_matches("http://");
    let out = wsk.ok(&["--apihost", bare, "namespace", "list"]);
    assert!(out.contains("guest"), "{out}");
    let run = wsk.fails(&["--apihost", "127.0.0.2:1", "action", "list"], 3);
    assert!(run.stderr.contains("https://127.0.0.2:1"), "{run:?}");

    // A wrong key: the server's message, wsk's exit code (401 - 256), and what to do.
    let bad = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:wrongwrongwrongwrongwrongwrongwrongwrongwrongwrongwrongwrongwrong";
    let run = wsk.fails(&["--auth", bad, "action", "list"], 145);
    assert!(
        run.stderr.contains(
            "error: Unable to obtain the list of actions: The supplied authentication is invalid"
        ) && run.stderr.contains("brisk property set --auth"),
        "{run:?}"
    );
    let run = wsk.fails(&["--auth", "nocolon", "action", "list"], 1);
    assert!(run.stderr.contains("<uuid>:<key>"), "{run:?}");
    let run = wsk.fails(&["--auth", bad, "action", "list", "--json"], 145);
    let err: serde_json::Value = serde_json::from_str(&run.stderr).expect("json error");
    assert_eq!(err["exitCode"], 145);
    assert_eq!(
        err["response"]["error"],
        "The supplied authentication is invalid"
    );

    // Bad flags and arguments exit 2 (wsk's usage code).
    let run = wsk.fails(&["action", "list", "--bogus"], 2);
    assert!(run.stderr.contains("--bogus"), "{run:?}");
    wsk.fails(&["action", "create"], 2);
    wsk.fails(&["action", "get", "a/b/c"], 2);

    // unset removes keys from the file.
    let out = wsk.ok(&["property", "unset", "--namespace", "--auth"]);
    assert!(
        out.contains("ok: whisk namespace unset.") && out.contains("ok: whisk auth unset."),
        "{out}"
    );
    let file = std::fs::read_to_string(&wsk.config).expect("props file");
    assert!(
        !file.contains("NAMESPACE=") && !file.contains("AUTH="),
        "{file}"
    );
    assert!(file.contains("APIHOST="), "{file}");
}
