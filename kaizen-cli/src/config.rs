//! Resolving a run's configuration: built-in defaults <- preset <- `--config FILE.toml` <- flags <- `--set`.
//!
//! Every layer is a TOML tree merged key by key onto the defaults. Before deserialising, each layer's keys
//! are checked against the default tree, so an unknown key is reported with the layer it came from and the
//! valid keys at that level.

use anyhow::{bail, Context, Result};
use kaizen_core::config::{dotted_key, ExperimentConfig};
use serde::Deserialize;
use toml::Value;

/// Built-in presets: (name, description, TOML).
pub const PRESETS: &[(&str, &str, &str)] = &[
    (
        "smoke",
        "seconds: 2 tasks, tiny width (what the tests run)",
        include_str!("../../configs/presets/smoke.toml"),
    ),
    (
        "mini",
        "default: built-in Fashion-MNIST subset, 5 tasks x 2 classes, width 8",
        include_str!("../../configs/presets/mini.toml"),
    ),
    (
        "fmnist",
        "full Fashion-MNIST from --data-root, 5 tasks, width 16",
        include_str!("../../configs/presets/fmnist.toml"),
    ),
    (
        "cifar100-paper",
        "the paper's split CIFAR-100 setting (GPU, CIFAR-100 binary on disk)",
        include_str!("../../configs/presets/cifar100-paper.toml"),
    ),
    (
        "imagenet100-paper",
        "Kaizen on ImageNet-100 with CaSSLe's recipe, 224x224 (GPU, ImageNet folders on disk)",
        include_str!("../../configs/presets/imagenet100-paper.toml"),
    ),
];

/// The TOML text of a preset, or an error listing the presets.
pub fn preset_text(name: &str) -> Result<&'static str> {
    PRESETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, t)| *t)
        .ok_or_else(|| {
            let names: Vec<_> = PRESETS.iter().map(|(n, _, _)| *n).collect();
            anyhow::anyhow!(
                "unknown preset `{name}`; valid presets: {}",
                names.join(", ")
            )
        })
}

/// The configuration being assembled.
pub struct Resolver {
    defaults: Value,
    tree: Value,
}

impl Resolver {
    /// Start from the built-in defaults.
    pub fn new() -> Result<Self> {
        let defaults = Value::try_from(ExperimentConfig::default())
            .context("serialising the default config")?;
        Ok(Self {
            tree: defaults.clone(),
            defaults,
        })
    }

    /// Merge a TOML document (preset or file); `source` names it in errors.
    pub fn merge_toml(&mut self, text: &str, source: &str) -> Result<()> {
        let layer: Value = toml::from_str::<toml::Table>(text)
            .map(Value::Table)
            .with_context(|| format!("{source} is not valid TOML"))?;
        check_keys(&layer, &self.defaults, "", source)?;
        merge(&mut self.tree, layer);
        Ok(())
    }

    /// Apply one `key.path=value` override. The value is parsed as TOML (`3`, `0.5`, `true`, `[1, 2]`,
    /// `"text"`), and taken as a plain string when it is not valid TOML (so `method=byol` works).
    pub fn set(&mut self, assignment: &str, source: &str) -> Result<()> {
        let Some((key, raw)) = assignment.split_once('=') else {
            bail!("{source} `{assignment}`: expected key=value, e.g. --set train.epochs=3");
        };
        let key = key.trim();
        let raw = raw.trim();
        if key.split('.').any(|part| part.trim().is_empty()) {
            bail!(
                "{source} `{assignment}`: the key `{key}` has an empty part; write section.key, e.g. --set train.epochs=3"
            );
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(raw.to_string()));
        let mut layer = value;
        for part in key.split('.').rev() {
            let mut t = toml::Table::new();
            t.insert(part.to_string(), layer);
            layer = Value::Table(t);
        }
        check_keys(
            &layer,
            &self.defaults,
            "",
            &format!("{source} `{assignment}`"),
        )?;
        // A number given where the default is a float must stay a float (e.g. `loss.ssl=1`).
        coerce_like(&mut layer, &self.defaults);
        merge(&mut self.tree, layer);
        Ok(())
    }

    /// Deserialise and validate.
    pub fn finish(self) -> Result<ExperimentConfig> {
        let cfg: ExperimentConfig = match self.tree.clone().try_into() {
            Ok(cfg) => cfg,
            Err(e) => {
                let e: toml::de::Error = e;
                return Err(match culprit(&self.tree, &self.defaults) {
                    Some(key) => anyhow::anyhow!("config key `{key}`: {}", e.message()),
                    None => anyhow::anyhow!("invalid configuration: {}", e.message()),
                });
            }
        };
        kaizen_core::Registry::builtin().validate(&cfg)?;
        Ok(cfg)
    }
}

