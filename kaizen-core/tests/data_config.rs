//! The dataset a config describes: fixed normalisation statistics (`data.mean` / `data.std`) and their checks, on
//! the built-in Fashion-MNIST subset.

use anyhow::Result;
use kaizen_core::config::ExperimentConfig;
use kaizen_core::data::load_config_dataset;

#[test]
fn fixed_normalisation_replaces_the_measured_one_and_is_checked() -> Result<()> {
    let mut cfg = ExperimentConfig::default();
    cfg.data.train_per_class = 20;
    cfg.data.test_per_class = 5;
    let measured = load_config_dataset(&cfg)?;
    assert!(
        measured.mean[0] > 0.2 && measured.mean[0] < 0.4,
        "{:?}",
        measured.mean
    );

    cfg.data.mean = vec![0.5];
    cfg.data.std = vec![0.25];
    cfg.validate()?;
    let fixed = load_config_dataset(&cfg)?;
    assert_eq!(
        (fixed.mean.clone(), fixed.std.clone()),
        (vec![0.5], vec![0.25])
    );
    assert_eq!(fixed.train.labels(), measured.train.labels());

    // Three values for a 1-channel dataset: an error naming the keys and the channel count.
    cfg.data.mean = vec![0.485, 0.456, 0.406];
    cfg.data.std = vec![0.229, 0.224, 0.225];
    let e = load_config_dataset(&cfg).unwrap_err().to_string();
    assert!(e.contains("data.mean") && e.contains("1 channels"), "{e}");
    // Only one of the two, or a zero std: refused by validation.
    cfg.data.std.clear();
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("data.mean"));
    cfg.data.mean = vec![0.5];
    cfg.data.std = vec![0.0];
    assert!(cfg.validate().unwrap_err().to_string().contains("data.std"));
    Ok(())
}
