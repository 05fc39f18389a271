//! The name -> component registry: SSL methods, feature distillers, strategies and datasets by the names
//! a config uses. [`Registry::builtin`] holds everything this crate ships; a program built on kaizen-core
//! adds its own components with the `with_*` builders and hands the registry to
//! [`crate::train::start_with`] (see `examples/`). A later registration under an existing name replaces
//! the earlier one.

use crate::config::ExperimentConfig;
use crate::data::{apply_caps, apply_normalisation, load_config_dataset};
use crate::distill::{self, DistillerFactory};
use crate::error::CoreError;
use crate::methods::{self, MethodFactory};
use crate::network::Heads;
use crate::strategy::{self, Strategy};
use kaizen_data::Dataset;
use std::sync::Arc;

/// Loads a user-registered dataset for a config (its `data.*` keys are the loader's to read).
pub type DatasetLoader = dyn Fn(&ExperimentConfig) -> Result<Dataset, CoreError> + Send + Sync;

/// The components a run can name.
#[derive(Clone)]
pub struct Registry {
    methods: Vec<Arc<dyn MethodFactory>>,
    distillers: Vec<Arc<dyn DistillerFactory>>,
    strategies: Vec<Arc<dyn Strategy>>,
    datasets: Vec<(String, Arc<DatasetLoader>)>,
}

