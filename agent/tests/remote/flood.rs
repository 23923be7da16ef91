//! Floods before authentication: slow and idle data-plane connections, idle control-plane
//! connections under a low descriptor limit, and gRPC messages that declare a huge size
//! and stall. Each attack runs against a real `blitd`; the agent must stay within bounded
//! threads, memory and descriptors, close what it refuses, and keep serving legitimate
//! clients at their usual speed.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use blit_agent::limits;
use blit_test_support::Fixture;
use blit_test_support::agent::{Agent, Usage, assert_not_starved, binary};

use crate::*;

/// Where the attacks come from: another loopback address than the legitimate client's
/// (127.0.0.1), as another pod of a cluster would.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Slack for a shared, noisy two-core machine.
const SLACK: Duration = Duration::from_secs(2);
/// Longest any legitimate command here may take before the test calls it hung.
const HUNG: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

/// Runs `blit` like `crate::blit`, but kills it after `limit`: `None` when it hung.
fn blit_within(
    fx: &Fixture,
    args: &[&dyn AsRef<std::ffi::OsStr>],
    limit: Duration,
) -> (Option<Output>, Duration) {
    let mut c = Command::new(binary("blit"));
    c.env("XDG_STATE_HOME", fx.path("state"))
        .env_remove("BLIT_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for a in args {
        c.arg(a);
    }
    let started = Instant::now();
    let mut child = c.spawn().expect("blit runs");
    while started.elapsed() < limit {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return (Some(out), started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    (None, started.elapsed())
}

/// Runs `blit` and insists it succeeded in time; returns how long it took.
fn blit_ok(fx: &Fixture, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Duration {
    let (out, took) = blit_within(fx, args, HUNG);
    let out = out.unwrap_or_else(|| panic!("blit hung for {HUNG:?}"));
    ok(&out);
    took
}

/// `n` TCP connections from `from` to `port` on 127.0.0.1.
fn connect_many(from: IpAddr, port: u16, n: usize) -> Vec<TcpStream> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, bind, connect, socket_with};
    (0..n)
        .map(|_| {
            // Close-on-exec: agents started meanwhile by other tests must not inherit them.
            let fd = socket_with(
                AddressFamily::INET,
                SocketType::STREAM,
                SocketFlags::CLOEXEC,
                None,
            )
            .expect("socket");
            bind(&fd, &SocketAddr::new(from, 0)).expect("bind the attacker's address");
            connect(&fd, &SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)).expect("connect");
            TcpStream::from(fd)
        })
        .collect()
}

