//! Replays the fuzz seeds and every saved crash input
//! (`tests/fuzz/seeds/TARGET/`, `tests/fuzz/regressions/TARGET/`) through
//! the same checks the fuzz targets run (`tests/fuzz/checks.rs`), so a fixed
//! crash stays fixed without cargo-fuzz or a nightly toolchain.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for path in paths {
            if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(
                result.is_ok(),
                "fuzz input {} fails its check",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n > 0, "no inputs for {target}");
}

#[test]
fn http_head_inputs() {
    replay("http_head", checks::http_head::run);
}

#[test]
fn ws_frame_inputs() {
    replay("ws_frame", checks::ws_frame::run);
}

#[test]
fn pusher_message_inputs() {
    replay("pusher_message", checks::pusher_message::run);
}

#[test]
fn api_body_inputs() {
    replay("api_body", checks::api_body::run);
}

#[test]
fn signatures_inputs() {
    replay("signatures", checks::signatures::run);
}

#[test]
fn cluster_wire_inputs() {
    replay("cluster_wire", checks::cluster_wire::run);
}

#[test]
fn channel_index_inputs() {
    replay("channel_index", checks::channel_index::run);
}

#[test]
fn quota_leases_inputs() {
    replay("quota_leases", checks::quota_leases::run);
}
