//! CIFAR python-version reader (the pickle parser under it). The first byte picks CIFAR-10 or CIFAR-100; the rest
//! is the pickle.
#![no_main]
use kaizen_data::cifar::CifarKind;
use kaizen_data::cifar_python::parse_cifar_python;
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
    let _ = kaizen_data::pickle::parse(body);
    if let Ok((pixels, labels)) = parse_cifar_python(body, kind, Path::new("fuzz_batch")) {
        assert_eq!(pixels.len(), labels.len() * 3 * 32 * 32);
    }
});
