//! Depth-first walks of a directory tree without recursion: an explicit stack of the
//! directories being visited (each with the subdirectories it has left to enter) and one
//! [`Cursor`] to reach them. A tree's depth comes from whoever wrote it — a client of an
//! agent may build a chain 100,000 levels deep — so neither the thread's stack nor the
//! process's descriptors may grow with it: memory grows with the depth by one frame and
//! one name per level, descriptors stay within the cursor's `KEEP_OPEN`, and each
//! directory costs a constant number of system calls besides its listing.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;

use rustix::fd::BorrowedFd;

use super::cursor::Cursor;

/// What the visit of a directory asks for once it has seen the directory.
pub enum Step<F> {
    /// Enter these subdirectories (in this order); `frame` is kept until they are done.
    Descend { frame: F, subdirs: Vec<OsString> },
    /// End the whole walk now.
    Stop,
}

/// The directory that holds the one being left.
pub struct Parent<'a, F> {
    pub frame: &'a mut F,
    pub fd: BorrowedFd<'a>,
    /// The name of the directory being left, in `fd`.
    pub name: &'a OsStr,
}

/// What a walk does at each directory.
pub trait Visit {
    /// What is kept for a directory from entering it until leaving it.
    type Frame;

    /// The walk is in a directory (`rel` below the start, `depth` levels down).
    fn enter(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &Path,
        depth: usize,
    ) -> io::Result<Step<Self::Frame>>;

    /// Every subdirectory of the directory has been left; the walk is back in its
    /// parent (`None` for the starting directory, which the walk ends with).
    fn leave(
        &mut self,
        frame: Self::Frame,
        parent: Option<Parent<'_, Self::Frame>>,
    ) -> io::Result<()>;

    /// Subdirectory `name` of `rel` could not be entered. The default ends the walk with
    /// the error; a visit that can do without the subtree returns `Ok`.
    fn unreachable(&mut self, rel: &Path, name: &OsStr, error: io::Error) -> io::Result<()> {
        let _ = (rel, name);
        Err(error)
    }
}

/// A directory on the walk's stack.
struct Open<F> {
    frame: F,
    subdirs: std::vec::IntoIter<OsString>,
}

/// Walks the tree below `start` (which it borrows), depth first, calling `visit` on the
/// way down and up. An error from `visit` or from moving between directories ends the
/// walk and is returned.
pub fn walk<V: Visit>(start: BorrowedFd<'_>, visit: &mut V) -> io::Result<()> {
    let mut cursor = Cursor::new(start);
    let mut stack: Vec<Open<V::Frame>> = Vec::new();
    if !enter(&mut cursor, visit, &mut stack)? {
        return Ok(());
    }
    while let Some(top) = stack.last_mut() {
        if let Some(name) = top.subdirs.next() {
            match cursor.down(&name) {
                Ok(()) => {
                    if !enter(&mut cursor, visit, &mut stack)? {
                        return Ok(());
                    }
                }
                Err(e) => visit.unreachable(cursor.rel(), &name, e)?,
            }
            continue;
        }
        let done = stack.pop().expect("the loop saw it");
        let Some(parent) = stack.last_mut() else {
            return visit.leave(done.frame, None);
        };
        let name = cursor.name().to_owned();
        cursor.up()?;
        visit.leave(
            done.frame,
            Some(Parent {
                frame: &mut parent.frame,
                fd: cursor.fd(),
                name: &name,
            }),
        )?;
    }
    Ok(())
}

