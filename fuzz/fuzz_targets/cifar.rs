//! CIFAR binary reader. The first byte picks CIFAR-10 or CIFAR-100 records; the rest is the file.
#![no_main]
use kaizen_data::cifar::{parse_cifar, CifarKind};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let kind = if sel & 1 == 0 {
        CifarKind::Cifar10
    } else {
        CifarKind::Cifar100
    };
    if let Ok((pixels, labels)) = parse_cifar(body, kind, Path::new("fuzz.bin")) {
        assert_eq!(pixels.len(), labels.len() * 3 * 32 * 32);
    }
});
