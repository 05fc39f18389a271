//! One training step as functions a test, the benchmark (`kaizen bench`) or the PyTorch step twin can call
//! on given tensors: the enabled loss terms ([`crate::terms`]) on one batch, their weighted sum with the NaN
//! guard, backward, the optimiser step and the method's after-step hook (EMA, queue). The trainer
//! ([`crate::train`]) runs exactly these; nothing here reads a dataset or a run directory.

use crate::error::CoreError;
use crate::events::TermValue;
use crate::terms::{LossTerm, StepBatch, StepContext, StepModels};
use candle_core::{DType, Tensor};
use kaizen_models::optim::Optimizer;

/// One computed loss term: its logged name, its weight and its unweighted value (a scalar tensor).
pub struct Term {
    /// The term's name (`ssl`, `fe_kd`, `cls_ce`, `cls_kd`, ...).
    pub name: &'static str,
    /// Weight in the total.
    pub weight: f64,
    /// Unweighted value, differentiable.
    pub loss: Tensor,
}

/// What a step needs besides the models and the batch.
#[derive(Debug, Clone)]
pub struct StepSettings<'a> {
    /// Classes of the tasks trained so far, this one included (`seen[c]`).
    pub seen: &'a [bool],
    /// Feed the classifier detached features (`train.classifier_detach`).
    pub classifier_detach: bool,
}

/// Where a step is in its task, for the learning rate, the EMA schedule and error messages.
#[derive(Debug, Clone, Copy)]
pub struct StepPosition {
    /// Task (phase) index.
    pub task: usize,
    /// Step within the task (0-based).
    pub step_in_task: usize,
    /// Steps of the task.
    pub total_steps: usize,
    /// Learning rate of this step.
    pub lr: f64,
}

/// The enabled terms (weight > 0) that apply to this batch, in the strategy's order.
pub fn loss_terms(
    models: StepModels<'_>,
    terms: &mut [Box<dyn LossTerm>],
    batch: &StepBatch<'_>,
    settings: &StepSettings<'_>,
) -> Result<Vec<Term>, CoreError> {
    let mut cx = StepContext::new(models, batch, settings.seen, settings.classifier_detach)?;
    let mut out = Vec::with_capacity(terms.len());
    for term in terms.iter_mut().filter(|t| t.weight() > 0.0) {
        if let Some(loss) = term.loss(&mut cx)? {
            out.push(Term {
                name: term.name(),
                weight: term.weight(),
                loss,
            });
        }
    }
    Ok(out)
}

/// The weighted sum of `terms` and their values (plus `total`) for the log. A non-finite term is an error
/// naming the term, `task` and `step`, raised before anything is updated.
pub fn weighted_total(
    terms: &[Term],
    task: usize,
    step: usize,
) -> Result<(Tensor, Vec<TermValue>), CoreError> {
    let mut values = Vec::with_capacity(terms.len() + 1);
    let mut total: Option<Tensor> = None;
    let mut total_value = 0.0;
    for term in terms {
        let v = f64::from(term.loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        if !v.is_finite() {
            return Err(CoreError::NonFinite {
                term: term.name.to_string(),
                task,
                step,
                value: v,
            });
        }
        total_value += term.weight * v;
        values.push(TermValue {
            term: term.name,
            value: v,
        });
        let weighted = (&term.loss * term.weight)?;
        total = Some(match total {
            None => weighted,
            Some(acc) => (acc + weighted)?,
        });
    }
    values.push(TermValue {
        term: "total",
        value: total_value,
    });
    let Some(total) = total else {
        return Err(CoreError::Invalid(
            "every loss term is switched off (all weights are 0): nothing to train".into(),
        ));
    };
    Ok((total, values))
}

/// The rest of a step once its terms are computed: weighted total (NaN guard first), backward, the
/// optimiser step (when an optimiser is given) and the method's after-step hook. Returns the logged values.
pub fn apply(
    terms: &[Term],
    models: StepModels<'_>,
    optimizer: Option<&mut Optimizer>,
    pos: StepPosition,
) -> Result<Vec<TermValue>, CoreError> {
    let (total, values) = weighted_total(terms, pos.task, pos.step_in_task)?;
    let grads = total.backward()?;
    if let Some(opt) = optimizer {
        opt.step(&grads, pos.lr)?;
    }
    models
        .method
        .after_step(models.online, pos.step_in_task + 1, pos.total_steps)?;
    Ok(values)
}

/// One whole training step: [`loss_terms`] then [`apply`].
pub fn train_step(
    models: StepModels<'_>,
    terms: &mut [Box<dyn LossTerm>],
    batch: &StepBatch<'_>,
    settings: &StepSettings<'_>,
    optimizer: Option<&mut Optimizer>,
    pos: StepPosition,
) -> Result<Vec<TermValue>, CoreError> {
    let StepModels {
        online,
        method,
        frozen,
    } = models;
    let computed = loss_terms(
        StepModels {
            online,
            method: &mut *method,
            frozen,
        },
        terms,
        batch,
        settings,
    )?;
    apply(
        &computed,
        StepModels {
            online,
            method,
            frozen,
        },
        optimizer,
        pos,
    )
}
