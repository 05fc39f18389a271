//! TOML configuration: the CLI's layered resolver (`--config FILE`, presets, `--set`), fed the input as a
//! config file and its lines as `--set` overrides, and a run directory's resolved `config.toml`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

#[allow(dead_code)]
#[path = "../../kaizen-cli/src/config.rs"]
mod config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mut r) = config::Resolver::new() {
        if r.merge_toml(text, "fuzz.toml").is_ok() {
            let _ = r.finish();
        }
    }
    if let Ok(mut r) = config::Resolver::new() {
        let ok = text.lines().take(16).all(|l| r.set(l, "--set").is_ok());
        if ok {
            let _ = r.finish();
        }
    }
    let _ = kaizen_core::run_dir::parse_config(text, Path::new("config.toml"));
});