fn check_keys(layer: &Value, defaults: &Value, path: &str, source: &str) -> Result<()> {
    let (Value::Table(l), Value::Table(d)) = (layer, defaults) else {
        return Ok(());
    };
    for (k, v) in l {
        let full = dotted_key(path, k);
        match d.get(k) {
            None => {
                let mut valid: Vec<String> = d
                    .iter()
                    .map(|(name, val)| {
                        let name = dotted_key(path, name);
                        if val.is_table() {
                            format!("{name}.*")
                        } else {
                            name
                        }
                    })
                    .collect();
                valid.sort();
                bail!(
                    "{source}: unknown config key `{full}`; valid keys here: {}",
                    valid.join(", ")
                );
            }
            Some(dv) => {
                if dv.is_table() && !v.is_table() {
                    bail!("{source}: `{full}` is a section, not a value; set one of its keys, e.g. `{full}.<key>=...`");
                }
                if !dv.is_table() && !same_kind(v, dv) {
                    bail!(
                        "{source}: `{full}` must be {}, got {}",
                        describe(dv),
                        brief(v)
                    );
                }
                check_keys(v, dv, &full, source)?;
            }
        }
    }
    Ok(())
}

/// The changed key whose value makes the config fail to deserialise: the first leaf that differs from its default
/// and that, reset to the default, lets the rest deserialise.
fn culprit(tree: &Value, defaults: &Value) -> Option<String> {
    let mut changed = Vec::new();
    changed_leaves(tree, defaults, "", &mut changed);
    changed.into_iter().find(|key| {
        let mut t = tree.clone();
        let (mut node, mut d) = (&mut t, defaults);
        for part in key.split('.') {
            let (Value::Table(nt), Value::Table(dt)) = (node, d) else {
                return false;
            };
            let (Some(n), Some(dv)) = (nt.get_mut(part), dt.get(part)) else {
                return false;
            };
            node = n;
            d = dv;
        }
        *node = d.clone();
        ExperimentConfig::deserialize(t).is_ok()
    })
}

fn changed_leaves(tree: &Value, defaults: &Value, path: &str, out: &mut Vec<String>) {
    if let (Value::Table(t), Value::Table(d)) = (tree, defaults) {
        for (k, v) in t {
            let full = dotted_key(path, k);
            match d.get(k) {
                Some(dv) if dv.is_table() => changed_leaves(v, dv, &full, out),
                Some(dv) if dv == v => {}
                _ => out.push(full),
            }
        }
    }
}

/// Whether `v` can stand where the default `d` is (an integer may stand for a float).
fn same_kind(v: &Value, d: &Value) -> bool {
    matches!(
        (v, d),
        (Value::String(_), Value::String(_))
            | (Value::Integer(_), Value::Integer(_) | Value::Float(_))
            | (Value::Float(_), Value::Float(_))
            | (Value::Boolean(_), Value::Boolean(_))
            | (Value::Array(_), Value::Array(_))
            | (Value::Table(_), Value::Table(_))
            | (Value::Datetime(_), Value::Datetime(_))
    )
}

/// The kind of value a key takes, with its default as the example.
fn describe(d: &Value) -> String {
    let kind = match d {
        Value::String(_) => "a string",
        Value::Integer(_) => "a whole number",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Array(_) => "a list",
        Value::Table(_) => "a section",
        Value::Datetime(_) => "a date",
    };
    format!("{kind} (default {d})")
}

/// A value as an error message shows it: scalars and flat lists in full, anything nested by its kind only (a
/// deeply nested table, e.g. from `a.b.c.d...` dotted keys, would otherwise be rendered recursively).
fn brief(v: &Value) -> String {
    match v {
        Value::Table(_) => "a section (a table of keys)".to_string(),
        Value::Array(a) if a.iter().any(|x| x.is_table() || x.is_array()) => {
            "a nested list".to_string()
        }
        other => other.to_string(),
    }
}

fn coerce_like(layer: &mut Value, defaults: &Value) {
    match (layer, defaults) {
        (Value::Table(l), Value::Table(d)) => {
            for (k, v) in l.iter_mut() {
                if let Some(dv) = d.get(k) {
                    coerce_like(v, dv);
                }
            }
        }
        (v @ Value::Integer(_), Value::Float(_)) => {
            if let Value::Integer(i) = *v {
                *v = Value::Float(i as f64);
            }
        }
        _ => {}
    }
}

