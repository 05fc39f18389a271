//! SimSiam (Chen & He 2021): predictor + stop-gradient, the symmetric negative cosine halved.
//! Distiller: `predictive`.

use super::traits::{predict, MethodContext, MethodFactory, SslInputs, SslMethod};
use crate::error::CoreError;
use crate::loss;
use crate::network::{Online, ProjectorShape};
use candle_core::Tensor;

/// The SimSiam factory (`method = "simsiam"`).
pub struct SimSiamFactory;

impl MethodFactory for SimSiamFactory {
    fn name(&self) -> &'static str {
        "simsiam"
    }
    fn about(&self) -> &'static str {
        "SimSiam: predictor + stop-gradient"
    }
    fn projector(&self) -> ProjectorShape {
        ProjectorShape {
            hidden_layers: 2,
            batch_norm: true,
        }
    }
    fn has_predictor(&self) -> bool {
        true
    }
    fn default_distiller(&self) -> &'static str {
        "predictive"
    }
    fn build(&self, _cx: &MethodContext<'_>) -> Result<Box<dyn SslMethod>, CoreError> {
        Ok(Box::new(SimSiam))
    }
}

/// SimSiam during a run (no state).
pub struct SimSiam;

impl SslMethod for SimSiam {
    fn name(&self) -> &str {
        "simsiam"
    }
    fn loss(&mut self, online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor> {
        let p1 = predict(online, x.z1)?;
        let p2 = predict(online, x.z2)?;
        (loss::simsiam(&p1, x.z2)? + loss::simsiam(&p2, x.z1)?)? * 0.5
    }
}
