//! `ssl`: the self-supervised method's loss on the two views (L_FE^CT), weight `loss.ssl`.

use super::context::{LossTerm, StepContext, TermSetup};
use crate::error::CoreError;
use crate::methods::SslInputs;
use candle_core::Tensor;

/// The SSL term.
pub struct Ssl {
    /// Weight in the total.
    pub weight: f64,
}

impl Ssl {
    /// The term with the config's weight `loss.ssl`.
    pub fn new(setup: &TermSetup<'_>) -> Self {
        Self {
            weight: setup.cfg.loss.ssl,
        }
    }
}

impl LossTerm for Ssl {
    fn name(&self) -> &'static str {
        "ssl"
    }
    fn weight(&self) -> f64 {
        self.weight
    }
    fn loss(&mut self, cx: &mut StepContext<'_, '_>) -> Result<Option<Tensor>, CoreError> {
        let inputs = SslInputs {
            x1: cx.batch.view1,
            x2: cx.batch.view2,
            z1: &cx.z[0],
            z2: &cx.z[1],
        };
        Ok(Some(cx.models.method.loss(cx.models.online, &inputs)?))
    }
}
