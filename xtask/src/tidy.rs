//! Tidy checks, written as `#[test]`s so plain `cargo test` runs them.
//!
//! Each test walks the source tree with `std::fs` (skipping `target/` and
//! `.git/`) and fails with one line per offending `file:line`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::project_root;

/// Directory names never walked into.
const SKIPPED_DIRS: &[&str] = &["target", ".git"];

/// Tests assert the `Err` explicitly instead; see STYLE.md "Tests".
#[test]
fn no_should_panic() {
    check_lines(
        &rust_files_under("crates"),
        "#[should_panic] attribute",
        |line| is_attribute(line, "should_panic"),
    );
}

/// Tests that need root or hardware are gated by an environment variable
/// that CI sets, never skipped silently.
#[test]
fn no_ignored_tests() {
    check_lines(&rust_files_under("crates"), "#[ignore] attribute", |line| {
        is_attribute(line, "ignore")
    });
}

#[test]
fn no_todo_or_unimplemented() {
    let mut files = Vec::new();
    for krate in crate_dirs() {
        files.extend(files_under(&krate.join("src"), &["rs"]));
    }
    check_lines(&files, "todo!() or unimplemented!()", |line| {
        !line.trim_start().starts_with("//")
            && (line.contains("todo!(") || line.contains("unimplemented!("))
    });
}

#[test]
fn no_trailing_whitespace() {
    let root = project_root();
    let mut files = files_under(&root.join("crates"), &["rs", "md", "toml"]);
    files.extend(files_under(&root.join("xtask"), &["rs", "md", "toml"]));
    files.extend(
        read_dir(&root)
            .into_iter()
            .filter(|path| path.is_file() && has_extension(path, &["md"])),
    );
    check_lines(&files, "trailing whitespace", |line| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        line.ends_with(' ') || line.ends_with('\t')
    });
}

/// Every crate's `lib.rs` opens with a `//!` doc comment: what the crate
/// does, what it does not do, and its layout.
#[test]
fn every_lib_rs_opens_with_crate_docs() {
    let mut offenders = Vec::new();
    for krate in crate_dirs() {
        let lib = krate.join("src").join("lib.rs");
        let Ok(text) = fs::read_to_string(&lib) else {
            continue;
        };
        if !text.trim_start().starts_with("//!") {
            offenders.push(format!("{}:1", relative(&lib)));
        }
    }
    assert!(
        offenders.is_empty(),
        "lib.rs must start with a `//!` crate doc comment:\n{}",
        offenders.join("\n")
    );
}

/// Whether `line` is an attribute `#[name]` or `#[name(...)]`/`#[name = ..]`,
/// rather than prose that mentions one.
fn is_attribute(line: &str, name: &str) -> bool {
    let line = line.trim_start();
    let Some(rest) = line.strip_prefix("#[") else {
        return false;
    };
    // Several attributes may share a line: `#[test] #[ignore]`.
    std::iter::once(rest)
        .chain(line.split("#[").skip(1))
        .any(|attr| {
            attr.strip_prefix(name)
                .is_some_and(|after| after.starts_with([']', '(', ' ', '=']))
        })
}

/// Fails, listing every `file:line`, if `is_bad` holds for any line of
/// `files`.
#[track_caller]
fn check_lines(files: &[PathBuf], what: &str, is_bad: impl Fn(&str) -> bool) {
    let mut offenders = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if is_bad(line) {
                offenders.push(format!(
                    "{}:{}: {}",
                    relative(file),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "found {what} in {} place(s):\n{}",
        offenders.len(),
        offenders.join("\n")
    );
}

/// `crates/*`: one directory per crate.
fn crate_dirs() -> Vec<PathBuf> {
    read_dir(&project_root().join("crates"))
        .into_iter()
        .filter(|path| path.is_dir())
        .collect()
}

/// Every `.rs` file under the workspace directory `dir`.
fn rust_files_under(dir: &str) -> Vec<PathBuf> {
    files_under(&project_root().join(dir), &["rs"])
}

/// Every file under `dir` with one of `extensions`, sorted, skipping
/// [`SKIPPED_DIRS`].
fn files_under(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for path in read_dir(&dir) {
            if path.is_dir() {
                let skipped = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| SKIPPED_DIRS.contains(&name));
                if !skipped {
                    stack.push(path);
                }
            } else if has_extension(&path, extensions) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The entries of `dir`, sorted; none if it does not exist.
fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    entries
}

/// Whether `path` ends in one of `extensions`.
fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| extensions.contains(&ext))
}

/// `path` relative to the workspace root, for messages.
fn relative(path: &Path) -> String {
    let root = project_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn recognises_attributes_not_prose() {
    #[track_caller]
    fn check(line: &str, expect: bool) {
        assert_eq!(is_attribute(line, "ignore"), expect, "{line:?}");
    }
    check("#[ignore]", true);
    check("    #[ignore = \"needs root\"]", true);
    check("#[test] #[ignore]", true);
    check("#[ignored_thing]", false);
    check("/// Never use `#[ignore]`.", false);
    check("#[cfg(test)]", false);
}
