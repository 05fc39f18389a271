//! Reads the inputs written by `tools/knn_crosscheck.py`, runs [`kaizen_metrics::knn_predict`] (k = 20, T = 0.07)
//! and writes `rust_pred.txt` for the comparison: `cargo run --release -p kaizen-metrics --example knn_from_files -- DIR`.

use candle_core::{Device, Tensor};
use kaizen_metrics::{knn_predict, KnnConfig};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: knn_from_files <dir>")?,
    );
    let shape: Vec<usize> = std::fs::read_to_string(dir.join("shape.txt"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [m, n, d, c] = shape[..] else {
        return Err("shape.txt: expected `M N D C`".into());
    };
    let f32s = |name: &str| -> Result<Vec<f32>, std::io::Error> {
        Ok(std::fs::read(dir.join(name))?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let u16s = |name: &str| -> Result<Vec<u16>, std::io::Error> {
        Ok(std::fs::read(dir.join(name))?
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect())
    };
    let bank = Tensor::from_vec(f32s("bank.f32")?, (m, d), &Device::Cpu)?;
    let test = Tensor::from_vec(f32s("test.f32")?, (n, d), &Device::Cpu)?;
    let preds = knn_predict(
        &bank,
        &u16s("bank_labels.u16")?,
        &test,
        c,
        &KnnConfig::default(),
    )?;
    let text: Vec<String> = preds.iter().map(u16::to_string).collect();
    std::fs::write(dir.join("rust_pred.txt"), text.join(" "))?;
    println!("wrote {} predictions", preds.len());
    Ok(())
}
