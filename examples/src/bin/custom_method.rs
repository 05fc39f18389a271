//! A user-defined SSL method plugged into the trainer: alignment + uniformity (Wang & Isola 2020) on the
//! L2-normalised projections, `align(z1, z2) + (uniform(z1) + uniform(z2)) / 2`, with a BN projector and
//! the `predictive` feature distiller. One `MethodFactory` (name, heads, defaults, builder) and one
//! `SslMethod` (the loss; no state), registered with `Registry::with_method`.

use anyhow::Result;
use candle_core::{Tensor, D};
use kaizen_core::methods::{MethodContext, MethodFactory, SslInputs, SslMethod};
use kaizen_core::network::{Online, ProjectorShape};
use kaizen_core::{CoreError, Registry};
use kaizen_examples::{out_dir, smoke_config, train_and_report};

/// The registry entry.
struct AlignUniformFactory;

impl MethodFactory for AlignUniformFactory {
    fn name(&self) -> &'static str {
        "align_uniform"
    }
    fn about(&self) -> &'static str {
        "alignment + uniformity on the hypersphere (Wang & Isola 2020)"
    }
    fn projector(&self) -> ProjectorShape {
        ProjectorShape {
            hidden_layers: 1,
            batch_norm: true,
        }
    }
    fn default_distiller(&self) -> &'static str {
        "predictive"
    }
    fn build(&self, _cx: &MethodContext<'_>) -> Result<Box<dyn SslMethod>, CoreError> {
        Ok(Box::new(AlignUniform { t: 2.0 }))
    }
}

/// The method during a run.
struct AlignUniform {
    /// Temperature of the uniformity term.
    t: f64,
}

fn normalise(z: &Tensor) -> candle_core::Result<Tensor> {
    z.broadcast_div(&(z.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + 1e-8)?)
}

impl AlignUniform {
    /// `log mean_{i != j} exp(-t |a_i - a_j|^2)` for unit rows `a` (|a_i - a_j|^2 = 2 - 2 a_i.a_j).
    fn uniformity(&self, a: &Tensor) -> candle_core::Result<Tensor> {
        let n = a.dim(0)? as f64;
        let gram = a.matmul(&a.t()?)?;
        let kernel = gram.affine(2.0 * self.t, -2.0 * self.t)?.exp()?;
        // The diagonal holds exp(0) = 1 per row: remove it from the sum.
        ((kernel.sum_all()? - n)? / (n * (n - 1.0)))?.log()
    }
}

impl SslMethod for AlignUniform {
    fn name(&self) -> &str {
        "align_uniform"
    }
    fn loss(&mut self, _online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor> {
        let (a, b) = (normalise(x.z1)?, normalise(x.z2)?);
        let align = (&a - &b)?.sqr()?.sum(D::Minus1)?.mean_all()?;
        let uniform = ((self.uniformity(&a)? + self.uniformity(&b)?)? * 0.5)?;
        align + uniform
    }
}

fn main() -> Result<()> {
    let registry = Registry::builtin().with_method(AlignUniformFactory);
    let mut cfg = smoke_config();
    cfg.method = "align_uniform".into();
    train_and_report(&registry, cfg, &out_dir("example-custom-method"))
}
