//! The [`Trainer`]: everything a run holds (config, data, stream, models, method, strategy, terms, replay,
//! optimiser, counters, accuracy rows), built from the config and a registry.

use super::options::{Counters, RunOptions};
use super::timing::PhaseClock;
use crate::components::RunModels;
use crate::config::{ExperimentConfig, TeacherBn};
use crate::data::{build_stream, seen_classes};
use crate::error::CoreError;
use crate::eval::Protocol;
use crate::methods::SslMethod;
use crate::network::{Frozen, NetworkSpec, Online};
use crate::registry::Registry;
use crate::run_dir::config_hash;
use crate::strategy::Strategy;
use crate::terms::LossTerm;
use kaizen_data::{Augmenter, Dataset, ReplayMemory, TaskStream};
use kaizen_models::optim::Optimizer;
use kaizen_models::BnMode;
use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

/// Everything a run needs, built from the config.
pub(super) struct Trainer<'a> {
    pub cfg: ExperimentConfig,
    pub opts: &'a RunOptions,
    pub data: Arc<Dataset>,
    pub stream: TaskStream,
    pub spec: NetworkSpec,
    pub online: Online,
    pub method: Box<dyn SslMethod>,
    pub strategy: Arc<dyn Strategy>,
    pub terms: Vec<Box<dyn LossTerm>>,
    /// The resolved feature distiller's name (manifest, report).
    pub distiller: String,
    pub frozen: Option<Frozen>,
    pub replay: ReplayMemory,
    pub augmenter: Augmenter,
    pub optimizer: Option<Optimizer>,
    pub counters: Counters,
    pub matrices: BTreeMap<String, Vec<Vec<Option<f64>>>>,
    pub config_hash: String,
    /// Settings that are valid but known to go wrong (logged at the start of every attempt).
    pub warnings: Vec<String>,
    /// metrics.jsonl, opened (append) at the first line.
    pub log: Option<fs::File>,
    /// scalars.csv, opened (append) at the first row.
    pub scalars: Option<fs::File>,
    /// Seconds per phase.
    pub clock: PhaseClock,
    /// Classifier-input dump (developer tool).
    pub dump: Option<crate::dump::FeatureDump>,
}

impl<'a> Trainer<'a> {
    pub fn new(
        registry: &Registry,
        cfg: ExperimentConfig,
        opts: &'a RunOptions,
    ) -> Result<Self, CoreError> {
        registry.validate(&cfg)?;
        let data = Arc::new(registry.load_dataset(&cfg)?);
        let stream = build_stream(&cfg, data.num_classes)?;
        let RunModels {
            spec,
            online,
            method,
            strategy,
            terms,
            distiller,
        } = RunModels::build(
            registry,
            &cfg,
            data.shape.channels,
            data.num_classes,
            &opts.device,
        )?;
        let augmenter = Augmenter::new(cfg.augment.clone(), data.shape, &data.mean, &data.std)?;
        let mut warnings = registry.warnings(&cfg);
        warnings.extend(data.warnings(cfg.data.label_fraction));
        let dump = match &opts.dump_classifier_inputs {
            Some(d) => {
                let tasks: Vec<Vec<u16>> = (0..stream.num_tasks())
                    .map(|t| stream.task_classes(t).to_vec())
                    .collect();
                Some(crate::dump::FeatureDump::create(d, &tasks)?)
            }
            None => None,
        };
        Ok(Self {
            config_hash: config_hash(&cfg)?,
            distiller: distiller.to_string(),
            cfg,
            opts,
            data,
            stream,
            spec,
            online,
            method,
            strategy,
            terms,
            frozen: None,
            replay: ReplayMemory::new(),
            augmenter,
            optimizer: None,
            counters: Counters::default(),
            matrices: BTreeMap::new(),
            warnings,
            log: None,
            scalars: None,
            clock: PhaseClock::default(),
            dump,
        })
    }

    pub fn protocols(&self) -> Vec<Protocol> {
        let mut p = vec![Protocol::Classifier, Protocol::ClassifierSeen];
        if self.cfg.eval.knn {
            p.push(Protocol::Knn);
        }
        if self.cfg.eval.linear {
            p.push(Protocol::Linear);
        }
        p
    }

    pub fn teacher_mode(&self) -> BnMode {
        match self.cfg.train.teacher_bn {
            TeacherBn::Train => BnMode::BatchStats,
            TeacherBn::Eval => BnMode::Eval,
        }
    }

    /// The tasks phase `p` trains on.
    fn phase_tasks(&self, p: usize) -> std::ops::Range<usize> {
        let n = self.stream.num_tasks();
        let r = self.strategy.phase_tasks(p, n);
        r.start.min(n)..r.end.min(n)
    }

    /// The training indices of phase `p`.
    pub fn task_indices(&self, p: usize) -> Vec<u32> {
        self.phase_tasks(p)
            .flat_map(|k| self.stream.indices(&self.data.train, k))
            .collect()
    }

    /// The classes phase `p` trains on, in stream order.
    pub fn task_classes(&self, p: usize) -> Vec<u16> {
        self.phase_tasks(p)
            .flat_map(|k| self.stream.task_classes(k).iter().copied())
            .collect()
    }

    /// `seen[c]`: class c belongs to a task trained up to and including phase `p`.
    pub fn seen_classes(&self, p: usize) -> Vec<bool> {
        seen_classes(&self.stream, self.phase_tasks(p))
    }

    pub fn steps_per_epoch(&self, n: usize) -> usize {
        (n / self.cfg.train.batch_size).max(1)
    }

    /// Optimiser steps done in the current task (from the counters, for messages).
    pub fn steps_done_in_task(&self) -> usize {
        let n = self.task_indices(self.counters.task).len();
        self.counters.epoch * self.steps_per_epoch(n) + self.counters.step_in_epoch
    }

    /// Whether any enabled term reads the frozen previous-task model.
    pub fn distilling(&self) -> bool {
        self.terms
            .iter()
            .any(|t| t.weight() > 0.0 && t.needs_frozen())
    }

    pub fn build_optimizer(&self) -> Optimizer {
        crate::optim::build_optimizer(&self.cfg.train, &self.online)
    }

    /// The weight of each term in the run (0 for the standard terms the strategy does not have).
    pub fn effective_weights(&self) -> BTreeMap<&'static str, f64> {
        let mut w: BTreeMap<&'static str, f64> = ["ssl", "fe_kd", "cls_ce", "cls_kd"]
            .map(|n| (n, 0.0))
            .into();
        for t in &self.terms {
            w.insert(t.name(), t.weight());
        }
        w
    }
}
