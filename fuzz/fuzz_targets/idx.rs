//! IDX reader (MNIST / Fashion-MNIST files, plain or gzipped). The first byte picks labels (1 dimension) or
//! images (3) and whether the file is named `.gz`; the rest is the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ndim = if sel & 1 == 0 { 1 } else { 3 };
    let name = if sel & 2 == 0 {
        "fuzz-idx3-ubyte"
    } else {
        "fuzz-idx3-ubyte.gz"
    };
    if let Ok(idx) = kaizen_data::idx::parse_idx(body.to_vec(), ndim, Path::new(name)) {
        let n: usize = idx.dims.iter().product();
        assert_eq!(
            n,
            idx.data.len(),
            "dims {:?} disagree with the body",
            idx.dims
        );
    }
});
