//! Certificate rotation as Kubernetes does it: a Secret volume's files are symlinks through
//! `..data`, which the kubelet swaps atomically to a new timestamped directory. The webhook must
//! pick up the new pair without a restart and without failing a request, and keep the old pair
//! when the new one is bad.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{object, review, Certs, Webhook};

/// Writes a new `..<version>` directory and atomically repoints `..data` at it, like the kubelet's
/// AtomicWriter.
fn publish(volume: &Path, version: &str, cert: &[u8], key: &[u8]) {
    let dir = volume.join(format!("..{version}"));
    std::fs::create_dir(&dir).expect("version dir");
    std::fs::write(dir.join("tls.crt"), cert).expect("cert");
    std::fs::write(dir.join("tls.key"), key).expect("key");
    let tmp = volume.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, volume.join("..data")).expect("atomic swap");
}

fn read(certs: &Certs, name: &str) -> Vec<u8> {
    std::fs::read(certs.path(name)).expect("read cert file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_through_a_secret_volume_swap_without_failing_a_request() {
    let first = Certs::new();
    let second = Certs::new();
    let volume = tempfile::tempdir().expect("volume");
    let v = volume.path();
    publish(
        v,
        "2026_11_23_01",
        &read(&first, "tls.crt"),
        &read(&first, "tls.key"),
    );
    symlink("..data/tls.crt", v.join("tls.crt")).expect("link");
    symlink("..data/tls.key", v.join("tls.key")).expect("link");

    let wh = Webhook::launch(
        common::Source::Standalone(""),
        "",
        &["--tls-reload-interval", "100ms"],
        first,
        (v.join("tls.crt"), v.join("tls.key")),
    );
    let trusts_second = common::client(&second.ca_pem(), &[b"h2"], None);
    assert!(
        trusts_second.get(wh.url("/healthz")).send().await.is_err(),
        "not yet rotated"
    );

    // Load on connections established with the first certificate while the swap happens.
    let body = review("CREATE", Some(&object("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules: []\n")), None);
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = wh.client();
        let url = wh.url("/validate");
        let body = body.clone();
        let (failures, done, stop) = (failures.clone(), done.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == 200 => done.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(
        v,
        "2026_11_23_02",
        &read(&second, "tls.crt"),
        &read(&second, "tls.key"),
    );

    let until = Instant::now() + Duration::from_secs(10);
    while trusts_second.get(wh.url("/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < until,
            "new certificate not served: {:?}",
            wh.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during rotation"
    );
    assert!(
        done.load(Ordering::Relaxed) > 20,
        "too little load to mean anything"
    );
    assert!(wh.wait_for_log("reloaded serving certificate", Duration::from_secs(2)));

    // A bad pair (key of another certificate) is refused; the current pair stays in service.
    let third = Certs::new();
    publish(
        v,
        "2026_11_23_03",
        &read(&third, "tls.crt"),
        &read(&second, "tls.key"),
    );
    assert!(
        wh.wait_for_log("new serving certificate rejected", Duration::from_secs(5)),
        "{:?}",
        wh.logs()
    );
    let fresh = common::client(&second.ca_pem(), &[b"h2"], None);
    let r = fresh
        .get(wh.url("/healthz"))
        .send()
        .await
        .expect("old pair still served");
    assert_eq!(r.status(), 200);
}
