//! The `blit` binary as a user runs it: arguments, exit codes, messages, prompts, JSON,
//! history, and what a killed run leaves behind.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use blit_test_support::{self as support, Fixture, assert_same_tree};

const PLAIN: support::Compare = support::Compare {
    xattrs: false,
    hard_links: false,
    owner: false,
};

/// `blit` with its history kept inside the fixture and no terminal on stdin.
fn blit(fx: &Fixture) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_blit"));
    c.env("XDG_STATE_HOME", fx.path("state"))
        .stdin(Stdio::null());
    c
}

fn run(fx: &Fixture, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = blit(fx);
    for a in args {
        c.arg(a);
    }
    c.output().expect("blit runs")
}

/// `blit copy src/ dst`, which must succeed: the starting point of many tests.
fn copy_contents(fx: &Fixture) {
    let o = run(fx, &[&"copy", &fx.src_contents(), &fx.dst]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn copy_follows_the_trailing_slash_rule() {
    let fx = Fixture::new();
    fx.file("a/f", b"x");
    let o = run(&fx, &[&"copy", &fx.src_contents(), &fx.dst]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(fx.dst.join("a/f").exists());
    let o = run(&fx, &[&"copy", &fx.src, &fx.dst]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(fx.dst.join("src/a/f").exists());
}

#[test]
fn missing_source_exits_2_naming_it() {
    let fx = Fixture::new();
    let missing = fx.path("no-such-dir");
    let o = run(&fx, &[&"copy", &missing, &fx.dst]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("no-such-dir") && err.contains("No such file"),
        "{err}"
    );
    assert!(!fx.dst.exists());
}

#[test]
fn usage_errors_exit_2() {
    let fx = Fixture::new();
    assert_eq!(run(&fx, &[&"copy", &fx.src]).status.code(), Some(2));
    assert_eq!(
        run(
            &fx,
            &[&"copy", &"--checksum", &"--size-only", &fx.src, &fx.dst]
        )
        .status
        .code(),
        Some(2)
    );
    let o = run(
        &fx,
        &[&"copy", &"--exclude", &"a[", &fx.src_contents(), &fx.dst],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("a["), "{}", stderr(&o));
}

#[test]
fn destination_inside_source_is_refused() {
    let fx = Fixture::new();
    fx.file("f", b"x");
    let o = run(&fx, &[&"copy", &fx.src_contents(), &fx.src.join("inner")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("inside source"), "{}", stderr(&o));
    assert!(!fx.src.join("inner").exists());
}

#[test]
fn destructive_runs_need_yes_without_a_terminal() {
    let fx = Fixture::new();
    fx.file("f", b"x");
    copy_contents(&fx);
    support::write(&fx.dst.join("extra"), b"keep me unless confirmed");
    for verb in ["mirror", "move"] {
        let o = run(&fx, &[&verb, &fx.src_contents(), &fx.dst]);
        assert_eq!(o.status.code(), Some(2), "{verb}");
        assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
        assert!(fx.dst.join("extra").exists());
        assert!(fx.src.join("f").exists());
    }
    let o = run(&fx, &[&"mirror", &"--yes", &fx.src_contents(), &fx.dst]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!fx.dst.join("extra").exists());
}

/// Runs `blit ARGS` on a pseudo-terminal (via util-linux `script`), typing `answer`.
fn on_a_terminal(fx: &Fixture, args: &str, answer: &str) -> Option<Output> {
    use std::io::Write;
    let cmdline = format!("{} {args}", env!("CARGO_BIN_EXE_blit"));
    let mut child = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .env("XDG_STATE_HOME", fx.path("state"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(answer.as_bytes()).ok()?;
    child.wait_with_output().ok()
}

#[test]
fn destructive_runs_ask_on_a_terminal() {
    let fx = Fixture::new();
    fx.file("f", b"x");
    copy_contents(&fx);
    support::write(&fx.dst.join("extra"), b"x");
    let args = format!(
        "mirror --no-progress {} {}",
        fx.src_contents().display(),
        fx.dst.display()
    );
    let Some(no) = on_a_terminal(&fx, &args, "n\n") else {
        eprintln!("skipped: util-linux `script` is not available to provide a terminal");
        return;
    };
    assert_eq!(no.status.code(), Some(2), "{}", stdout(&no));
    assert!(stdout(&no).contains("Continue? [y/N]"), "{}", stdout(&no));
    assert!(fx.dst.join("extra").exists());
    let yes = on_a_terminal(&fx, &args, "y\n").unwrap();
    assert!(yes.status.success(), "{}", stdout(&yes));
    assert!(!fx.dst.join("extra").exists());
}

#[test]
fn dry_run_lists_the_plan_and_changes_nothing() {
    let fx = Fixture::new();
    fx.file("new", b"12345");
    fs::create_dir_all(&fx.dst).unwrap();
    support::write(&fx.dst.join("old"), b"x");
    let before = support::snapshot(fx.dir.path(), PLAIN);
    let o = run(&fx, &[&"mirror", &"--dry-run", &fx.src_contents(), &fx.dst]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("would create file new (5 B)"), "{out}");
    assert!(out.contains("would delete file old"), "{out}");
    assert!(
        stderr(&o).contains("would copy 1 files (5 B)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(before, support::snapshot(fx.dir.path(), PLAIN));
}

#[test]
fn json_report_and_verbose_log() {
    let fx = Fixture::new();
    fx.file("a", b"aaa");
    fx.file("d/b", b"bb");
    let o = run(&fx, &[&"copy", &"--json", &fx.src_contents(), &fx.dst]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    assert_eq!(report["files_copied"], 2);
    assert_eq!(report["bytes_copied"], 5);
    assert_eq!(report["mode"], "copy");
    assert!(report["failures"].as_array().unwrap().is_empty());

    fs::write(fx.src.join("a"), b"changed").unwrap();
    let o = run(&fx, &[&"copy", &"-v", &fx.src_contents(), &fx.dst]);
    assert!(stdout(&o).contains("update file a (7 B)"), "{}", stdout(&o));
}

#[test]
fn unreadable_file_is_reported_and_the_rest_copied() {
    let fx = Fixture::new();
    fx.file("ok/one", b"1");
    fx.file("ok/two", b"2");
    let secret = fx.file("secret", b"no");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = blit(&fx);
    if support::is_root() {
        // Root reads anything: run blit as nobody, with a tree nobody can otherwise use.
        if Command::new("setpriv").arg("--version").output().is_err() {
            eprintln!("skipped: running as root without setpriv to drop privileges");
            return;
        }
        for p in [fx.dir.path(), &fx.src, &fx.src.join("ok")] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o777)).unwrap();
        }
        cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_blit"),
        ])
        .env("XDG_STATE_HOME", fx.path("state"))
        .stdin(Stdio::null());
    }
    let o = cmd
        .arg("copy")
        .arg(fx.src_contents())
        .arg(&fx.dst)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("secret") && err.contains("Permission denied"),
        "{err}"
    );
    assert_eq!(fs::read(fx.dst.join("ok/one")).unwrap(), b"1");
    assert_eq!(fs::read(fx.dst.join("ok/two")).unwrap(), b"2");
    assert!(!fx.dst.join("secret").exists());
}

#[test]
fn history_is_recorded_and_shown() {
    let fx = Fixture::new();
    fx.file("f", b"hello");
    copy_contents(&fx);
    assert!(
        run(
            &fx,
            &[
                &"copy",
                &"--no-history",
                &fx.src_contents(),
                &fx.path("other")
            ]
        )
        .status
        .success()
    );
    let o = run(&fx, &[&"diagnostics", &"perf", &"--json"]);
    assert!(o.status.success());
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "--no-history must not record");
    assert_eq!(lines[0]["files"], 1);
    assert_eq!(lines[0]["bytes"], 5);
    let table = stdout(&run(&fx, &[&"diagnostics", &"perf"]));
    assert!(table.contains("small files"), "{table}");
}

#[test]
fn completions_are_generated() {
    let fx = Fixture::new();
    let o = run(&fx, &[&"completions", &"bash"]);
    assert!(o.status.success());
    let script = stdout(&o);
    assert!(
        script.contains("_blit") && script.contains("mirror") && script.contains("--max-delete")
    );
}

/// A 1 GiB file whose blocks all differ, quick to write.
fn write_big(path: &Path, len: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    for (i, b) in block.iter_mut().enumerate() {
        *b = (i * 131 % 251) as u8;
    }
    for i in 0..len / block.len() {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        f.write_all(&block).unwrap();
    }
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    support::names(dir)
        .into_iter()
        .filter(|n| n.as_encoded_bytes().starts_with(b".blit-"))
        .map(|n| dir.join(n))
        .collect()
}

#[test]
fn a_killed_run_leaves_no_partial_file_and_the_next_run_completes() {
    let fx = Fixture::new();
    for i in 0..200 {
        fx.file(
            format!("small/{i:03}"),
            format!("small file {i}").as_bytes(),
        );
    }
    write_big(&fx.src.join("big.bin"), 1 << 30);
    fs::create_dir_all(&fx.dst).unwrap();

    let mut child = blit(&fx)
        .args(["copy", "--no-progress"])
        .arg(fx.src_contents())
        .arg(&fx.dst)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while temp_files(&fx.dst).is_empty() && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let killed = status.code().is_none();
    eprintln!(
        "killed mid-copy: {killed}; temp files: {:?}",
        temp_files(&fx.dst)
    );

    // Whatever exists under a final name is complete.
    let source = support::snapshot(&fx.src, PLAIN);
    for (path, node) in support::snapshot(&fx.dst, PLAIN) {
        if node.kind == "file" && !path.as_os_str().as_encoded_bytes().starts_with(b".blit-") {
            let original = source.get(&path).expect("only source files appear");
            assert_eq!(
                node.hash, original.hash,
                "{path:?} is under its final name but incomplete"
            );
        }
    }

    let o = run(
        &fx,
        &[&"copy", &"--resume", &"--json", &fx.src_contents(), &fx.dst],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    eprintln!(
        "resumed {} bytes, copied {}",
        report["bytes_resumed"], report["bytes_copied"]
    );
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
    assert!(temp_files(&fx.dst).is_empty());
}

#[test]
fn thousands_of_deletes_with_few_descriptors() {
    let fx = Fixture::new();
    for i in 0..1500 {
        fx.dir(format!("d{i:04}"));
    }
    copy_contents(&fx);
    for i in 0..1500 {
        support::write(&fx.dst.join(format!("d{i:04}/extra")), b"x");
    }
    // A hard limit of 256 descriptors: one open directory per pending delete would fail.
    let o = Command::new("prlimit")
        .args([
            "--nofile=256:256",
            env!("CARGO_BIN_EXE_blit"),
            "mirror",
            "--yes",
        ])
        .arg(fx.src_contents())
        .arg(&fx.dst)
        .env("XDG_STATE_HOME", fx.path("state"))
        .stdin(Stdio::null())
        .output();
    let Ok(o) = o else {
        eprintln!("skipped: util-linux prlimit is not available");
        return;
    };
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("deleted 1500"), "{}", stderr(&o));
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
}
