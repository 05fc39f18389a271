//! Shapes, names and BatchNorm behaviour of the model zoo.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kaizen_models::init::init_vars;
use kaizen_models::params::{sorted_vars, trainable};
use kaizen_models::{mask_unseen, BatchNorm, BnMode, Mlp, MlpConfig, ResNet, ResNetConfig};
use rand::{Rng, SeedableRng};

fn input(shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

fn resnet(width: usize, in_channels: usize, seed: u64) -> Result<(VarMap, ResNet)> {
    let vm = VarMap::new();
    let cfg = ResNetConfig {
        width,
        in_channels,
        ..Default::default()
    };
    let net = ResNet::new(
        &cfg,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu).pp("backbone"),
    )?;
    init_vars(&vm, seed)?;
    Ok((vm, net))
}

#[test]
fn resnet_output_shapes_for_widths_and_inputs() -> Result<()> {
    for (width, c, hw) in [
        (4, 1, 28),
        (4, 3, 32),
        (8, 3, 32),
        (8, 1, 28),
        (16, 3, 32),
        (2, 3, 9),
    ] {
        let (_vm, net) = resnet(width, c, 1)?;
        assert_eq!(net.out_dim(), 8 * width);
        for mode in [BnMode::Train, BnMode::BatchStats, BnMode::Eval] {
            let y = net.forward(&input(&[2, c, hw, hw], 2)?, mode)?;
            assert_eq!(
                y.dims(),
                &[2, 8 * width],
                "width {width} input {c}x{hw}x{hw} {mode:?}"
            );
            let finite = y
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .all(|v| v.is_finite());
            assert!(finite);
        }
    }
    Ok(())
}

#[test]
fn resnet_rejects_wrong_channel_count() -> Result<()> {
    let (_vm, net) = resnet(4, 3, 1)?;
    let err = net.forward(&input(&[2, 1, 8, 8], 2)?, BnMode::Eval);
    assert!(err.is_err());
    Ok(())
}

#[test]
fn resnet_names_follow_torchvision() -> Result<()> {
    let shapes = ResNetConfig {
        width: 64,
        ..Default::default()
    }
    .tensor_shapes()?;
    // torchvision resnet18 minus fc (2) and the 20 num_batches_tracked buffers: 102 - 2 - 20 = 100 tensors... count them:
    // conv: 1 + 16 + 3 downsample = 20; bn: 1 + 16 + 3 = 20, 4 tensors each = 80; total 100.
    assert_eq!(shapes.len(), 100);
    assert_eq!(shapes["conv1.weight"], vec![64, 3, 3, 3]);
    assert_eq!(shapes["bn1.running_mean"], vec![64]);
    assert_eq!(shapes["layer1.0.conv1.weight"], vec![64, 64, 3, 3]);
    assert_eq!(shapes["layer2.0.downsample.0.weight"], vec![128, 64, 1, 1]);
    assert_eq!(shapes["layer2.0.downsample.1.running_var"], vec![128]);
    assert_eq!(shapes["layer4.1.bn2.weight"], vec![512]);
    assert!(!shapes.contains_key("layer1.0.downsample.0.weight"));
    let params: usize = shapes
        .iter()
        .filter(|(k, _)| !k.contains("running"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    // torchvision resnet18 has 11,689,512 parameters; minus fc (513,000) and with a 3x3 stem instead of 7x7
    // (64*3*49 - 64*3*9 = 7,680 fewer): 11,168,832.
    assert_eq!(params, 11_168_832);
    Ok(())
}

#[test]
fn mlp_names_and_shapes() -> Result<()> {
    let vm = VarMap::new();
    let cfg = MlpConfig::projector(6, 10, 3);
    let mlp = Mlp::new(
        &cfg,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu).pp("projector"),
    )?;
    init_vars(&vm, 3)?;
    let names: Vec<String> = sorted_vars(&vm).into_iter().map(|(n, _)| n).collect();
    let expected = [
        "projector.0.bias",
        "projector.0.weight",
        "projector.1.bias",
        "projector.1.running_mean",
        "projector.1.running_var",
        "projector.1.weight",
        "projector.3.bias",
        "projector.3.weight",
    ];
    assert_eq!(names, expected);
    let y = mlp.forward(&input(&[4, 6], 1)?, BnMode::Train)?;
    assert_eq!(y.dims(), &[4, 3]);

    let vm2 = VarMap::new();
    let cfg2 = MlpConfig {
        in_dim: 6,
        hidden: 5,
        out_dim: 2,
        hidden_layers: 2,
        batch_norm: false,
        input_norm: false,
    };
    let mlp2 = Mlp::new(
        &cfg2,
        VarBuilder::from_varmap(&vm2, DType::F32, &Device::Cpu),
    )?;
    let names2: Vec<String> = sorted_vars(&vm2).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names2,
        ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
    );
    assert_eq!(
        mlp2.forward(&input(&[3, 6], 1)?, BnMode::Eval)?.dims(),
        &[3, 2]
    );
    Ok(())
}

