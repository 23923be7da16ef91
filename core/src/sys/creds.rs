//! Acting as another user on one thread: a root agent reads and writes a module's files
//! as the module's identity (`uid`/`gid`), so the kernel's own permission checks decide
//! what a client may touch.
//!
//! Linux keeps credentials per thread; the C library's `setuid` family broadcasts a change
//! to every thread of the process, the raw system calls used here do not. The effective
//! ids are switched (the filesystem ids follow them), and with them every effective
//! capability is dropped: a thread acting as a user can neither override file permissions
//! nor create device nodes, change owners or set `trusted.*` attributes. The real and saved
//! ids stay root, which is what lets the thread switch back.
//!
//! Where the switch lives decides whether it can leak into another session's work:
//! - threads that outlive a session (tokio's blocking pool reuses its threads, an async
//!   worker runs everyone's tasks) act only inside an [`Acting`] guard, which restores the
//!   process's credentials when it drops — also on a panic — and which cannot cross an
//!   `.await` (it is not `Send`);
//! - threads that end with their session (its worker pool, its receivers) act for good
//!   ([`Identity::act_for_thread`], [`act_in_pool`]).
//!
//! A thread created by an acting thread inherits its credentials but not the record of
//! them; [`reset_thread`] (a thread-start hook for shared pools) and [`Identity::act`]
//! both put such a thread back on the process's credentials first.

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::sync::OnceLock;

use rustix::process::{Gid, Uid};
use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};

use super::io_err;

/// A user and group to act as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

thread_local! {
    /// Whom this thread acts as, when not as the process.
    static ACTING: Cell<Option<Identity>> = const { Cell::new(None) };
}

/// The credentials a thread returns to: the process's own.
struct Home {
    euid: Uid,
    egid: Gid,
    groups: Vec<Gid>,
}

static HOME: OnceLock<Home> = OnceLock::new();

/// Records the process's credentials. Call it before any thread acts (an agent does when
/// it opens its modules); otherwise the first [`Identity::act`] does.
///
/// It also starts rayon's global pool (BLAKE3 hashes large buffers on it when called
/// outside a session's pool), so that pool's threads are never born from an acting
/// thread with its credentials.
pub fn init() -> io::Result<()> {
    if HOME.get().is_none() {
        let _ = rayon::current_num_threads();
        let groups = rustix::process::getgroups().map_err(io_err)?;
        let _ = HOME.set(Home {
            euid: rustix::process::geteuid(),
            egid: rustix::process::getegid(),
            groups,
        });
    }
    Ok(())
}

fn home() -> io::Result<&'static Home> {
    init()?;
    Ok(HOME.get().expect("initialised above"))
}

/// Whether the process runs as root, whatever this thread acts as.
pub fn process_is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    // Before anyone acted every thread has the process's credentials; after, HOME has them.
    *ROOT.get_or_init(|| match HOME.get() {
        Some(home) => home.euid.is_root(),
        None => rustix::process::geteuid().is_root(),
    })
}

/// Whether this thread acts as a module's identity.
pub fn acting() -> bool {
    ACTING.get().is_some()
}

/// Whom this thread acts as, if anyone.
pub fn current() -> Option<Identity> {
    ACTING.get()
}

/// Acting as an identity on this thread until dropped. Not `Send`: it must be dropped
/// on the thread that switched.
#[must_use = "the thread acts as the identity only while the guard lives"]
pub struct Acting {
    /// False for a guard nested in another of the same identity: the outer one restores.
    restore: bool,
    _thread: PhantomData<*const ()>,
}

impl Identity {
    /// Acts as this identity on the current thread until the guard drops. Within a guard
    /// of the same identity this is a no-op; within another identity's it is an error.
    pub fn act(self) -> io::Result<Acting> {
        match ACTING.get() {
            Some(current) if current == self => {
                return Ok(Acting {
                    restore: false,
                    _thread: PhantomData,
                });
            }
            Some(current) => {
                return Err(io::Error::other(format!(
                    "this thread already acts as {}:{}",
                    current.uid, current.gid
                )));
            }
            None => {}
        }
        switch(self)?;
        ACTING.set(Some(self));
        Ok(Acting {
            restore: true,
            _thread: PhantomData,
        })
    }

    /// Acts as this identity for the rest of the thread's life: for threads that end
    /// with the session they serve.
    pub fn act_for_thread(self) -> io::Result<()> {
        std::mem::forget(self.act()?);
        Ok(())
    }
}

