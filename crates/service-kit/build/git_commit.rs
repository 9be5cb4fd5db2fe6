//! The build script of every package with an Ordo binary (their
//! `Cargo.toml` says `build = "../../crates/service-kit/build/git_commit.rs"`):
//! sets `ORDO_GIT_COMMIT`, which `--version` prints.
//!
//! It is `ORDO_GIT_COMMIT` from the build's environment when set (an image
//! built without `.git`), else `git rev-parse --short HEAD`, else
//! `unknown`. Cargo runs the script again only when that variable, `HEAD`
//! (a checkout) or the branch's ref (a commit) changes, so an edit does
//! not rerun it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ORDO_GIT_COMMIT");
    // Named files replace cargo's default, rerunning the script whenever
    // any file of the package changes.
    println!("cargo:rerun-if-changed=Cargo.toml");
    let commit = std::env::var("ORDO_GIT_COMMIT")
        .ok()
        .map(|commit| commit.trim().to_owned())
        .filter(|commit| !commit.is_empty())
        .or_else(|| {
            watch_git();
            git(&["rev-parse", "--short", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ORDO_GIT_COMMIT={commit}");
}

/// Reruns the script when `HEAD` moves: a checkout changes `HEAD`, a
/// commit the branch's ref (loose, or in `packed-refs` after a gc).
fn watch_git() {
    let mut files = vec![git_path("HEAD"), git_path("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        files.push(git_path(&branch));
    }
    for file in files.into_iter().flatten() {
        // A missing file would make cargo rerun the script on every build.
        if file.exists() {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
}

/// Where git keeps `name` (worktrees included), as an absolute path.
fn git_path(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(git(&["rev-parse", "--git-path", name])?);
    let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    Some(Path::new(&here).join(path))
}

/// git's one line of output, if git is there and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let line = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !line.is_empty()).then_some(line)
}
