//! Two agents in separate network namespaces (as root).

use std::fs;
use std::process::{Command, Stdio};

use blit_test_support::agent::{Agent, binary};
use blit_test_support::{self as support, Fixture, assert_same_tree};

use crate::*;

/// Two network namespaces joined by a veth pair, removed when dropped.
struct Netns {
    names: [String; 2],
    addrs: [String; 2],
}

impl Netns {
    /// `None` (with the reason printed) when this cannot run here.
    fn create() -> Option<Netns> {
        if !support::is_root() {
            eprintln!("skipped: network namespaces need root");
            return None;
        }
        let id = std::process::id() % 200 + 20;
        let names = [format!("blit-a-{id}"), format!("blit-b-{id}")];
        let addrs = [format!("10.231.{id}.1"), format!("10.231.{id}.2")];
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let (a, b) = (&names[0], &names[1]);
        let (va, vb) = (format!("vba{id}"), format!("vbb{id}"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", a],
            vec!["netns", "add", b],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &va, "netns", a],
            vec!["link", "set", &vb, "netns", b],
        ];
        let ns = Netns {
            names: names.clone(),
            addrs: addrs.clone(),
        };
        if !steps.iter().all(|s| ip(s)) {
            eprintln!("skipped: could not create network namespaces (no `ip`, or not permitted)");
            return None;
        }
        let a_cidr = format!("{}/24", addrs[0]);
        let b_cidr = format!("{}/24", addrs[1]);
        let inside: Vec<Vec<&str>> = vec![
            vec!["netns", "exec", a, "ip", "addr", "add", &a_cidr, "dev", &va],
            vec!["netns", "exec", b, "ip", "addr", "add", &b_cidr, "dev", &vb],
            vec!["netns", "exec", a, "ip", "link", "set", &va, "up"],
            vec!["netns", "exec", b, "ip", "link", "set", &vb, "up"],
            vec!["netns", "exec", a, "ip", "link", "set", "lo", "up"],
            vec!["netns", "exec", b, "ip", "link", "set", "lo", "up"],
        ];
        if !inside.iter().all(|s| ip(s)) {
            eprintln!("skipped: could not configure the namespaces");
            return None;
        }
        Some(ns)
    }

    fn exec(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.names[i]]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "delete", n]).status();
        }
    }
}

#[test]
fn agents_in_separate_network_namespaces() {
    let Some(ns) = Netns::create() else {
        return;
    };
    let fx = Fixture::new();
    rich_tree(&fx);
    let (mod_a, mod_b) = (fx.path("a"), fx.path("b"));
    fs::create_dir_all(&mod_a).unwrap();
    fs::create_dir_all(&mod_b).unwrap();
    let a = Agent::start_with(&ns.exec(0), &[&"--bind", &ns.addrs[0], &"--root", &mod_a]);
    let source_a = format!("{}:{}", ns.addrs[0], a.port);
    let b = Agent::start_with(
        &ns.exec(1),
        &[
            &"--bind",
            &ns.addrs[1],
            &"--root",
            &mod_b,
            &"--job-source",
            &source_a,
        ],
    );
    let in_b = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns.names[1]]).arg(binary("blit"));
        c.env("XDG_STATE_HOME", fx.path("state"))
            .stdin(Stdio::null());
        for a in args {
            c.arg(a);
        }
        c.output().unwrap()
    };
    // A client in namespace B pushes across the veth to the agent in namespace A…
    let url_a = |p: &str| format!("{}:{}:/default/{p}", ns.addrs[0], a.port);
    let url_b = |p: &str| format!("{}:{}:/default/{p}", ns.addrs[1], b.port);
    let err = ok(&in_b(&[
        &"copy",
        &"-H",
        &fx.src_contents(),
        &url_a("pushed"),
    ]));
    assert!(err.contains("tcp stream"), "{err}");
    assert_same_tree(&fx.src, &mod_a.join("pushed"), FULL);
    // …and agent B pulls from agent A on the client's behalf.
    ok(&in_b(&[
        &"copy",
        &"-H",
        &url_a("pushed/"),
        &url_b("copied"),
    ]));
    assert_same_tree(&fx.src, &mod_b.join("copied"), FULL);
    // The loopback-bound default would not be reachable from the other namespace.
    let o = in_b(&[&"ls", &format!("127.0.0.1:{}:/default/", a.port)]);
    assert_eq!(o.status.code(), Some(2));
}
