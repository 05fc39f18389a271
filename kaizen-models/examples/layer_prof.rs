//! Per-layer timings of the CPU kernels over the convolutions and batch norms of a CIFAR ResNet-18
//! (one training step's worth: forward, input gradient, weight gradient; BN forward + backward).
//! Compare with `python kaizen-models/examples/layer_prof.py` (same shapes in PyTorch).
//!
//! `cargo run --release -p kaizen-models --example layer_prof -- [width] [batch] [reps]`

use kaizen_models::ops::raw::{
    bn_bwd, bn_fwd, conv_bwd_input, conv_bwd_weight, conv_fwd, ConvGeom,
};

include!("probe_util.inc");

fn main() -> candle_core::Result<()> {
    kaizen_models::ops::tune_allocator();
    let [width, b, reps] = usize_args("layer_prof [width] [batch] [reps]", [16, 64, 7]);
    // (cin, cout, k, stride, pad, input size, count in the network)
    let mut convs = vec![(3, width, 3, 1, 1, 32, 1)];
    let mut cin = width;
    let mut hw = 32;
    for (mult, stride) in [(1, 1), (2, 2), (4, 2), (8, 2)] {
        let cout = width * mult;
        if stride == 1 {
            convs.push((cin, cout, 3, 1, 1, hw, 4));
        } else {
            convs.push((cin, cout, 3, 2, 1, hw, 1));
            convs.push((cin, cout, 1, 2, 0, hw, 1));
            hw /= 2;
            convs.push((cout, cout, 3, 1, 1, hw, 3));
        }
        cin = cout;
    }
    println!(
        "ResNet-18 width {width} batch {b} ({} threads)",
        candle_core::utils::get_num_threads()
    );
    println!(
        "{:<28} {:>3} {:>8} {:>8} {:>8} {:>7} {:>8}",
        "conv", "n", "fwd", "dx", "dw", "GF/s", "total"
    );
    let mut grand = 0.0;
    for &(ci, co, k, s, p, h, count) in &convs {
        let g = ConvGeom::new(&[b, ci, h, h], &[co, ci, k, k], s, p)?;
        let x = data(b * ci * h * h, 1);
        let w = data(co * ci * k * k, 2);
        let y = conv_fwd(&g, &x, &w)?;
        let dy = data(y.len(), 3);
        let tf = best_ms(reps, || drop(conv_fwd(&g, &x, &w)));
        let tx = if ci == 3 {
            0.0
        } else {
            best_ms(reps, || drop(conv_bwd_input(&g, &dy, &w)))
        };
        let tw = best_ms(reps, || drop(conv_bwd_weight(&g, &x, &dy)));
        let flop = 2.0 * (b * co * ci * k * k * y.len() / (b * co)) as f64;
        let passes = if ci == 3 { 2.0 } else { 3.0 };
        let gfs = passes * flop / ((tf + tx + tw) * 1e6);
        let tot = (tf + tx + tw) * count as f64;
        grand += tot;
        println!(
            "{:<28} {count:>3} {tf:>8.2} {tx:>8.2} {tw:>8.2} {gfs:>7.1} {tot:>8.2}",
            format!("{ci}->{co} k{k} s{s} {h}x{h}")
        );
    }
    println!(
        "{:<28} {:>3} {:>8} {:>8} {:>8} {:>7} {:>8}",
        "bn(+relu)", "n", "fwd", "bwd", "", "", "total"
    );
    // BN outputs: stem 1; per stage: stride-1 stage 4, else 3 + downsample 1 ... count per shape.
    let mut bns = vec![(width, 32, 1 + 4)];
    for (mult, h) in [(2, 16), (4, 8), (8, 4)] {
        bns.push((width * mult, h, 5));
    }
    for &(c, h, count) in &bns {
        let dims = [b, c, h, h];
        let x = data(b * c * h * h, 4);
        let gamma = data(c, 5);
        let beta = data(c, 6);
        let dy = data(x.len(), 7);
        let (_, st) = bn_fwd(&x, &dims, &gamma, &beta, 1e-5, true)?;
        let tf = best_ms(reps, || drop(bn_fwd(&x, &dims, &gamma, &beta, 1e-5, true)));
        let tb = best_ms(reps, || drop(bn_bwd(&x, &dy, &dims, &gamma, &st, true)));
        let tot = (tf + tb) * count as f64;
        grand += tot;
        println!(
            "{:<28} {count:>3} {tf:>8.2} {tb:>8.2} {:>8} {:>7} {tot:>8.2}",
            format!("{c} {h}x{h}"),
            "",
            ""
        );
    }
    println!("sum of kernels per step: {grand:.1} ms");
    Ok(())
}
