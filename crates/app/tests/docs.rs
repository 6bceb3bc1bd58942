//! The documentation names what the code has: every port in docs/architecture.md and
//! docs/adapters.md, every route in docs/api.md, every CLI command in the README, and
//! every folder in docs/architecture.md's "How to find things".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code.

use std::path::{Path, PathBuf};
use std::process::Command;

use utoipa::OpenApi;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

/// Asserts that each of `names` occurs in `doc` (as `pattern(name)`), listing all misses.
fn assert_named(doc: &str, names: &[String], pattern: impl Fn(&str) -> String) {
    let text = read(doc);
    let missing: Vec<_> = names
        .iter()
        .filter(|name| !text.contains(&pattern(name)))
        .collect();
    assert!(missing.is_empty(), "{doc} does not name: {missing:?}");
}

#[test]
fn every_port_is_in_the_architecture_and_the_adapters_guide() {
    let mut ports = Vec::new();
    for entry in std::fs::read_dir(root().join("crates/domain/src/ports")).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in source.lines() {
            if let Some(rest) = line.strip_prefix("pub trait ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                ports.push(name);
            }
        }
    }
    assert!(ports.len() >= 12, "the ports were not found: {ports:?}");
    assert_named("docs/architecture.md", &ports, |p| format!("`{p}`"));
    assert_named("docs/adapters.md", &ports, |p| format!("`{p}`"));
}

#[test]
fn every_route_is_in_the_api_page() {
    let routes: Vec<String> = passcode_http::ApiDoc::openapi()
        .paths
        .paths
        .keys()
        .cloned()
        .collect();
    assert!(routes.len() >= 20, "the routes were not found: {routes:?}");
    assert_named("docs/api.md", &routes, |r| format!("`{r}`"));
}

/// The subcommands `passcode ARGS --help` lists.
fn subcommands(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_passcode"))
        .args(args)
        .arg("--help")
        .output()
        .expect("passcode --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_cli_command_is_in_the_readme() {
    let mut commands = Vec::new();
    for command in subcommands(&[]) {
        let nested = subcommands(&[&command]);
        if nested.is_empty() {
            commands.push(format!("passcode {command}"));
        }
        commands.extend(nested.iter().map(|sub| format!("passcode {command} {sub}")));
    }
    assert!(
        commands.len() >= 10,
        "the commands were not found: {commands:?}"
    );
    assert_named("README.md", &commands, |c| format!("`{c}"));
}

#[test]
fn every_folder_is_in_how_to_find_things() {
    let text = read("docs/architecture.md");
    let section = text
        .split("## How to find things")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/architecture.md has a \"How to find things\" section");
    let out = Command::new("git")
        .args(["ls-files"])
        .current_dir(root())
        .output()
        .expect("git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    let mut folders: Vec<String> = Vec::new();
    for file in String::from_utf8(out.stdout).unwrap().lines() {
        let parts: Vec<&str> = file.split('/').collect();
        if parts.len() < 2 {
            continue;
        }
        // Top-level folders, and the members of crates/ and examples/.
        let folder = match parts[0] {
            "crates" | "examples" if parts.len() > 2 => format!("{}/{}/", parts[0], parts[1]),
            top => format!("{top}/"),
        };
        if !folders.contains(&folder) {
            folders.push(folder);
        }
    }
    let missing: Vec<_> = folders
        .iter()
        .filter(|f| !section.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "\"How to find things\" in docs/architecture.md has no line for: {missing:?}"
    );
}
