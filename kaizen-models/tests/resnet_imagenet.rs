//! The ImageNet-style ResNet-18 (`resnet18_imagenet`): torchvision's tensor names with a 7x7 stride-2 stem, the
//! spatial sizes of its stem and max-pool, gradients reaching the stem, and the fast CPU kernels equal to candle's
//! own composition on it. Its own test binary with a single test, because `ops::set_fast_kernels` is process-wide.

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use kaizen_models::ops::set_fast_kernels;
use kaizen_models::{init, Arch, BnMode, ResNet, ResNetConfig};

fn build(arch: Arch, width: usize) -> (VarMap, ResNet) {
    let cfg = ResNetConfig {
        arch,
        width,
        in_channels: 3,
        stem_padding: 1,
    };
    let vm = VarMap::new();
    let net = ResNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    init::init_vars(&vm, 7).unwrap();
    (vm, net)
}

#[test]
fn the_imagenet_stem_is_torchvision_s_and_trains() {
    let imagenet = ResNetConfig {
        arch: Arch::ResNet18ImageNet,
        ..ResNetConfig::default()
    };
    let shapes = imagenet.tensor_shapes().unwrap();
    let cifar = ResNetConfig::default().tensor_shapes().unwrap();
    assert_eq!(
        shapes.keys().collect::<Vec<_>>(),
        cifar.keys().collect::<Vec<_>>(),
        "same torchvision names"
    );
    assert_eq!(shapes["conv1.weight"], [64, 3, 7, 7]);
    assert_eq!(cifar["conv1.weight"], [64, 3, 3, 3]);
    assert_eq!(
        "resnet18_imagenet".parse::<Arch>().unwrap(),
        Arch::ResNet18ImageNet
    );
    assert_eq!(Arch::ResNet18ImageNet.to_string(), "resnet18_imagenet");
    assert_eq!(
        serde_json::to_string(&Arch::ResNet18ImageNet).unwrap(),
        "\"resnet18_imagenet\""
    );

    // 64x64 inputs: stem -> 32x32, max-pool -> 16x16, stages 16, 8, 4, 2; pooled features (B, 8w).
    let (vm, net) = build(Arch::ResNet18ImageNet, 2);
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let y = net.forward(&x, BnMode::Train).unwrap();
    assert_eq!(y.dims(), [2, 16]);
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let data = vm.data().lock().unwrap();
    let g = grads
        .get(data["conv1.weight"].as_tensor())
        .expect("a gradient for the stem");
    assert_eq!(g.dims(), [2, 3, 7, 7]);
    assert!(
        g.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
    drop(data);

    // The fast kernels give candle's composition's features, on odd sizes too (the stem's stride-2 7x7 with
    // padding 3, the padded max-pool).
    let x = Tensor::randn(0f32, 1.0, (3, 3, 37, 45), &Device::Cpu).unwrap();
    let fast = net.forward(&x, BnMode::Eval).unwrap();
    set_fast_kernels(false);
    let reference = net.forward(&x, BnMode::Eval).unwrap();
    set_fast_kernels(true);
    let diff = (fast - reference)
        .unwrap()
        .abs()
        .unwrap()
        .max_keepdim(D::Minus1)
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-4, "fast vs reference kernels differ by {diff}");
}