#[test]
fn init_follows_pytorch_default_bounds_and_is_seeded() -> Result<()> {
    let (vm, _net) = resnet(4, 3, 7)?;
    let (vm_b, _) = resnet(4, 3, 7)?;
    let (vm_c, _) = resnet(4, 3, 8)?;
    let get = |vm: &VarMap, n: &str| -> Result<Vec<f32>> {
        let v = sorted_vars(vm)
            .into_iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v);
        Ok(v.ok_or_else(|| anyhow::anyhow!("no {n}"))?
            .flatten_all()?
            .to_vec1::<f32>()?)
    };
    let w = get(&vm, "backbone.layer1.0.conv1.weight")?; // fan_in = 4*3*3 = 36, bound 1/6
    assert!(w.iter().all(|x| x.abs() <= 1.0 / 6.0 + 1e-7));
    assert!(
        w.iter().any(|x| x.abs() > 0.1),
        "values should fill the range"
    );
    assert_eq!(w, get(&vm_b, "backbone.layer1.0.conv1.weight")?);
    assert_ne!(w, get(&vm_c, "backbone.layer1.0.conv1.weight")?);
    assert!(get(&vm, "backbone.bn1.weight")?.iter().all(|&x| x == 1.0));
    assert!(get(&vm, "backbone.bn1.bias")?.iter().all(|&x| x == 0.0));
    assert!(get(&vm, "backbone.bn1.running_mean")?
        .iter()
        .all(|&x| x == 0.0));
    assert!(get(&vm, "backbone.bn1.running_var")?
        .iter()
        .all(|&x| x == 1.0));

    let vm = VarMap::new();
    let _ = Mlp::new(
        &MlpConfig::projector(16, 4, 2),
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    init_vars(&vm, 1)?;
    let b = get(&vm, "3.bias")?; // fan_in 4 -> bound 0.5
    assert!(b.iter().all(|x| x.abs() <= 0.5) && b.iter().any(|&x| x != 0.0));
    let w0 = get(&vm, "0.weight")?; // fan_in 16 -> bound 0.25
    assert!(w0.iter().all(|x| x.abs() <= 0.25) && w0.iter().any(|x| x.abs() > 0.2));
    Ok(())
}

/// x (B=2, C=2, H=1, W=2): channel 0 = [1,3,5,7] (mean 4, biased var 5, unbiased 20/3),
/// channel 1 = [0,0,2,2] (mean 1, biased var 1, unbiased 4/3).
fn bn_input() -> Result<Tensor> {
    Ok(Tensor::from_vec(
        vec![1f32, 3., 0., 0., 5., 7., 2., 2.],
        (2, 2, 1, 2),
        &Device::Cpu,
    )?)
}

