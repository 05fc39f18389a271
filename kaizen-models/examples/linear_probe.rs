//! Linear layer timings (forward, and forward + backward through candle's autograd) on the Kaizen
//! step's MLP shapes (projector, predictors, classifier) at batch 64.
//!
//! `cargo run --release -p kaizen-models --example linear_probe -- [batch] [reps]`

use candle_core::{Device, Tensor, Var};
use kaizen_models::ops;

include!("probe_util.inc");

fn main() -> candle_core::Result<()> {
    kaizen_models::ops::tune_allocator();
    let [b, reps] = usize_args("linear_probe [batch] [reps]", [64, 9]);
    println!(
        "{:<14} {:>9} {:>9} {:>9}",
        "in->out", "fwd ms", "f+b ms", "GF/s f+b"
    );
    let mut total = 0.0;
    for (i, o) in [
        (128, 4096),
        (4096, 256),
        (256, 4096),
        (256, 2048),
        (2048, 256),
        (128, 1000),
    ] {
        let dev = Device::Cpu;
        let x = Var::from_vec(data(b * i, 1), (b, i), &dev)?;
        let w = Var::from_vec(data(o * i, 2), (o, i), &dev)?;
        let bias = Var::from_vec(data(o, 3), o, &dev)?;
        let r = Tensor::from_vec(data(b * o, 4), (b, o), &dev)?;
        let tf = best_ms(reps, || {
            drop(ops::fast_linear(
                x.as_tensor(),
                w.as_tensor(),
                bias.as_tensor(),
            ));
        });
        let tb = best_ms(reps, || {
            let y = ops::fast_linear(x.as_tensor(), w.as_tensor(), bias.as_tensor()).unwrap();
            drop((y * &r).unwrap().sum_all().unwrap().backward().unwrap());
        });
        let flop = 6.0 * (b * i * o) as f64;
        total += tb;
        println!(
            "{:<14} {tf:>9.3} {tb:>9.3} {:>9.1}",
            format!("{i}->{o}"),
            flop / tb / 1e6
        );
    }
    println!("sum f+b: {total:.2} ms");
    Ok(())
}