/// Makes every thread of `pool` act as `identity` for good (nothing when `None`). The
/// pool must belong to one session: its threads are never handed back to anyone else.
pub fn act_in_pool(pool: &rayon::ThreadPool, identity: Option<Identity>) -> io::Result<()> {
    let Some(identity) = identity else {
        return Ok(());
    };
    pool.broadcast(|_| identity.act_for_thread())
        .into_iter()
        .collect()
}

/// Runs `f` as `identity` on this thread (as the process when `None`).
pub fn as_identity<T>(identity: Option<Identity>, f: impl FnOnce() -> T) -> io::Result<T> {
    let _acting = identity.map(Identity::act).transpose()?;
    Ok(f())
}

/// Puts a thread that was born acting (created by an acting thread) back on the
/// process's credentials; does nothing on any other thread. A thread-start hook for
/// pools shared between sessions.
pub fn reset_thread() {
    let Some(home) = HOME.get() else {
        return; // Nobody has acted yet: every thread has the process's credentials.
    };
    if !acting() && rustix::process::geteuid() != home.euid {
        go_home_or_abort(home);
    }
}

fn switch(to: Identity) -> io::Result<()> {
    let home = home()?;
    let switched = (|| {
        if rustix::process::geteuid() != home.euid {
            // Born acting: the capabilities needed below come back with the home euid.
            set_thread_res_uid(None, home.euid, None)?;
        }
        // Groups and gid first: changing them needs the capabilities the uid change drops.
        set_thread_groups(&[Gid::from_raw(to.gid)])?;
        set_thread_res_gid(None, Gid::from_raw(to.gid), None)?;
        set_thread_res_uid(None, Uid::from_raw(to.uid), None)
    })();
    if let Err(e) = switched {
        go_home_or_abort(home);
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "cannot act as {}:{} (blitd must run as root): {}",
                to.uid,
                to.gid,
                io_err(e)
            ),
        ));
    }
    Ok(())
}

fn go_home(home: &Home) -> rustix::io::Result<()> {
    // The uid first: the capabilities it brings back allow the group changes.
    set_thread_res_uid(None, home.euid, None)?;
    set_thread_res_gid(None, home.egid, None)?;
    set_thread_groups(&home.groups)
}

/// A thread that cannot get its own credentials back would do the next session's work
/// as someone else: better to stop the process.
fn go_home_or_abort(home: &Home) {
    if let Err(e) = go_home(home) {
        eprintln!("blit: cannot restore this thread's credentials ({e}); aborting");
        std::process::abort();
    }
}

impl Drop for Acting {
    fn drop(&mut self) {
        if self.restore {
            go_home_or_abort(HOME.get().expect("set before anyone acted"));
            ACTING.set(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files this thread creates while acting belong to the identity, access is checked
    /// as the identity, and everything is back afterwards — on this thread, while
    /// another thread is never affected.
    #[test]
    fn acting_is_per_thread_and_restored() {
        if !process_is_root() {
            eprintln!("skipped: acting as another user needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let nobody = Identity {
            uid: 65534,
            gid: 65534,
        };
        let other = std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            rustix::process::geteuid()
        });
        {
            let _acting = nobody.act().unwrap();
            assert!(acting());
            assert_eq!(rustix::process::geteuid().as_raw(), 65534);
            let nested = nobody.act().unwrap();
            drop(nested);
            assert_eq!(
                rustix::process::geteuid().as_raw(),
                65534,
                "nested is a no-op"
            );
            assert!(
                Identity { uid: 1, gid: 1 }.act().is_err(),
                "another identity inside"
            );
            // The tempdir is root's, 0700: the identity may not create in it.
            let denied = std::fs::write(dir.path().join("x"), b"x").unwrap_err();
            assert_eq!(denied.kind(), io::ErrorKind::PermissionDenied);
        }
        assert!(
            other.join().unwrap().is_root(),
            "the other thread stayed root"
        );
        assert!(!acting());
        assert!(rustix::process::geteuid().is_root());
        assert_eq!(rustix::process::getegid(), HOME.get().unwrap().egid);
        std::fs::write(dir.path().join("x"), b"x").unwrap();
        // A thread born from an acting thread is put back by reset_thread.
        let _acting = nobody.act().unwrap();
        let child = std::thread::spawn(|| {
            let born = rustix::process::geteuid().as_raw();
            reset_thread();
            (born, rustix::process::geteuid().as_raw())
        });
        assert_eq!(child.join().unwrap(), (65534, 0));
    }
}
