//! `cassle`: CaSSLe (Fini et al. 2022) with Kaizen's classifier: the SSL loss, feature distillation of the frozen
//! previous feature extractor, and the classifier's cross-entropy; no classifier distillation, no replay.

use super::traits::Strategy;
use crate::terms::{ClassifierCe, FeatureDistill, LossTerm, Ssl, TermSetup};

/// The `cassle` strategy.
pub struct Cassle;

impl Strategy for Cassle {
    fn name(&self) -> &'static str {
        "cassle"
    }
    fn about(&self) -> &'static str {
        "SSL + CE + feature distillation (no classifier distillation, no replay)"
    }
    fn terms(&self, setup: &TermSetup<'_>) -> Vec<Box<dyn LossTerm>> {
        vec![
            Box::new(Ssl::new(setup)),
            Box::new(ClassifierCe::new(setup)),
            Box::new(FeatureDistill::new(setup)),
        ]
    }
}
