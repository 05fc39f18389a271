//! `replay`: fine-tuning plus Kaizen's labelled replay memory, without either distillation term: it isolates what
//! the two distillation terms add on top of replaying 1% of the old labelled images.

use super::traits::Strategy;
use crate::terms::{ClassifierCe, LossTerm, Ssl, TermSetup};

/// The `replay` strategy.
pub struct Replay;

impl Strategy for Replay {
    fn name(&self) -> &'static str {
        "replay"
    }
    fn about(&self) -> &'static str {
        "SSL + CE with Kaizen's labelled replay, no distillation (what replay alone buys)"
    }
    fn terms(&self, setup: &TermSetup<'_>) -> Vec<Box<dyn LossTerm>> {
        vec![
            Box::new(Ssl::new(setup)),
            Box::new(ClassifierCe::new(setup)),
        ]
    }
    fn replay(&self) -> bool {
        true
    }
}
