//! `kaizen`: Kaizen (Tang et al. 2024): the SSL loss, the classifier's cross-entropy on the available labels,
//! CaSSLe's feature distillation and the soft-label distillation of the frozen previous classifier, with a
//! labelled replay memory (1% of each finished task's labelled images by default).

use super::traits::Strategy;
use crate::terms::{ClassifierCe, ClassifierDistill, FeatureDistill, LossTerm, Ssl, TermSetup};

/// The `kaizen` strategy.
pub struct Kaizen;

impl Strategy for Kaizen {
    fn name(&self) -> &'static str {
        "kaizen"
    }
    fn about(&self) -> &'static str {
        "SSL + CE + feature distillation + classifier distillation, labelled replay (the paper's method)"
    }
    fn terms(&self, setup: &TermSetup<'_>) -> Vec<Box<dyn LossTerm>> {
        vec![
            Box::new(Ssl::new(setup)),
            Box::new(ClassifierCe::new(setup)),
            Box::new(FeatureDistill::new(setup)),
            Box::new(ClassifierDistill::new(setup)),
        ]
    }
    fn replay(&self) -> bool {
        true
    }
}
