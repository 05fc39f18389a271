//! `finetune`: fine-tuning: the SSL loss and the classifier's cross-entropy on each task in turn, nothing against
//! forgetting (the lower bound a continual method must beat).

use super::traits::Strategy;
use crate::terms::{ClassifierCe, LossTerm, Ssl, TermSetup};

/// The `finetune` strategy.
pub struct Finetune;

impl Strategy for Finetune {
    fn name(&self) -> &'static str {
        "finetune"
    }
    fn about(&self) -> &'static str {
        "SSL + CE on each task in turn, nothing against forgetting"
    }
    fn terms(&self, setup: &TermSetup<'_>) -> Vec<Box<dyn LossTerm>> {
        vec![
            Box::new(Ssl::new(setup)),
            Box::new(ClassifierCe::new(setup)),
        ]
    }
}
