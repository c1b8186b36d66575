//! The real `dossier-relay` binary, driven as an operator would (STYLE.md practice 6):
//! `init --json`, `enroll`, `serve` printing `listening ADDR`, a node exchange over it,
//! then SIGTERM and a clean exit 0.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Client, Party, body, bundle_id};
use dossier_wire::{ClientMessage, ServerMessage};

const BIN: &str = env!("CARGO_BIN_EXE_dossier-relay");

fn relay_cmd(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("DOSSIER_RELAY_LOG", "info")
        .output()
        .expect("run dossier-relay")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Starts `serve` and waits for its `listening ADDR` line.
fn serve(data: &Path) -> (Child, std::net::SocketAddr, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--data", data.to_str().unwrap()])
        .env("DOSSIER_RELAY_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serve prints `listening ADDR`");
    let addr = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");
    (child, addr, rx)
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "relay did not exit in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn init_enroll_serve_exchange_and_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("relay");
    let data_s = data.to_str().unwrap();

    let out = relay_cmd(&[
        "init",
        "--data",
        data_s,
        "--listen",
        "127.0.0.1:0",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&ok(&out)).expect("one JSON document");
    let pin = doc["pin"].as_str().unwrap().to_owned();
    assert!(pin.starts_with("sha256:"), "{pin}");
    assert_eq!(doc["listen"], "127.0.0.1:0");
    assert_eq!(doc.as_object().unwrap().len(), 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&pin),
        "human text on stderr"
    );
    // A second init refuses.
    let again = relay_cmd(&["init", "--data", data_s, "--listen", "127.0.0.1:0"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    let a = Party::new("us-a");
    let b = Party::new("th-b");
    for p in [&a, &b] {
        let card = tmp.path().join(format!("{}.card", p.id));
        std::fs::write(&card, p.card_bytes()).unwrap();
        let text = ok(&relay_cmd(&[
            "enroll",
            "--data",
            data_s,
            card.to_str().unwrap(),
        ]));
        assert!(text.contains(p.id.as_str()));
        assert!(text.contains(p.card.fingerprint().as_str()), "{text}");
    }

    let (mut child, addr, more_stdout) = serve(&data);
    assert_eq!(
        std::fs::read_to_string(data.join("serving.addr"))
            .unwrap()
            .trim(),
        addr.to_string()
    );
    // Operator commands say the relay is running, rather than corrupting anything.
    let busy = relay_cmd(&["revoke", "--data", data_s, "th-b"]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("stop the relay"));

    let sender = Client::connect(addr, &pin).await;
    assert!(matches!(
        sender.auth(&a).await,
        ServerMessage::Welcome { .. }
    ));
    let id = bundle_id();
    let ciphertext = body(256 * 1024, 42);
    let (_, reply) = sender.deposit(&id, &[&b], &ciphertext).await;
    assert!(
        matches!(reply, ServerMessage::DepositAccepted { .. }),
        "{reply:?}"
    );
    let recipient = Client::connect(addr, &pin).await;
    assert!(matches!(
        recipient.auth(&b).await,
        ServerMessage::Welcome { .. }
    ));
    let (_, bytes) = recipient.fetch(&id, 0).await;
    assert!(bytes == ciphertext);
    assert_eq!(
        recipient
            .request(&ClientMessage::Ack {
                bundle_id: id.clone()
            })
            .await,
        ServerMessage::Acked
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "serve exited with {status:?}");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("deposit accepted"), "{log}");
    assert!(log.contains(&id), "logs name bundle ids");
    assert!(
        !log.contains("Facility us-a"),
        "logs carry no display names"
    );
    assert!(!data.join("serving.addr").exists());
    assert_eq!(
        more_stdout.recv_timeout(Duration::from_secs(5)).ok(),
        None,
        "serve prints exactly one line on stdout"
    );
    // The relay is stopped: the operator's commands work again.
    ok(&relay_cmd(&["revoke", "--data", data_s, "th-b"]));
}

#[test]
fn usage_errors_exit_2() {
    let out = relay_cmd(&["init", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    let out = relay_cmd(&["serve", "--data", "/nonexistent/dossier-relay-test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dossier-relay init"));
}