/// Whether the agent closed its end of `s` (reads end or fail; what it sent is skipped).
fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Waits until the agent closed every stream of `conns` or `limit` passed; returns how
/// many it closed.
fn wait_closed(conns: &mut [TcpStream], limit: Duration) -> usize {
    let started = Instant::now();
    loop {
        let closed = conns.iter_mut().map(closed_by_peer).filter(|c| *c).count();
        if closed == conns.len() || started.elapsed() >= limit {
            return closed;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// CPU time (user + system, all threads) the process has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15, in clock ticks of USER_HZ (100 on Linux).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Duration::from_millis((fields[10] + fields[11]) * 10)
}

/// The largest of each field over a few samples.
fn peak_usage(agent: &Agent, samples: usize) -> Usage {
    let mut peak = agent.usage();
    for _ in 1..samples {
        std::thread::sleep(Duration::from_millis(100));
        let u = agent.usage();
        peak.rss_bytes = peak.rss_bytes.max(u.rss_bytes);
        peak.threads = peak.threads.max(u.threads);
        peak.fds = peak.fds.max(u.fds);
    }
    peak
}

/// An agent serving `module` whose log goes to the returned file, started through
/// `prefix` (a shell command line that must `exec` what follows it).
fn logged_agent(
    fx: &Fixture,
    prefix: &str,
    args: &[&dyn AsRef<std::ffi::OsStr>],
) -> (Agent, PathBuf) {
    let log = fx.path("blitd.log");
    let script = format!("exec {prefix} \"$0\" \"$@\" 2>'{}'", log.display());
    (Agent::start_with(&["sh", "-c", &script], args), log)
}

/// Lines of `log` that contain `needle`.
fn log_lines(log: &std::path::Path, needle: &str) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// 50 small files to push.
fn fifty_files(fx: &Fixture) {
    for i in 0..50u8 {
        fx.file(format!("f{i:02}"), &[i; 1000]);
    }
}

/// Row 5: hundreds of data connections trickling their preface (1 byte every 4 s), then
/// thousands that send nothing. Before, each one took a blocking thread for as long as it
/// dripped: the pool filled (3 → 515 threads), `ls` and pushes timed out, and 2,000 idle
/// connections made a push fail.
#[test]
fn slow_and_idle_data_connections_neither_starve_sessions_nor_pile_up() {
    blit_core::sys::raise_fd_limit();
    let fx = Fixture::new();
    fifty_files(&fx);
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module]);
    let push = |to: &str| {
        blit_ok(
            &fx,
            &[&"copy", &fx.src_contents(), &agent.url("default", to)],
        )
    };
    push("warm-up");
    let unloaded = push("unloaded");
    let ls_unloaded = blit_ok(&fx, &[&"ls", &agent.url("default", "")]);
    let before = peak_usage(&agent, 3);

    // 600 connections that drip their preface.
    let attack = Instant::now();
    let slow = Arc::new(std::sync::Mutex::new(connect_many(
        ATTACKER,
        agent.data_port,
        600,
    )));
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = {
        let (slow, stop) = (slow.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for s in slow.lock().unwrap().iter_mut() {
                    let _ = s.write(b"B");
                }
                for _ in 0..40 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let during = peak_usage(&agent, 5);
    eprintln!("600 slow data connections: before {before:?}, during {during:?}");
    let ls = blit_ok(&fx, &[&"ls", &agent.url("default", "")]);
    let loaded = push("under-slow");
    eprintln!("push {unloaded:?} → {loaded:?}, ls {ls_unloaded:?} → {ls:?}");
    // What the agent may hold under either attack: the waiting connections' descriptors.
    let bound = Usage {
        rss_bytes: before.rss_bytes + 64 * MIB,
        threads: before.threads + 8,
        fds: before.fds + limits::DATA_PENDING_PER_PEER as u64 + 32,
    };
    during.assert_within(bound, "600 slow data connections");
    assert_not_starved(unloaded, loaded, SLACK);
    assert_not_starved(ls_unloaded, ls, SLACK);
    // Every one of them is closed: the excess at once, the rest at the admission deadline.
    let limit = limits::DATA_ADMISSION_DEADLINE + Duration::from_secs(5);
    let closed = wait_closed(
        &mut slow.lock().unwrap(),
        limit.saturating_sub(attack.elapsed()),
    );
    stop.store(true, Ordering::Relaxed);
    dripper.join().unwrap();
    assert_eq!(
        closed,
        600,
        "connections left open {:?} after the attack began",
        attack.elapsed()
    );

    // 2,000 connections that send nothing.
    let mut idle = connect_many(ATTACKER, agent.data_port, 2000);
    std::thread::sleep(Duration::from_secs(1));
    let during = peak_usage(&agent, 5);
    eprintln!("2,000 idle data connections: during {during:?}");
    let loaded = push("under-idle");
    eprintln!("push {unloaded:?} → {loaded:?}");
    during.assert_within(bound, "2,000 idle data connections");
    assert_not_starved(unloaded, loaded, SLACK);
    assert_eq!(fs::read_dir(module.join("under-idle")).unwrap().count(), 50);
    let closed = wait_closed(
        &mut idle,
        limits::DATA_ADMISSION_DEADLINE + Duration::from_secs(5),
    );
    assert_eq!(closed, 2000, "idle data connections left open");
}

/// Row 6: idle TCP connections to the gRPC port of an agent limited to 256 descriptors.
/// Before, all were kept open, the accept loop spun on EMFILE (one core busy), `ls` timed
/// out and nothing was logged.
#[test]
fn idle_control_connections_under_a_low_fd_limit_neither_spin_nor_lock_out_ls() {
    blit_core::sys::raise_fd_limit();
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    fs::write(module.join("present"), b"x").unwrap();
    let (agent, log) = logged_agent(&fx, "prlimit --nofile=256:256", &[&"--root", &module]);
    let ls = || {
        blit_within(
            &fx,
            &[&"ls", &agent.url("default", "")],
            Duration::from_secs(30),
        )
    };
    let (out, ls_unloaded) = ls();
    ok(&out.expect("ls answers"));
    let before = peak_usage(&agent, 3);

    // More connections than the agent has descriptors (the kernel completes the
    // handshakes of those it has not accepted yet).
    let attack = Instant::now();
    let mut idle = connect_many(Ipv4Addr::LOCALHOST.into(), agent.port, 300);
    std::thread::sleep(Duration::from_secs(1));
    let cpu_before = cpu_time(agent.pid());
    let measured = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_time(agent.pid()) - cpu_before;
    let wall = measured.elapsed();
    let during = peak_usage(&agent, 3);
    eprintln!(
        "300 idle control connections: before {before:?}, during {during:?}, cpu {cpu:?} in {wall:?}"
    );
    let (out, ls_loaded) = ls();
    let out = out.unwrap_or_else(|| panic!("ls hung under 300 idle connections"));
    let listing = ok(&out);
    eprintln!("ls {ls_unloaded:?} → {ls_loaded:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("present"),
        "ls lists the module: {listing}"
    );
    assert!(
        cpu < wall / 4,
        "the agent used {cpu:?} of CPU in {wall:?} while 300 connections sat idle"
    );
    assert_not_starved(ls_unloaded, ls_loaded, SLACK);
    during.assert_within(
        Usage {
            rss_bytes: before.rss_bytes + 64 * MIB,
            threads: before.threads + 8,
            fds: before.fds + 256 / 8 + 16,
        },
        "300 idle control connections",
    );
    // Every idle connection is closed by the first-request deadline, the excess at once.
    let limit = limits::CONTROL_FIRST_REQUEST_DEADLINE + Duration::from_secs(5);
    let closed = wait_closed(&mut idle, limit.saturating_sub(attack.elapsed()));
    assert_eq!(closed, 300, "idle control connections left open");
    // A few aggregated lines, naming the peer; not one per connection.
    let lines = log_lines(&log, "control connection closed");
    assert!(
        !lines.is_empty() && lines.len() <= 4 && lines.iter().all(|l| l.contains("127.0.0.1")),
        "expected a few aggregated warnings naming the peer, got {lines:#?}"
    );
}

/// Failed authentications were never logged. Now the first is, at once, with the peer's
/// address, and a flood of them is one summary line per interval.
#[test]
fn failed_authentications_are_logged_at_a_rate_limit() {
    use blit_core::agent::CallHeaders;
    use blit_core::wire::pb;
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let (agent, log) = logged_agent(&fx, "", &[&"--root", &module, &"--token", &"s3cret"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // One connection (connecting greets the agent once, without a token: the first
    // failure), then 200 calls with a wrong token on it.
    let conn = rt.block_on(connect(&agent));
    let hello = |token: &'static str| {
        let creds = CallHeaders::new(Some(token)).unwrap();
        let mut c = pb::admin_client::AdminClient::with_interceptor(conn.channel(), creds);
        async move {
            c.hello(pb::HelloRequest {
                protocol_major: pb::PROTOCOL_MAJOR,
                protocol_minor: pb::PROTOCOL_MINOR,
            })
            .await
        }
    };
    let flood = Instant::now();
    rt.block_on(async {
        for _ in 0..200 {
            let refused = hello("wrong").await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        hello("s3cret").await.expect("a valid token still works");
    });
    let first = log_lines(&log, "authentication failed");
    assert_eq!(first.len(), 1, "one line for the first failure: {first:#?}");
    assert!(first[0].contains("127.0.0.1"), "{}", first[0]);
    // The rest in one summary at the end of the interval.
    std::thread::sleep((limits::WARNING_INTERVAL + SLACK).saturating_sub(flood.elapsed()));
    let all = log_lines(&log, "authentication failed");
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all[1].contains("200 more") && all[1].contains("most from 127.0.0.1"),
        "{}",
        all[1]
    );
}

/// A TLS handshake that never finishes (the gRPC port had no handshake timeout; the data
/// port's restarted with every byte) is closed at the deadline on either port, while
/// TLS clients are served meanwhile.
#[test]
fn tls_handshakes_that_never_finish_are_closed() {
    let fx = Fixture::new();
    fifty_files(&fx);
    let pki = blit_test_support::tls::Pki::new(&fx.path("pki"));
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[
        &"--tls-cert",
        &pki.agent_cert,
        &"--tls-key",
        &pki.agent_key,
        &"--root",
        &module,
    ]);
    let push = |to: &str| {
        let dest = agent.url("default", to);
        blit_ok(
            &fx,
            &[&"copy", &"--tls-ca", &pki.ca, &fx.src_contents(), &dest],
        )
    };
    let unloaded = push("unloaded");
    let started = Instant::now();
    let mut half: Vec<TcpStream> = [agent.port, agent.data_port]
        .into_iter()
        .flat_map(|port| connect_many(ATTACKER, port, 20))
        .collect();
    // A TLS record header promising a 512-byte ClientHello, and one byte of it.
    for s in &mut half {
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    }
    let loaded = push("loaded");
    assert_not_starved(unloaded, loaded, SLACK);
    let deadline = limits::CONTROL_FIRST_REQUEST_DEADLINE.max(limits::DATA_ADMISSION_DEADLINE);
    let limit = (deadline + Duration::from_secs(5)).saturating_sub(started.elapsed());
    assert_eq!(
        wait_closed(&mut half, limit),
        40,
        "half handshakes left open"
    );
}

/// A gRPC stream held open in the middle of a message.
struct Stalled {
    /// Kept so the stream stays open.
    _body: h2::SendStream<bytes::Bytes>,
    _client: h2::client::SendRequest<bytes::Bytes>,
    /// The `grpc-status` the agent answered with (`None`: no answer, the stream or
    /// connection was cut).
    answer: tokio::task::JoinHandle<Option<u32>>,
    /// Becomes true when the agent closes the stream's connection.
    closed: tokio::sync::watch::Receiver<bool>,
}

impl Stalled {
    /// The agent's answer, or `None` if none came within `limit`.
    async fn answer(&mut self, limit: Duration) -> Option<u32> {
        let answer = tokio::time::timeout(limit, &mut self.answer).await;
        answer.ok().and_then(Result::ok).flatten()
    }

    /// Whether the agent closed the connection within `limit`.
    async fn closed(&mut self, limit: Duration) -> bool {
        let closed = tokio::time::timeout(limit, self.closed.wait_for(|c| *c)).await;
        matches!(closed, Ok(Ok(_)))
    }
}

/// Sends `data` on `body` as flow control allows.
async fn send(body: &mut h2::SendStream<bytes::Bytes>, mut data: bytes::Bytes) -> bool {
    while !data.is_empty() {
        body.reserve_capacity(data.len());
        let granted = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| body.poll_capacity(cx)),
        )
        .await;
        let Ok(Some(Ok(n))) = granted else {
            return false;
        };
        let piece = data.split_to(n.min(data.len()));
        if body.send_data(piece, false).is_err() {
            return false;
        }
    }
    true
}

