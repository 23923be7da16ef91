//! The two requests a transfer on one machine refuses before it writes anything: a
//! destination inside its own source (or the source itself), and a mirror whose source is
//! inside its destination (it would delete its own source). Paths are compared after
//! resolving symlinks, so a second name for the same directory is caught too.

use std::path::{Path, PathBuf};

use super::{Base, SourceRoot, place};
use crate::error::Error;
use crate::spec::Mode;

/// Refuses `source` going to the local path `dst` when the two overlap (see above).
pub fn check_overlap(source: &SourceRoot, dst: &Path, mode: Mode) -> Result<(), Error> {
    let (dst_dir, rename) = place(Base::Local, dst, &source.shape)?;
    let (src, dst, src_real) = match (source.shape.single(), rename) {
        // A single entry may be a symlink: canonicalize its directory, not its target.
        (Some(name), Some(rename)) => (
            source.path.join(name),
            dst_dir.join(rename.dst),
            canonical(&source.path).join(name),
        ),
        _ => (source.path.clone(), dst_dir, canonical(&source.path)),
    };
    let dst_real = canonical(&dst);
    if src_real == dst_real {
        return Err(Error::SameSourceAndDestination { path: src });
    }
    if source.shape.single().is_none() && dst_real.starts_with(&src_real) {
        return Err(Error::DestinationInsideSource {
            source_dir: src,
            destination: dst,
        });
    }
    if mode == Mode::Mirror && src_real.starts_with(&dst_real) {
        return Err(Error::SourceInsideDestination {
            source_dir: src,
            destination: dst,
        });
    }
    Ok(())
}

/// Canonicalizes the longest existing prefix of `p` and appends the rest, so paths that
/// do not exist yet can still be compared.
fn canonical(p: &Path) -> PathBuf {
    let absolute = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |acc, c| acc.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roots::open_source;
    use crate::spec::Options;

    fn check(src: &Path, dst: &Path, mode: Mode) -> Result<(), Error> {
        let source = open_source(Base::Local, src, &Options::default())?;
        check_overlap(&source, dst, mode)
    }

    #[test]
    fn refuses_overlaps() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let mut slash = src.clone().into_os_string();
        slash.push("/");
        let slash = Path::new(&slash);
        assert!(matches!(
            check(slash, &src, Mode::Copy),
            Err(Error::SameSourceAndDestination { .. })
        ));
        assert!(matches!(
            check(slash, &src.join("inner"), Mode::Copy),
            Err(Error::DestinationInsideSource { .. })
        ));
        assert!(matches!(
            check(&src, &src, Mode::Copy),
            Err(Error::DestinationInsideSource { .. })
        ));
        assert!(matches!(
            check(slash, tmp.path(), Mode::Mirror),
            Err(Error::SourceInsideDestination { .. })
        ));
        assert!(check(slash, tmp.path(), Mode::Copy).is_ok());
        assert!(check(slash, &tmp.path().join("elsewhere"), Mode::Mirror).is_ok());
    }

    #[test]
    fn a_single_entry_is_compared_by_its_own_name() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(
            check(&f, &f, Mode::Copy),
            Err(Error::SameSourceAndDestination { .. })
        ));
        assert!(matches!(
            check(&f, tmp.path(), Mode::Copy),
            Err(Error::SameSourceAndDestination { .. })
        ));
        assert!(check(&f, &tmp.path().join("g"), Mode::Copy).is_ok());
    }
}
