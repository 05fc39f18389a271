//! Checkpoint loader: safetensors + the JSON manifest (`load`), and plain safetensors (`load_plain`, used by
//! `import`, `export` and `features`).
#![no_main]
use candle_core::Device;
use kaizen_models::checkpoint::{load_bytes, load_plain_bytes};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    if let Ok((tensors, manifest)) = load_bytes(path, data, &Device::Cpu) {
        assert_eq!(tensors.len(), manifest.tensors.len());
    }
    let _ = load_plain_bytes(path, data, &Device::Cpu);
});