fn merge(base: &mut Value, layer: Value) {
    match (base, layer) {
        (Value::Table(b), Value::Table(l)) => {
            for (k, v) in l {
                match b.get_mut(&k) {
                    Some(bv) if bv.is_table() && v.is_table() => merge(bv, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, l) => *b = l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the `config` fuzz target does with one input: the text as a config file, its lines as `--set`s.
    fn resolve_like_the_fuzzer(text: &str) -> (Result<ExperimentConfig>, Result<ExperimentConfig>) {
        let file = Resolver::new().and_then(|mut r| {
            r.merge_toml(text, "fuzz.toml")?;
            r.finish()
        });
        let sets = Resolver::new().and_then(|mut r| {
            for line in text.lines().take(16) {
                r.set(line, "--set")?;
            }
            r.finish()
        });
        (file, sets)
    }

    #[test]
    fn fuzz_regressions_are_clean_errors() -> Result<()> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let bytes = std::fs::read(&path)?;
            let text = String::from_utf8_lossy(&bytes);
            let (file, sets) = resolve_like_the_fuzzer(&text);
            assert!(
                file.is_err(),
                "{}: resolved as a config file",
                path.display()
            );
            assert!(sets.is_err(), "{}: resolved as --set lines", path.display());
            seen += 1;
        }
        assert!(seen >= 1, "no regression input under {}", dir.display());
        Ok(())
    }

    #[test]
    fn deeply_nested_keys_are_errors_not_stack_overflows() -> Result<()> {
        // A dotted key 2000 levels deep where `train.lr` is a number. In a file the TOML parser refuses it; as a
        // `--set` the error names the key and the kind of value without rendering the nested table (that recursion
        // overflowed the stack).
        let deep = format!("train.lr{}=1", ".x".repeat(2000));
        let (file, sets) = resolve_like_the_fuzzer(&deep);
        assert!(file.is_err());
        let e = format!("{:#}", sets.err().unwrap_or_else(|| anyhow::anyhow!("")));
        assert!(
            e.contains("`train.lr` must be a number") && e.contains("got a section"),
            "{e}"
        );
        // An empty part is refused before anything is built.
        let mut r = Resolver::new()?;
        let e = format!(
            "{:#}",
            r.set("train..lr=1", "--set")
                .err()
                .unwrap_or_else(|| anyhow::anyhow!(""))
        );
        assert!(e.contains("has an empty part"), "{e}");
        Ok(())
    }

    #[test]
    fn every_preset_resolves_and_validates() -> Result<()> {
        for (name, _, text) in PRESETS {
            let mut r = Resolver::new()?;
            r.merge_toml(text, name)?;
            r.finish().with_context(|| format!("preset {name}"))?;
        }
        Ok(())
    }

    #[test]
    fn set_overrides_and_coerces() -> Result<()> {
        let mut r = Resolver::new()?;
        r.set("train.epochs=3", "--set")?;
        r.set("loss.classifier_distill=0", "--set")?;
        r.set("method=simclr", "--set")?;
        r.set("data.class_order=[1,0,2,3,4,5,6,7,8,9]", "--set")?;
        let c = r.finish()?;
        assert_eq!(c.train.epochs, 3);
        assert_eq!(c.loss.classifier_distill, 0.0);
        assert_eq!(c.method.to_string(), "simclr");
        assert_eq!(c.data.class_order[0], 1);
        Ok(())
    }

    #[test]
    fn unknown_keys_are_errors_that_list_valid_keys() -> Result<()> {
        let mut r = Resolver::new()?;
        let e = r
            .set("train.epoch=3", "--set")
            .err()
            .map(|e| format!("{e:#}"));
        let e = e.unwrap_or_default();
        assert!(e.contains("unknown config key `train.epoch`"), "{e}");
        assert!(e.contains("train.epochs"), "{e}");
        let e = r
            .merge_toml("[modle]\nwidth = 3\n", "x.toml")
            .err()
            .map(|e| format!("{e:#}"));
        assert!(e
            .unwrap_or_default()
            .contains("x.toml: unknown config key `modle`"));
        let e = r
            .set("method=nope", "--set")
            .and_then(|_| r.finish().map(|_| ()));
        assert!(format!(
            "{:#}",
            e.err().map(|e| format!("{e:#}")).unwrap_or_default()
        )
        .contains("nope"));
        Ok(())
    }

    #[test]
    fn type_and_value_errors_name_the_key_and_the_source() -> Result<()> {
        let err = |r: Result<()>| r.err().map(|e| format!("{e:#}")).unwrap_or_default();
        let mut r = Resolver::new()?;
        let e = err(r.set("train.lr=abc", "--set"));
        assert!(
            e.contains("--set `train.lr=abc`: `train.lr` must be a number"),
            "{e}"
        );
        let e = err(r.merge_toml("[train]\nepochs = 2.5\n", "my.toml"));
        assert!(
            e.contains("my.toml: `train.epochs` must be a whole number"),
            "{e}"
        );
        // an integer where a float is expected is fine
        r.set("loss.ssl=1", "--set")?;
        let mut r = Resolver::new()?;
        r.set("loss.ce_classes=some", "--set")?;
        let e = err(r.finish().map(|_| ()));
        assert!(
            e.contains("config key `loss.ce_classes`") && e.contains("`all` or `seen`"),
            "{e}"
        );
        Ok(())
    }
}