/// Opens `streams` `Transfer` streams on one new connection to `port`; on each, with
/// `Some((declared, sent))`, declares a message of `declared` bytes and sends `sent` of
/// them (with `None`, sends nothing), then stops.
async fn stall(port: u16, streams: usize, message: Option<(u32, u64)>) -> Vec<Stalled> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let (closed_tx, closed) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = connection.await;
        let _ = closed_tx.send(true);
    });
    let mut out = Vec::new();
    for _ in 0..streams {
        let mut client = client.clone().ready().await.unwrap();
        let request =
            http::Request::post(format!("http://127.0.0.1:{port}/blit.v1.Session/Transfer"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        let answer = tokio::spawn(async move {
            let response = response.await.ok()?;
            let status = |h: &http::HeaderMap| -> Option<u32> {
                h.get("grpc-status")?.to_str().ok()?.parse().ok()
            };
            if let Some(s) = status(response.headers()) {
                return Some(s);
            }
            let mut body = response.into_body();
            while body.data().await.is_some() {}
            status(&body.trailers().await.ok()??)
        });
        if let Some((declared, sent)) = message {
            let mut prefix = vec![0u8];
            prefix.extend_from_slice(&declared.to_be_bytes());
            let mut ok = send(&mut body, prefix.into()).await;
            let chunk = bytes::Bytes::from(vec![0u8; MIB as usize]);
            let mut left = sent;
            while ok && left > 0 {
                let n = left.min(MIB);
                ok = send(&mut body, chunk.slice(..n as usize)).await;
                left -= n;
            }
        }
        out.push(Stalled {
            _body: body,
            _client: client,
            answer,
            closed: closed.clone(),
        });
    }
    out
}

/// Row 11: gRPC streams that declare 60 MiB messages and stop 1 MiB short. Before, the
/// agent buffered them (251 MB held until the connections closed, with no tokens
/// configured). Now a message larger than the protocol needs is refused at its header,
/// what is held in unfinished messages has a budget, and a stream stalled in the middle
/// of a message is dropped, with its connection, after a timeout. A session that never
/// sends its `Open` is answered DEADLINE_EXCEEDED.
#[test]
fn grpc_messages_that_declare_a_huge_size_and_stall_are_bounded() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    fs::write(module.join("present"), b"x").unwrap();
    let agent = Agent::start(&[&"--root", &module]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = peak_usage(&agent, 3);
    // A session that never sends its Open: it gets no answer deadline of its own.
    let opened = Instant::now();
    let mut silent = rt.block_on(stall(agent.port, 1, None)).pop().unwrap();

    // The row's attack: refused as soon as each message's header arrives.
    let huge = rt.block_on(async {
        let mut all = Vec::new();
        for _ in 0..4 {
            all.extend(stall(agent.port, 1, Some((60 << 20, 59 * MIB))).await);
        }
        all
    });
    let during = peak_usage(&agent, 3);
    eprintln!("4 streams declaring 60 MiB: before {before:?}, during {during:?}");
    during.assert_within(
        Usage {
            rss_bytes: before.rss_bytes + 32 * MIB,
            threads: before.threads + 8,
            fds: before.fds + 16,
        },
        "4 streams declaring 60 MiB",
    );
    for mut s in huge {
        assert_eq!(
            rt.block_on(s.answer(SLACK)),
            Some(tonic::Code::OutOfRange as u32),
            "a message larger than the limit is refused with OUT_OF_RANGE"
        );
    }

    // The largest message allowed, on 12 streams over 3 connections: the budget for
    // unfinished messages refuses some; the others are dropped when they stall.
    let largest = limits::SESSION_MESSAGE as u32;
    let stalled = rt.block_on(async {
        let mut all = Vec::new();
        for _ in 0..3 {
            all.extend(stall(agent.port, 4, Some((largest, u64::from(largest) - MIB))).await);
        }
        all
    });
    let sent = Instant::now();
    let during = peak_usage(&agent, 5);
    let (out, _) = blit_within(
        &fx,
        &[&"ls", &agent.url("default", "")],
        Duration::from_secs(10),
    );
    ok(&out.expect("ls answers while messages stall"));
    eprintln!("12 stalled streams of the largest message: during {during:?}");
    during.assert_within(
        Usage {
            rss_bytes: before.rss_bytes
                + limits::UNFINISHED_MESSAGES_BUDGET
                + limits::SESSION_MESSAGE as u64
                + 32 * MIB,
            threads: before.threads + 8,
            fds: before.fds + 16,
        },
        "12 stalled streams",
    );
    // Each stream was refused over budget, or its connection is closed once it stalled.
    let (mut refused, mut dropped) = (0, 0);
    let deadline = limits::MESSAGE_STALL_TIMEOUT + Duration::from_secs(5);
    for mut s in stalled {
        let left = deadline.saturating_sub(sent.elapsed());
        if rt.block_on(s.answer(left)) == Some(tonic::Code::ResourceExhausted as u32) {
            refused += 1;
        } else if rt.block_on(s.closed(deadline.saturating_sub(sent.elapsed()))) {
            dropped += 1;
        }
    }
    let after = agent.usage();
    eprintln!(
        "after the stall timeout: {after:?}; {refused} streams refused over budget, {dropped} dropped with their connection"
    );
    assert!(
        refused >= 4,
        "12 × 15 MiB exceed the budget, yet {refused} were refused"
    );
    let left = (limits::REQUEST_TIMEOUT + Duration::from_secs(5)).saturating_sub(opened.elapsed());
    assert_eq!(
        rt.block_on(silent.answer(left)),
        Some(tonic::Code::DeadlineExceeded as u32),
        "a session without its Open is answered DEADLINE_EXCEEDED"
    );
    assert_eq!(
        refused + dropped,
        12,
        "a stalled stream outlived the timeout"
    );
}
