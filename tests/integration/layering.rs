//! The layers of `src/` hold: every top-level module uses only modules of
//! a lower layer (README, "Architecture"; `src/lib.rs`). The test reads the
//! sources, so a new `use crate::…` that points upward fails here with the
//! file and the line, before it becomes a cycle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first. A module may use any module of
/// a lower layer, never one of its own layer or above.
const LAYERS: &[&[&str]] = &[
    // Single concerns everything may use.
    &["errors", "json", "logging", "socket_id"],
    // What clients name and declare (channel names, presence members) and
    // the rules for it, for everything that receives it.
    &["channel_name", "member"],
    // Apps and their credentials.
    &["apps"],
    &["auth", "config"],
    // Cores and sockets: nothing of Pusher.
    &["runtime", "net"],
    // Wire protocols.
    &["ws"],
    // Services beside the shards: webhook delivery, the cluster link, the
    // app store.
    &["webhooks", "cluster", "app_store"],
    &["metrics"],
    // The protocol on each core.
    &["pusher"],
    // The HTTP server and API over the protocol.
    &["http"],
    // The process: ties the layers together.
    &["server"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its unit tests and without comments.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split("//").next().unwrap_or("")))
}

/// Every `crate::<module>` a line names.
fn crate_paths(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let name = &rest[at + 7..];
        let len = name
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(name.len());
        out.push(&name[..len]);
        rest = &name[len..];
    }
    out
}

#[test]
fn every_module_uses_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut unknown = BTreeMap::new();
    let mut upward = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(from) = layer_of(&top) else {
            unknown.insert(top, rel.display().to_string());
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line_no, line) in code_lines(&text) {
            for used in crate_paths(line) {
                // Macros exported at the crate root belong to `logging`.
                let used = if used.ends_with("_limited") {
                    "logging"
                } else {
                    used
                };
                if used == top {
                    continue;
                }
                match layer_of(used) {
                    Some(to) if to < from => {}
                    Some(_) => upward.push(format!(
                        "src/{}:{line_no}: `{top}` uses `{used}`, which is not below it",
                        rel.display()
                    )),
                    None => {
                        unknown.insert(used.to_string(), rel.display().to_string());
                    }
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS (module: a file naming it): {unknown:?}"
    );
    assert!(upward.is_empty(), "layers broken:\n{}", upward.join("\n"));
}

#[test]
fn the_test_sees_a_crate_path() {
    assert_eq!(
        crate_paths("use crate::pusher::shard::Shard; crate::warn_limited!(x)"),
        vec!["pusher", "warn_limited"]
    );
    assert_eq!(layer_of("runtime"), Some(4));
    assert!(layer_of("pusher") > layer_of("runtime"));
}
