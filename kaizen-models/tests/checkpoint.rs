//! Checkpoint round trip, corruption / truncation / wrong-model errors, torchvision export and import.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kaizen_models::checkpoint::{
    check_against, expected_backbone, load, load_plain, manifest_json_path, restore_varmap, save,
    save_plain, varmap_tensors, Manifest, NamedTensors,
};
use kaizen_models::init::init_vars;
use kaizen_models::torchvision::{export_backbone, import_backbone};
use kaizen_models::{BnMode, ModelError, ResNet, ResNetConfig};

fn cfg(width: usize) -> ResNetConfig {
    ResNetConfig {
        width,
        in_channels: 3,
        ..Default::default()
    }
}

fn model(width: usize, seed: u64) -> Result<(VarMap, ResNet)> {
    let vm = VarMap::new();
    let net = ResNet::new(
        &cfg(width),
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu).pp("backbone"),
    )?;
    init_vars(&vm, seed)?;
    // one train-mode pass so running statistics are not trivial
    net.forward(&image()?, BnMode::Train)?;
    Ok((vm, net))
}

fn image() -> Result<Tensor> {
    let v: Vec<f32> = (0..2 * 3 * 6 * 6)
        .map(|i| (i as f32 * 0.61).cos())
        .collect();
    Ok(Tensor::from_vec(v, (2, 3, 6, 6), &Device::Cpu)?)
}

fn bits(t: &Tensor) -> Result<Vec<u32>> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .map(|v| v.to_bits())
        .collect())
}

fn saved(dir: &Path, width: usize) -> Result<(std::path::PathBuf, NamedTensors, Manifest)> {
    let (vm, _) = model(width, 5)?;
    let mut tensors = varmap_tensors(&vm, "");
    tensors.insert("optim.step".into(), Tensor::new(42i64, &Device::Cpu)?);
    let mut m = Manifest::for_backbone(&cfg(width));
    m.seed = 7;
    m.task_index = Some(2);
    m.class_order = vec![3, 1, 2, 0];
    m.config_hash = "abc".into();
    m.extra = serde_json::json!({"step": 42});
    let path = dir.join("ckpt.safetensors");
    save(&path, &tensors, &m)?;
    Ok((path, tensors, m))
}

#[test]
fn round_trip_is_bit_exact_with_manifest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (path, tensors, m) = saved(dir.path(), 2)?;
    let (back, m2) = load(&path, &Device::Cpu)?;
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        tensors.keys().collect::<Vec<_>>()
    );
    for (name, t) in &tensors {
        if t.dtype() == DType::F32 {
            assert_eq!(bits(t)?, bits(&back[name])?, "{name}");
        }
    }
    assert_eq!(back["optim.step"].to_scalar::<i64>()?, 42);
    assert_eq!(
        (m2.seed, m2.task_index, m2.class_order.clone()),
        (7, Some(2), vec![3, 1, 2, 0])
    );
    assert_eq!(m2.extra, m.extra);
    assert_eq!(m2.backbone_config(&path)?, cfg(2));
    assert_eq!(m2.tensors["backbone.conv1.weight"].shape, vec![2, 3, 3, 3]);
    assert_eq!(m2.tensors["backbone.conv1.weight"].dtype, "f32");
    // the human-readable copy is the same manifest
    let json: Manifest =
        serde_json::from_str(&std::fs::read_to_string(manifest_json_path(&path))?)?;
    assert_eq!(json, m2);
    // no temporary files left behind
    let names: Vec<String> = std::fs::read_dir(dir.path())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    assert_eq!(names.len(), 2, "{names:?}");
    // restoring into a freshly built model reproduces the eval features exactly
    let (vm, net) = model(2, 99)?;
    restore_varmap(&vm, &back, "backbone.", &path.display().to_string())?;
    let vm0 = VarMap::new();
    let net0 = ResNet::new(
        &cfg(2),
        VarBuilder::from_varmap(&vm0, DType::F32, &Device::Cpu).pp("backbone"),
    )?;
    restore_varmap(&vm0, &tensors, "backbone.", "original")?;
    assert_eq!(
        bits(&net.forward(&image()?, BnMode::Eval)?)?,
        bits(&net0.forward(&image()?, BnMode::Eval)?)?
    );
    Ok(())
}

#[test]
fn truncated_and_corrupted_files_are_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (path, _, m) = saved(dir.path(), 2)?;
    let bytes = std::fs::read(&path)?;

    let trunc = dir.path().join("trunc.safetensors");
    std::fs::write(&trunc, &bytes[..bytes.len() - 10])?;
    let r = load(&trunc, &Device::Cpu);
    assert!(
        matches!(&r, Err(ModelError::Corrupt { path, .. }) if path == &trunc),
        "{r:?}"
    );
    assert!(r
        .as_ref()
        .err()
        .map(|e| e.to_string().contains("trunc.safetensors"))
        .unwrap_or(false));

    std::fs::write(&trunc, &bytes[..5])?;
    assert!(matches!(
        load(&trunc, &Device::Cpu),
        Err(ModelError::Corrupt { .. })
    ));

    // flip one byte inside the data of a known tensor: the checksum names it
    let header_len = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len])?;
    let off = header["backbone.layer1.0.conv2.weight"]["data_offsets"][0]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no offsets"))? as usize;
    let mut bad = bytes.clone();
    bad[8 + header_len + off + 1] ^= 0x40;
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, &bad)?;
    let r = load(&corrupt, &Device::Cpu);
    assert!(
        matches!(&r, Err(ModelError::Checksum { name, .. }) if name == "backbone.layer1.0.conv2.weight"),
        "{r:?}"
    );

    // a file written without a manifest is refused with a pointer to `kaizen import`
    let plain = dir.path().join("plain.safetensors");
    save_plain(
        &plain,
        &BTreeMap::from([("a".to_string(), Tensor::zeros(2, DType::F32, &Device::Cpu)?)]),
    )?;
    let r = load(&plain, &Device::Cpu);
    assert!(matches!(&r, Err(ModelError::Manifest { .. })), "{r:?}");
    assert_eq!(load_plain(&plain, &Device::Cpu)?["a"].dims(), &[2]);

    // a missing file is an I/O error naming it
    assert!(matches!(
        load(&dir.path().join("nope"), &Device::Cpu),
        Err(ModelError::Io { .. })
    ));
    let _ = m;
    Ok(())
}

