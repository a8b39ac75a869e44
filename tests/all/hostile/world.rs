//! A server in a hostile world (issue 20): under `ulimit -n 1024`, 2,000 idle connections,
//! 200 trickling clients and a webhook flood at once. A normal sender and an admin still get
//! answers within a second, SIGTERM ends the process within the grace period plus 2 s, and
//! every acknowledged webhook is in the store at the next start. Loopback only; every loop
//! ends when the test says stop or at its own deadline.

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_tests::{FlowDir, Weir, get, post_with, wait_for};

const IDLE: usize = 2000;
const TRICKLING: usize = 200;
const FLOODERS: usize = 4;
/// No loop of the attack outlives this, whatever happens to the test.
const ATTACK_LIMIT: Duration = Duration::from_secs(90);
const GRACE: Duration = Duration::from_secs(3);

fn socket_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("a loopback address")
}

struct Attack {
    stop: Arc<AtomicBool>,
    started: Instant,
}

impl Attack {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && self.started.elapsed() < ATTACK_LIMIT
    }
}

/// Stops the attack when the test ends, also when it fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `TRICKLING` clients, half sending a request head and half a body, a byte per client every
/// 200 ms; a client the server closed connects again.
fn trickling_clients(
    attack: Arc<Attack>,
    addr: SocketAddr,
    path: String,
    started: Arc<AtomicUsize>,
) {
    let open = |i: usize| -> Option<TcpStream> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        stream.set_nodelay(true).ok()?;
        let head = if i.is_multiple_of(2) {
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        } else {
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        };
        stream.write_all(head.as_bytes()).ok()?;
        Some(stream)
    };
    let mut clients: Vec<Option<TcpStream>> = (0..TRICKLING).map(open).collect();
    started.store(clients.iter().flatten().count(), Ordering::Relaxed);
    while attack.running() {
        for (i, client) in clients.iter_mut().enumerate() {
            let alive = client.as_mut().is_some_and(|s| s.write_all(b"a").is_ok());
            if !alive && attack.running() {
                *client = open(i);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Posts webhooks as fast as answers come; keeps the run ids of those acknowledged.
fn flood(attack: Arc<Attack>, url: String, acknowledged: Arc<Mutex<Vec<String>>>) {
    let mut n = 0u64;
    while attack.running() {
        n += 1;
        let body = format!("{{\"n\": {n}}}");
        if let Ok(answer) = weir_tests::send("POST", &url, "application/json", body.as_bytes())
            && answer.status == 202
            && let Some(id) = answer.json()["run_id"].as_str()
        {
            acknowledged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(id.to_owned());
        }
    }
}

/// Every run id the admin API lists.
fn stored_runs(weir: &Weir) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/runs?limit=1000&cursor={c}"),
            None => "/api/runs?limit=1000".to_owned(),
        };
        let page = weir.api(&path).json();
        for run in page["runs"].as_array().into_iter().flatten() {
            if let Some(id) = run["id"].as_str().or(run["run_id"].as_str()) {
                ids.insert(id.to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
}

#[test]
fn under_ulimit_1024_idle_trickling_and_flooding_clients_keep_no_one_out_and_sigterm_ends_in_time()
{
    let flows = FlowDir::empty();
    flows.write(
        "echo.toml",
        "name = \"Echo\"\n\n[[steps]]\nid = \"echo\"\nplugin = \"transform\"\ninput = \"$.webhook.body\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("weir.redb");
    let grace = format!("{}s", GRACE.as_secs());
    let weir = Weir::start_limited(
        flows.path(),
        &db,
        &["--shutdown-grace", &grace],
        &[],
        Some((1024, 1024)),
    );
    let url = weir.webhook_url("echo");
    let path = url
        .trim_start_matches("http://")
        .split_once('/')
        .map(|(_, p)| format!("/{p}"))
        .unwrap();
    let addr = socket_addr(&weir.webhook);

    let attack = Arc::new(Attack {
        stop: Arc::new(AtomicBool::new(false)),
        started: Instant::now(),
    });
    let _stop = StopOnDrop(attack.stop.clone());
    let opened = Arc::new(AtomicUsize::new(0));
    let trickling = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (attack, opened) = (attack.clone(), opened.clone());
        threads.push(std::thread::spawn(move || {
            idle_clients(attack, addr, opened, IDLE / 4)
        }));
    }
    {
        let (attack, trickling, path) = (attack.clone(), trickling.clone(), path.clone());
        threads.push(std::thread::spawn(move || {
            trickling_clients(attack, addr, path, trickling)
        }));
    }
    for _ in 0..FLOODERS {
        let (attack, url, acknowledged) = (attack.clone(), url.clone(), acknowledged.clone());
        threads.push(std::thread::spawn(move || flood(attack, url, acknowledged)));
    }

    wait_for(Duration::from_secs(60), "the attack to be in place", || {
        let flooding = !acknowledged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        (opened.load(Ordering::Relaxed) >= IDLE
            && trickling.load(Ordering::Relaxed) >= TRICKLING / 2
            && flooding)
            .then_some(())
    });

    // A normal sender and an admin, each on a connection of its own, in the thick of it.
    for _ in 0..3 {
        let started = Instant::now();
        let answer = post_with(&url, "application/json", b"{\"normal\": true}", &[]);
        let took = started.elapsed();
        assert_eq!(answer.status, 202);
        acknowledged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(answer.json()["run_id"].as_str().unwrap().to_owned());
        assert!(took < Duration::from_secs(1), "a webhook took {took:?}");
        let started = Instant::now();
        let answer = get(&format!("{}/api/health", weir.admin));
        let took = started.elapsed();
        assert_eq!(answer.status, 200);
        assert!(
            took < Duration::from_secs(1),
            "an admin request took {took:?}"
        );
    }

    // SIGTERM with the attack still on.
    let stopped = weir.stop_within(GRACE + Duration::from_secs(10));
    attack.stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let (status, took) = stopped.expect("weir did not exit within grace + 10 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        took <= GRACE + Duration::from_secs(2),
        "SIGTERM took {took:?} with a {GRACE:?} grace"
    );

    // Nothing acknowledged is lost.
    let acknowledged = acknowledged
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert!(acknowledged.len() > 3, "the flood got no answers");
    let weir = Weir::start(flows.path(), &db);
    let stored = stored_runs(&weir);
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged webhooks are not stored: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Opens `count` connections that never send a byte and holds them until stopped.
fn idle_clients(attack: Arc<Attack>, addr: SocketAddr, opened: Arc<AtomicUsize>, count: usize) {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        if !attack.running() {
            break;
        }
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            held.push(stream);
        }
        opened.fetch_add(1, Ordering::Relaxed);
    }
    while attack.running() {
        std::thread::sleep(Duration::from_millis(50));
    }
}
