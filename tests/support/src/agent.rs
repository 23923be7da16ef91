//! Real `blitd` processes for tests: started on `127.0.0.1:0`, their ports read from the
//! line they print, stopped (by pid) when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A built binary of this workspace (`blit`, `blitd`), found beside the test executable's
/// directory (`target/<profile>/deps/..`). `cargo test --workspace` builds them all.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` or `cargo test --workspace`",
        path.display()
    );
    path
}

/// A running `blitd`.
pub struct Agent {
    child: Child,
    pub port: u16,
    pub data_port: u16,
    pub http_port: Option<u16>,
}

impl Agent {
    /// Starts `blitd --port 0 --no-mdns` with `args` (modules, tokens, …) and waits until
    /// it listens.
    pub fn start(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Agent {
        Agent::start_with(&[], args)
    }

    /// Like `start`, with `blitd` run through `prefix` (e.g. `ip netns exec NS`), which
    /// must exec it so that the pid is blitd's.
    pub fn start_with(prefix: &[&str], args: &[&dyn AsRef<std::ffi::OsStr>]) -> Agent {
        Agent::spawn(prefix, false, args)
    }

    /// Like `start`, but advertised over mDNS.
    pub fn start_advertised(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Agent {
        Agent::spawn(&[], true, args)
    }

    fn spawn(prefix: &[&str], advertise: bool, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Agent {
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(binary("blitd"));
                c
            }
            None => Command::new(binary("blitd")),
        };
        cmd.args(["--port", "0"]);
        if !advertise {
            cmd.arg("--no-mdns");
        }
        for a in args {
            cmd.arg(a);
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("blitd starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("blitd prints where it listens");
        let port_after = |key: &str| -> Option<u16> {
            let at = line.find(key)? + key.len();
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        // "blitd listening on ADDR:PORT (data port N[, http ADDR:PORT])"
        let control_port = line
            .split_whitespace()
            .nth(3)
            .and_then(|addr| addr.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok());
        let (Some(port), Some(data_port)) = (control_port, port_after("data port ")) else {
            let _ = child.kill();
            panic!("unexpected first line from blitd: {line:?}");
        };
        let http_port = line.find("http ").and_then(|i| {
            let rest = &line[i + 5..];
            rest.rsplit_once(':')
                .and_then(|(_, p)| p.trim_end_matches([')', '\n']).parse().ok())
        });
        Agent {
            child,
            port,
            data_port,
            http_port,
        }
    }

    /// `127.0.0.1:PORT:/module/path` for this agent.
    pub fn url(&self, module: &str, path: &str) -> String {
        format!("127.0.0.1:{}:/{module}/{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        self.child.wait().expect("blitd exits")
    }

    /// What the process holds now (read from `/proc`): the bound attacks are checked
    /// against.
    pub fn usage(&self) -> Usage {
        Usage::of(self.child.id())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a process holds: resident memory, threads and open file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub rss_bytes: u64,
    pub threads: u64,
    pub fds: u64,
}

impl Usage {
    /// Reads `/proc/PID/status` and counts `/proc/PID/fd`.
    pub fn of(pid: u32) -> Usage {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is running");
        let field = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .expect("/proc/PID/fd is readable");
        Usage {
            rss_bytes: field("VmRSS:") * 1024,
            threads: field("Threads:"),
            fds,
        }
    }

    /// Panics unless `self` stays within `limit` (each field checked), naming `what`.
    pub fn assert_within(&self, limit: Usage, what: &str) {
        assert!(
            self.rss_bytes <= limit.rss_bytes
                && self.threads <= limit.threads
                && self.fds <= limit.fds,
            "{what}: the agent holds {self:?}, more than {limit:?}"
        );
    }
}

/// Panics unless a transfer under attack (`loaded`) took at most twice its unloaded time
/// (`unloaded`), with `slack` added for a shared, noisy machine.
pub fn assert_not_starved(
    unloaded: std::time::Duration,
    loaded: std::time::Duration,
    slack: std::time::Duration,
) {
    assert!(
        loaded <= unloaded * 2 + slack,
        "a legitimate transfer took {loaded:?} under attack, {unloaded:?} without"
    );
}