/// Look `name` up among `items`, or an [`CoreError::UnknownName`] listing the valid names.
fn find<'a, T: ?Sized>(
    items: &'a [Arc<T>],
    what: &'static str,
    name: &str,
    name_of: impl Fn(&T) -> &str,
) -> Result<&'a Arc<T>, CoreError> {
    items
        .iter()
        .find(|x| name_of(x) == name)
        .ok_or_else(|| CoreError::UnknownName {
            what,
            name: name.to_string(),
            valid: items
                .iter()
                .map(|x| name_of(x).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Append `item`, replacing an item of the same name.
fn upsert<T: ?Sized>(items: &mut Vec<Arc<T>>, item: Arc<T>, name_of: impl Fn(&T) -> &str) {
    let name = name_of(&item).to_string();
    items.retain(|x| name_of(x) != name);
    items.push(item);
}

impl Registry {
    /// An empty registry (no method, distiller, strategy or extra dataset).
    pub fn empty() -> Self {
        Self {
            methods: Vec::new(),
            distillers: Vec::new(),
            strategies: Vec::new(),
            datasets: Vec::new(),
        }
    }

    /// Everything kaizen-core ships, in the order help texts list it.
    pub fn builtin() -> Self {
        Self::empty()
            .with_method(methods::byol::ByolFactory)
            .with_method(methods::simclr::SimClrFactory)
            .with_method(methods::mocov2plus::MocoV2PlusFactory)
            .with_method(methods::vicreg::VicRegFactory)
            .with_method(methods::barlow::BarlowFactory)
            .with_method(methods::simsiam::SimSiamFactory)
            .with_distiller(distill::predictive::PredictiveFactory)
            .with_distiller(distill::contrastive::ContrastiveFactory)
            .with_distiller(distill::predictive_mse::PredictiveMseFactory)
            .with_distiller(distill::decorrelative::DecorrelativeFactory)
            .with_strategy(strategy::kaizen::Kaizen)
            .with_strategy(strategy::cassle::Cassle)
            .with_strategy(strategy::finetune::Finetune)
            .with_strategy(strategy::replay::Replay)
            .with_strategy(strategy::joint::Joint)
            .with_strategy(strategy::random::Random)
    }

    /// Register an SSL method under its [`MethodFactory::name`].
    pub fn with_method(mut self, m: impl MethodFactory + 'static) -> Self {
        upsert(&mut self.methods, Arc::new(m), |m| m.name());
        self
    }

    /// Register a feature distiller under its [`DistillerFactory::name`].
    pub fn with_distiller(mut self, d: impl DistillerFactory + 'static) -> Self {
        upsert(&mut self.distillers, Arc::new(d), |d| d.name());
        self
    }

    /// Register a strategy under its [`Strategy::name`].
    pub fn with_strategy(mut self, s: impl Strategy + 'static) -> Self {
        upsert(&mut self.strategies, Arc::new(s), |s| s.name());
        self
    }

    /// Register a dataset: a config with `data.dataset = name` is loaded by `loader` instead of the
    /// built-in readers.
    pub fn with_dataset(
        mut self,
        name: &str,
        loader: impl Fn(&ExperimentConfig) -> Result<Dataset, CoreError> + Send + Sync + 'static,
    ) -> Self {
        self.datasets.retain(|(n, _)| n != name);
        self.datasets.push((name.to_string(), Arc::new(loader)));
        self
    }

    /// The method named `name`.
    pub fn method(&self, name: &str) -> Result<&dyn MethodFactory, CoreError> {
        find(&self.methods, "method", name, |m| m.name()).map(|m| m.as_ref())
    }

    /// The distiller named `name`.
    pub fn distiller(&self, name: &str) -> Result<&dyn DistillerFactory, CoreError> {
        find(&self.distillers, "distiller", name, |d| d.name()).map(|d| d.as_ref())
    }

    /// The strategy named `name`.
    pub fn strategy(&self, name: &str) -> Result<Arc<dyn Strategy>, CoreError> {
        find(&self.strategies, "strategy", name, |s| s.name()).cloned()
    }

    /// Names and one-line descriptions of the methods.
    pub fn methods(&self) -> Vec<(&'static str, &'static str)> {
        self.methods.iter().map(|m| (m.name(), m.about())).collect()
    }

    /// Names of the distillers.
    pub fn distillers(&self) -> Vec<&'static str> {
        self.distillers.iter().map(|d| d.name()).collect()
    }

    /// Names and one-line descriptions of the strategies.
    pub fn strategies(&self) -> Vec<(&'static str, &'static str)> {
        self.strategies
            .iter()
            .map(|s| (s.name(), s.about()))
            .collect()
    }

    /// The feature distiller of a config: `distiller`, or the method's paired one when it is `auto`.
    pub fn distiller_for(
        &self,
        cfg: &ExperimentConfig,
    ) -> Result<&dyn DistillerFactory, CoreError> {
        if cfg.distiller == "auto" {
            self.distiller(self.method(&cfg.method)?.default_distiller())
        } else {
            self.distiller(&cfg.distiller)
        }
    }

    /// The SSL heads of a config's method.
    pub fn heads(&self, cfg: &ExperimentConfig) -> Result<Heads, CoreError> {
        let m = self.method(&cfg.method)?;
        Ok(Heads {
            projector: m.projector(),
            predictor: m.has_predictor(),
        })
    }

    /// Every check of a config: its values ([`ExperimentConfig::validate`]), its names (method, distiller,
    /// strategy) and the method's own checks.
    pub fn validate(&self, cfg: &ExperimentConfig) -> Result<(), CoreError> {
        cfg.validate()?;
        self.strategy(&cfg.strategy)?;
        self.distiller_for(cfg)?;
        self.method(&cfg.method)?.validate(cfg)?;
        Ok(())
    }

    /// Settings of a config that are valid but known to go wrong, as messages for the user.
    pub fn warnings(&self, cfg: &ExperimentConfig) -> Vec<String> {
        self.method(&cfg.method)
            .map(|m| m.warnings(cfg))
            .unwrap_or_default()
    }

    /// The dataset a config names: a registered loader, else the built-in readers; the per-class caps
    /// (`data.train_per_class`, `data.test_per_class`) apply to both.
    pub fn load_dataset(&self, cfg: &ExperimentConfig) -> Result<Dataset, CoreError> {
        match self.datasets.iter().find(|(n, _)| *n == cfg.data.dataset) {
            Some((_, loader)) => apply_normalisation(apply_caps(loader(cfg)?, cfg), cfg),
            None => load_config_dataset(cfg),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}