/// Enters the cursor's directory; false if the visit said stop.
fn enter<V: Visit>(
    cursor: &mut Cursor<BorrowedFd<'_>>,
    visit: &mut V,
    stack: &mut Vec<Open<V::Frame>>,
) -> io::Result<bool> {
    match visit.enter(cursor.fd(), cursor.rel(), cursor.depth())? {
        Step::Descend { frame, subdirs } => {
            stack.push(Open {
                frame,
                subdirs: subdirs.into_iter(),
            });
            Ok(true)
        }
        Step::Stop => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::dir;
    use rustix::fd::AsFd;

    /// Records the order of enters and leaves; stops after `stop_after` enters.
    struct Trace {
        events: Vec<String>,
        stop_after: usize,
    }

    impl Visit for Trace {
        type Frame = String;

        fn enter(&mut self, dir: BorrowedFd<'_>, rel: &Path, _: usize) -> io::Result<Step<String>> {
            if self.events.iter().filter(|e| e.starts_with('>')).count() == self.stop_after {
                return Ok(Step::Stop);
            }
            self.events.push(format!(">{}", rel.display()));
            let mut subdirs: Vec<OsString> = dir::list(dir)?
                .entries
                .into_iter()
                .filter(|e| e.is_dir())
                .map(|e| e.name)
                .collect();
            subdirs.sort();
            Ok(Step::Descend {
                frame: rel.display().to_string(),
                subdirs,
            })
        }

        fn leave(&mut self, frame: String, parent: Option<Parent<'_, String>>) -> io::Result<()> {
            let into = parent.map(|p| format!("{} in {:?}", p.name.display(), p.frame));
            self.events.push(format!("<{frame} {into:?}"));
            Ok(())
        }
    }

    #[test]
    fn visits_depth_first_without_recursion() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["a/x", "a/y", "b"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        let root = dir::open_root(tmp.path()).unwrap();
        let mut trace = Trace {
            events: Vec::new(),
            stop_after: usize::MAX,
        };
        walk(root.as_fd(), &mut trace).unwrap();
        assert_eq!(
            trace.events,
            [
                ">",
                ">a",
                ">a/x",
                "<a/x Some(\"x in \\\"a\\\"\")",
                ">a/y",
                "<a/y Some(\"y in \\\"a\\\"\")",
                "<a Some(\"a in \\\"\\\"\")",
                ">b",
                "<b Some(\"b in \\\"\\\"\")",
                "< None",
            ]
        );
        let mut stopped = Trace {
            events: Vec::new(),
            stop_after: 2,
        };
        walk(root.as_fd(), &mut stopped).unwrap();
        assert_eq!(stopped.events, [">", ">a"]);
    }

    #[test]
    fn a_chain_deeper_than_any_stack_and_path_limit() {
        // 10,000 levels, walked on a 64 KiB stack: recursion would overflow it long
        // before, and the path (20,000 bytes) is five times what the kernel takes in one
        // call.
        const DEPTH: usize = 10_000;
        let tmp = tempfile::tempdir().unwrap();
        let root = dir::open_root(tmp.path()).unwrap();
        let mut fd = dir::make_dir_at(root.as_fd(), OsStr::new("d"), 0o755).unwrap();
        for _ in 1..DEPTH {
            fd = dir::make_dir_at(fd.as_fd(), OsStr::new("d"), 0o755).unwrap();
        }
        drop(fd);
        struct Count(usize, usize);
        impl Visit for Count {
            type Frame = ();
            fn enter(
                &mut self,
                dir: BorrowedFd<'_>,
                _: &Path,
                depth: usize,
            ) -> io::Result<Step<()>> {
                self.0 += 1;
                self.1 = self.1.max(depth);
                let subdirs = dir::read_names(dir)?;
                Ok(Step::Descend { frame: (), subdirs })
            }
            fn leave(&mut self, _: (), _: Option<Parent<'_, ()>>) -> io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0, 0);
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn_scoped(scope, || walk(root.as_fd(), &mut count))
                .unwrap()
                .join()
                .unwrap()
                .unwrap();
        });
        assert_eq!((count.0, count.1), (DEPTH + 1, DEPTH));
        // (std's remove_dir_all recurses and holds a descriptor per level.)
        let keep = |_: &Path, _: bool| false;
        crate::delete::remove(
            root.as_fd(),
            OsStr::new("d"),
            crate::entry::EntryKind::Dir,
            Path::new("d"),
            &keep,
        )
        .unwrap();
    }
}
