//! `--exclude` / `--include` rules with rsync's semantics.
//!
//! - Rules are checked in the order given; the first rule that matches decides. An entry
//!   no rule matches is included.
//! - A pattern starting with `/` is anchored at the transfer root; any other pattern
//!   matches at any depth (`*.o` matches `a/b/x.o`, `b/x.o` matches `a/b/x.o`).
//! - A pattern ending in `/` matches only directories.
//! - `*` and `?` do not cross `/`; a `**` component (`a/**/x`) matches any number of
//!   directories. `[...]` is a character class.
//! - An excluded directory is not descended into, so its whole subtree is excluded.
//! - On the destination side, an excluded entry is also protected from mirror deletion.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use crate::error::Error;

/// Whether a rule keeps or drops what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Include,
    Exclude,
}

#[derive(Debug, Clone)]
struct Rule {
    kind: RuleKind,
    /// The pattern as given, so the rules can be sent to a remote peer.
    pattern: String,
    matcher: GlobMatcher,
    dir_only: bool,
}

/// An ordered list of include/exclude rules.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    rules: Vec<Rule>,
    /// Prefix for every matched path (see `with_base`).
    base: PathBuf,
}

impl Filter {
    /// A filter that includes everything.
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Appends a rule. Later rules only apply to entries earlier ones did not match.
    pub fn add(&mut self, kind: RuleKind, pattern: &str) -> Result<(), Error> {
        let invalid = |message: String| Error::Filter {
            pattern: pattern.to_owned(),
            message,
        };
        let (body, dir_only) = match pattern.strip_suffix('/') {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        let glob = match body.strip_prefix('/') {
            Some(anchored) => anchored.to_owned(),
            None => format!("**/{body}"),
        };
        if body.trim_start_matches('/').is_empty() {
            return Err(invalid("pattern is empty".into()));
        }
        let matcher = GlobBuilder::new(&glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| invalid(e.kind().to_string()))?
            .compile_matcher();
        self.rules.push(Rule {
            kind,
            pattern: pattern.to_owned(),
            matcher,
            dir_only,
        });
        Ok(())
    }

    /// The rules in order, as they were added.
    pub fn rules(&self) -> impl Iterator<Item = (RuleKind, &str)> {
        self.rules.iter().map(|r| (r.kind, r.pattern.as_str()))
    }

    /// Whether there are no rules at all (the walk can skip building paths).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The same rules, matched as if every path started with `base/`. rsync anchors
    /// `/pattern` at the transfer root, which for `copy src dst` (no trailing slash) is the
    /// directory that holds `src`: there `/src/build` names `src/build`.
    pub fn with_base(&self, base: &Path) -> Filter {
        Filter {
            rules: self.rules.clone(),
            base: base.to_owned(),
        }
    }

    /// Whether the entry at `rel` (relative to the walk's root) is excluded.
    pub fn excludes(&self, rel: &Path, is_dir: bool) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        if self.base.as_os_str().is_empty() {
            return self.first_match_excludes(rel, is_dir);
        }
        self.first_match_excludes(&self.base.join(rel), is_dir)
    }

    fn first_match_excludes(&self, path: &Path, is_dir: bool) -> bool {
        self.rules
            .iter()
            .find(|rule| (!rule.dir_only || is_dir) && rule.matcher.is_match(path))
            .is_some_and(|rule| rule.kind == RuleKind::Exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(rules: &[(RuleKind, &str)]) -> Filter {
        let mut f = Filter::new();
        for (kind, pattern) in rules {
            f.add(*kind, pattern).unwrap();
        }
        f
    }

    #[test]
    fn unanchored_pattern_matches_at_any_depth() {
        let f = filter(&[(RuleKind::Exclude, "*.o")]);
        assert!(f.excludes(Path::new("x.o"), false));
        assert!(f.excludes(Path::new("a/b/x.o"), false));
        assert!(!f.excludes(Path::new("a/x.c"), false));
    }

    #[test]
    fn anchored_pattern_matches_only_at_root() {
        let f = filter(&[(RuleKind::Exclude, "/build")]);
        assert!(f.excludes(Path::new("build"), true));
        assert!(!f.excludes(Path::new("src/build"), true));
    }

    #[test]
    fn trailing_slash_matches_only_directories() {
        let f = filter(&[(RuleKind::Exclude, "cache/")]);
        assert!(f.excludes(Path::new("a/cache"), true));
        assert!(!f.excludes(Path::new("a/cache"), false));
    }

    #[test]
    fn star_does_not_cross_slash_but_double_star_does() {
        let f = filter(&[(RuleKind::Exclude, "/a/*.txt")]);
        assert!(f.excludes(Path::new("a/x.txt"), false));
        assert!(!f.excludes(Path::new("a/b/x.txt"), false));
        let f = filter(&[(RuleKind::Exclude, "/a/**/*.txt")]);
        assert!(f.excludes(Path::new("a/b/c/x.txt"), false));
        assert!(f.excludes(Path::new("a/x.txt"), false));
    }

    #[test]
    fn first_matching_rule_wins() {
        let f = filter(&[
            (RuleKind::Include, "keep.log"),
            (RuleKind::Exclude, "*.log"),
        ]);
        assert!(!f.excludes(Path::new("d/keep.log"), false));
        assert!(f.excludes(Path::new("d/other.log"), false));
    }

    #[test]
    fn multi_component_pattern_matches_trailing_components() {
        let f = filter(&[(RuleKind::Exclude, "b/x")]);
        assert!(f.excludes(Path::new("a/b/x"), false));
        assert!(!f.excludes(Path::new("a/cb/x"), false));
    }

    #[test]
    fn non_utf8_paths_are_matched() {
        use std::os::unix::ffi::OsStrExt;
        let f = filter(&[(RuleKind::Exclude, "*.bin")]);
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.bin");
        assert!(f.excludes(Path::new(name), false));
    }

    #[test]
    fn a_base_anchors_like_rsync_without_a_trailing_slash() {
        let f = filter(&[(RuleKind::Exclude, "/src/build")]).with_base(Path::new("src"));
        assert!(f.excludes(Path::new("build"), true));
        assert!(!f.excludes(Path::new("x/build"), true));
        let f = filter(&[(RuleKind::Exclude, "*.o")]).with_base(Path::new("src"));
        assert!(f.excludes(Path::new("a.o"), false));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        let mut f = Filter::new();
        assert!(f.add(RuleKind::Exclude, "a[").is_err());
        assert!(f.add(RuleKind::Exclude, "/").is_err());
    }
}