#[test]
fn batch_norm_train_updates_running_stats_eval_uses_them() -> Result<()> {
    let vm = VarMap::new();
    let bn = BatchNorm::new(
        2,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu).pp("bn"),
        "bn",
    )?;
    let x = bn_input()?;
    let y = bn.forward(&x, BnMode::Train, false)?;
    // running_mean = 0.9*0 + 0.1*mean; running_var = 0.9*1 + 0.1*unbiased var.
    let rm = bn.running_mean().to_vec1::<f32>()?;
    let rv = bn.running_var().to_vec1::<f32>()?;
    assert!(
        (rm[0] - 0.4).abs() < 1e-6 && (rm[1] - 0.1).abs() < 1e-6,
        "{rm:?}"
    );
    assert!((rv[0] - (0.9 + 2.0 / 3.0)).abs() < 1e-6, "{rv:?}");
    assert!((rv[1] - (0.9 + 0.4 / 3.0)).abs() < 1e-6, "{rv:?}");
    // The same values are visible through the VarMap (what checkpoints and the EMA read).
    let vars = sorted_vars(&vm);
    let rm_var = &vars
        .iter()
        .find(|(n, _)| n == "bn.running_mean")
        .ok_or_else(|| anyhow::anyhow!("rm"))?
        .1;
    assert!((rm_var.to_vec1::<f32>()?[0] - 0.4).abs() < 1e-6);
    // Train output is normalised with batch stats: channel 0 first value (1-4)/sqrt(5+1e-5).
    let y0 = y.flatten_all()?.to_vec1::<f32>()?[0];
    assert!((y0 - (-3.0 / (5.0f32 + 1e-5).sqrt())).abs() < 1e-5, "{y0}");
    // Eval uses the running stats: (1 - 0.4) / sqrt(rv0 + eps).
    let ye = bn
        .forward(&x, BnMode::Eval, false)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert!(
        (ye[0] - 0.6 / (rv[0] + 1e-5).sqrt()).abs() < 1e-5,
        "{}",
        ye[0]
    );
    // Eval and BatchStats leave the running stats unchanged.
    let ys = bn.forward(&x, BnMode::BatchStats, true)?;
    assert_eq!(bn.running_mean().to_vec1::<f32>()?, rm);
    assert_eq!(bn.running_var().to_vec1::<f32>()?, rv);
    // BatchStats normalises with the batch (same as Train) and the fused ReLU zeroes negatives.
    let ys = ys.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(ys[0], 0.0);
    assert!((ys[4] - y.flatten_all()?.to_vec1::<f32>()?[4]).abs() < 1e-6);
    // A second Train step compounds: rm0 = 0.9*0.4 + 0.1*4.
    bn.forward(&x, BnMode::Train, false)?;
    assert!((bn.running_mean().to_vec1::<f32>()?[0] - 0.76).abs() < 1e-6);
    Ok(())
}

#[test]
fn frozen_batch_norm_refuses_train_mode_and_tiny_batches() -> Result<()> {
    let mut ts = std::collections::HashMap::new();
    ts.insert(
        "weight".to_string(),
        Tensor::ones(2, DType::F32, &Device::Cpu)?,
    );
    ts.insert(
        "bias".to_string(),
        Tensor::zeros(2, DType::F32, &Device::Cpu)?,
    );
    ts.insert(
        "running_mean".to_string(),
        Tensor::zeros(2, DType::F32, &Device::Cpu)?,
    );
    ts.insert(
        "running_var".to_string(),
        Tensor::ones(2, DType::F32, &Device::Cpu)?,
    );
    let bn = BatchNorm::new(
        2,
        VarBuilder::from_tensors(ts, DType::F32, &Device::Cpu),
        "frozen",
    )?;
    let x = bn_input()?;
    assert!(bn.forward(&x, BnMode::Train, false).is_err());
    assert!(bn.forward(&x, BnMode::BatchStats, false).is_ok());
    assert!(bn.forward(&x, BnMode::Eval, false).is_ok());
    let one = Tensor::ones((1, 2), DType::F32, &Device::Cpu)?;
    assert!(bn.forward(&one, BnMode::BatchStats, false).is_err());
    Ok(())
}

#[test]
fn trainable_excludes_running_stats() -> Result<()> {
    let (vm, _) = resnet(4, 3, 1)?;
    let all = sorted_vars(&vm);
    let tr = trainable(&vm, "backbone.");
    assert!(tr.iter().all(|(n, _)| !n.contains("running")));
    assert_eq!(all.len() - tr.len(), 40); // 20 BN layers x (mean, var)
    let names: Vec<&String> = tr.iter().map(|(n, _)| n).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(trainable(&vm, "projector.").is_empty());
    Ok(())
}

#[test]
fn mask_unseen_masks_only_unseen_columns() -> Result<()> {
    let logits = Tensor::from_vec(vec![1f32, 2., 3., 4., 5., 6.], (2, 3), &Device::Cpu)?;
    let m = mask_unseen(&logits, &[true, false, true])?.to_vec2::<f32>()?;
    assert_eq!(m[0][0], 1.0);
    assert_eq!(m[1][2], 6.0);
    assert!(m[0][1] <= -1e8 && m[1][1] <= -1e8);
    assert!(mask_unseen(&logits, &[true, false]).is_err());
    Ok(())
}
