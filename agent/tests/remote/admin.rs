//! `blit list|ls|find|du|df|rm` and remote path completion against a real agent.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use blit_test_support::Fixture;
use blit_test_support::agent::{Agent, binary};

use crate::*;

#[test]
fn admin_commands_against_an_agent() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir_all(module.join("logs/old")).unwrap();
    fs::write(module.join("logs/a.log"), b"aaaa").unwrap();
    fs::write(module.join("logs/old/b.log"), b"bb").unwrap();
    fs::write(module.join("readme"), b"r").unwrap();
    fs::set_permissions(module.join("readme"), fs::Permissions::from_mode(0o644)).unwrap();
    let agent = Agent::start(&[
        &"--module",
        &format!("data={}", module.display()),
        &"--module",
        &format!("ro={}:ro", module.display()),
    ]);
    let host = format!("127.0.0.1:{}", agent.port);
    let o = blit(&fx, &[&"list", &host]);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    ok(&o);
    assert!(
        listed.contains("data") && listed.contains("ro "),
        "{listed}"
    );

    let o = blit(&fx, &[&"ls", &agent.url("data", "")]);
    ok(&o);
    let ls = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        ls.contains("logs") && ls.contains("readme") && ls.contains("-0644"),
        "{ls}"
    );

    let o = blit(&fx, &[&"find", &agent.url("data", ""), &"*.log"]);
    ok(&o);
    let found = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        found.lines().collect::<Vec<_>>(),
        ["logs/a.log", "logs/old/b.log"],
        "{found}"
    );

    let o = blit(&fx, &[&"du", &"-d", &"1", &agent.url("data", "")]);
    ok(&o);
    let du = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(du.contains("logs") && du.lines().count() == 2, "{du}");

    ok(&blit(&fx, &[&"df", &agent.url("data", "")]));

    let o = blit(&fx, &[&"rm", &agent.url("data", "readme")]);
    fails(&o, 2, "pass --yes");
    assert!(module.join("readme").exists());
    let o = blit(&fx, &[&"rm", &"--yes", &agent.url("data", "logs")]);
    fails(&o, 2, "recursively");
    ok(&blit(
        &fx,
        &[&"rm", &"--yes", &"-r", &agent.url("data", "logs")],
    ));
    assert!(!module.join("logs").exists());
    let o = blit(&fx, &[&"rm", &"--yes", &"-r", &agent.url("data", "")]);
    fails(&o, 2, "module root");
}

#[test]
fn remote_paths_complete_in_the_shell() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir_all(module.join("logs/old")).unwrap();
    fs::write(module.join("logs/a.log"), b"a").unwrap();
    fs::write(module.join("lone"), b"l").unwrap();
    let agent = Agent::start(&[&"--module", &format!("data={}", module.display())]);
    let host = format!("127.0.0.1:{}", agent.port);
    let complete = |word: &str| {
        let o = blit(&fx, &[&"complete-remote", &word]);
        ok(&o);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(complete(&format!("{host}:/da")), [format!("{host}:/data/")]);
    assert_eq!(
        complete(&format!("{host}:/data/lo")),
        [format!("{host}:/data/logs/"), format!("{host}:/data/lone")]
    );
    assert_eq!(
        complete(&format!("{host}:/data/logs/")),
        [
            format!("{host}:/data/logs/a.log"),
            format!("{host}:/data/logs/old/")
        ]
    );
    assert_eq!(
        complete(&format!("blit://{host}/data/logs/o")),
        [format!("blit://{host}/data/logs/old/")]
    );
    assert!(
        complete(&format!("{host}:/data/../")).is_empty(),
        "no escape, and no noise"
    );

    // The bash script asks blit for them (readline splits words at ':').
    let script = blit(&fx, &[&"completions", &"bash"]);
    ok(&script);
    let script_path = fx.path("blit.bash");
    fs::write(&script_path, &script.stdout).unwrap();
    let bin_dir = binary("blit").parent().unwrap().to_owned();
    let line = format!("blit copy {host}:/data/lo");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=(blit copy x); COMP_CWORD=2; _blit_remote; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script_path.display()
        ))
        .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()))
        .output()
        .unwrap();
    let replies = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        replies.lines().collect::<Vec<_>>(),
        ["/data/logs/", "/data/lone"],
        "{replies} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scan_finds_advertised_agents_and_forgets_stopped_ones() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let mut agent = Agent::start_advertised(&[
        &"--module",
        &format!("scanned={}", module.display()),
        &"--token",
        &"t",
    ]);
    let address = format!("127.0.0.1:{}", agent.port);
    let line_for = |out: &str| {
        out.lines()
            .find(|l| l.contains(&address))
            .map(str::to_owned)
    };
    let found = blit(&fx, &[&"scan", &"--timeout", &"2"]);
    let stdout = String::from_utf8_lossy(&found.stdout).into_owned();
    let line = line_for(&stdout).unwrap_or_else(|| panic!("agent not found in: {stdout:?}"));
    let protocol = format!(
        "protocol {}.{}",
        blit_core::wire::pb::PROTOCOL_MAJOR,
        blit_core::wire::pb::PROTOCOL_MINOR
    );
    assert!(
        line.contains("modules: scanned") && line.contains("token") && line.contains(&protocol),
        "{line}"
    );
    assert!(agent.terminate().success());
    let after = blit(&fx, &[&"scan", &"--timeout", &"1.5"]);
    let stdout = String::from_utf8_lossy(&after.stdout).into_owned();
    assert_eq!(line_for(&stdout), None, "a stopped agent is gone: {stdout}");
}
