//! Criterion group `augment`: two-view augmentation + batching (u8 HWC → two normalised (B,C,H,W) f32
//! tensors) on the CPU, in images per second (`Throughput::Elements(batch)`; one element = one image with
//! both of its views). Uses real images: the embedded Fashion-MNIST subset (28x28x1) and the CIFAR-10
//! fixture converted from foolbox's PNGs (32x32x3). Runs on the global rayon pool (all cores).
use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kaizen_data::{load_dataset, two_view_batch, AugmentConfig, Augmenter, DatasetName, Item};
use std::hint::black_box;
use std::path::Path;

const BATCH: usize = 256;

fn augment(c: &mut Criterion) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kaizen-data/tests/fixtures");
    let sets = [
        load_dataset(DatasetName::FashionMnistMini, None).expect("embedded dataset"),
        load_dataset(DatasetName::Cifar10, Some(&fixtures)).expect("CIFAR-10 fixture"),
    ];
    let mut group = c.benchmark_group("augment");
    group.throughput(Throughput::Elements(BATCH as u64));
    for d in &sets {
        let aug = Augmenter::new(AugmentConfig::default(), d.shape, &d.mean, &d.std)
            .expect("valid config");
        let n = d.train.len() as u32;
        let items: Vec<Item> = (0..BATCH as u32)
            .map(|i| Item {
                index: (i * 7) % n,
                label: -1,
            })
            .collect();
        let id = format!(
            "{}x{}x{}_b{BATCH}",
            d.shape.height, d.shape.width, d.shape.channels
        );
        let mut key = 0u64;
        group.bench_function(BenchmarkId::new("cpu_two_view", id), |b| {
            b.iter(|| {
                key += 1;
                black_box(
                    two_view_batch(&d.train, &items, &aug, 0, key, &Device::Cpu).expect("batch"),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, augment);
criterion_main!(benches);