#[test]
fn wrong_model_names_the_first_mismatching_tensor() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (path, _, _) = saved(dir.path(), 2)?;
    let (tensors, _) = load(&path, &Device::Cpu)?;
    let bb: NamedTensors = tensors
        .iter()
        .filter(|(n, _)| n.starts_with("backbone."))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    check_against("ckpt", &bb, &expected_backbone(&cfg(2), "backbone.")?)?;
    // another width: the first tensor in name order with another shape
    let r = check_against("ckpt", &bb, &expected_backbone(&cfg(4), "backbone.")?);
    assert!(
        matches!(&r, Err(ModelError::ShapeMismatch { name, expected, got, .. })
        if name == "backbone.bn1.bias" && expected == &vec![4] && got == &vec![2]),
        "{r:?}"
    );
    // a missing tensor
    let mut missing = bb.clone();
    missing.remove("backbone.layer3.1.bn2.running_var");
    let r = check_against("ckpt", &missing, &expected_backbone(&cfg(2), "backbone.")?);
    assert!(
        matches!(&r, Err(ModelError::MissingTensor { name, .. }) if name == "backbone.layer3.1.bn2.running_var"),
        "{r:?}"
    );
    // an extra tensor
    let mut extra = bb.clone();
    extra.insert(
        "backbone.fc.weight".into(),
        Tensor::zeros((1, 16), DType::F32, &Device::Cpu)?,
    );
    let r = check_against("ckpt", &extra, &expected_backbone(&cfg(2), "backbone.")?);
    assert!(
        matches!(&r, Err(ModelError::UnexpectedTensor { name, .. }) if name == "backbone.fc.weight"),
        "{r:?}"
    );
    // restore_varmap into a wider model fails and writes nothing
    let (vm, _) = model(4, 1)?;
    let before = varmap_tensors(&vm, "")["backbone.conv1.weight"]
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert!(restore_varmap(&vm, &tensors, "backbone.", "ckpt").is_err());
    assert_eq!(
        varmap_tensors(&vm, "")["backbone.conv1.weight"]
            .flatten_all()?
            .to_vec1::<f32>()?,
        before
    );
    Ok(())
}

#[test]
fn torchvision_export_import_round_trip() -> Result<()> {
    let (vm, _) = model(2, 3)?;
    let mut tensors = varmap_tensors(&vm, "");
    tensors.insert(
        "projector.0.weight".into(),
        Tensor::zeros((3, 16), DType::F32, &Device::Cpu)?,
    );
    let tv = export_backbone(&tensors, &cfg(2), "ckpt")?;
    // torchvision names, no prefix, num_batches_tracked as int64 scalars, nothing else
    assert!(
        tv.contains_key("conv1.weight") && tv.contains_key("layer2.0.downsample.1.running_mean")
    );
    assert_eq!(tv["bn1.num_batches_tracked"].dtype(), DType::I64);
    assert_eq!(tv["bn1.num_batches_tracked"].dims(), &[] as &[usize]);
    assert_eq!(tv.len(), 100 + 20);
    assert!(tv
        .keys()
        .all(|k| !k.starts_with("projector") && !k.starts_with("backbone")));

    // add a torch classifier head; import drops it and num_batches_tracked
    let mut torch = tv.clone();
    torch.insert(
        "fc.weight".into(),
        Tensor::zeros((10, 16), DType::F32, &Device::Cpu)?,
    );
    torch.insert(
        "fc.bias".into(),
        Tensor::zeros(10, DType::F32, &Device::Cpu)?,
    );
    let back = import_backbone(&torch, &cfg(2), "torch.safetensors")?;
    assert_eq!(back.len(), 100);
    for (name, t) in &back {
        assert_eq!(bits(t)?, bits(&tensors[name])?, "{name}");
    }
    // solo-learn style `backbone.`-prefixed names are accepted too
    let prefixed: NamedTensors = tv
        .iter()
        .map(|(n, t)| (format!("backbone.{n}"), t.clone()))
        .collect();
    assert_eq!(import_backbone(&prefixed, &cfg(2), "x")?.len(), 100);
    // a missing tensor is named
    torch.remove("layer4.0.conv1.weight");
    let r = import_backbone(&torch, &cfg(2), "torch.safetensors");
    assert!(
        matches!(&r, Err(ModelError::MissingTensor { name, origin }) if name == "layer4.0.conv1.weight" && origin == "torch.safetensors"),
        "{r:?}"
    );
    // a checkpoint of another width cannot be exported with this config
    assert!(matches!(
        export_backbone(&tensors, &cfg(4), "ckpt"),
        Err(ModelError::ShapeMismatch { .. })
    ));
    Ok(())
}
