//! The CIFAR "python version" (what torchvision downloads): `cifar-10-batches-py/{data_batch_1..5,test_batch}` and
//! `cifar-100-python/{train,test}`, each a pickled dict with `data` (a numpy `uint8` array of N x 3072: R, G, B
//! planes of 32x32) and `labels` (CIFAR-10) or `fine_labels` + `coarse_labels` (CIFAR-100). The pickle is parsed,
//! never executed ([`crate::pickle`]): only numpy's array reconstructors (`_reconstruct`, protocol 5's `_frombuffer`),
//! `numpy.dtype` and `_codecs.encode` are accepted as names, and anything else is an error naming the file.

use crate::cifar::{planes_to_hwc, CifarKind, CIFAR100_FINE_TO_COARSE};
use crate::error::{DataError, Result};
use crate::pickle::{self, Value};
use std::path::Path;

const PIXELS: usize = 3 * 32 * 32;

/// The module.name of a recorded call's function.
fn func_name(v: &Value) -> Option<(String, String)> {
    match v {
        Value::Call(c) => match &c.func {
            Value::Global(g) => Some((g.0.clone(), g.1.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// The `(rows, 3072)` uint8 payload of a pickled numpy array.
fn numpy_u8_matrix(v: &Value, path: &Path) -> Result<(usize, Vec<u8>)> {
    let bad =
        |why: &str| DataError::bad(path, format!("`data` {why}; is this a CIFAR python batch?"));
    let (module, name) = func_name(v).ok_or_else(|| bad("is not a numpy array"))?;
    let Value::Call(call) = v else {
        return Err(bad("is not a numpy array"));
    };
    // Protocols 0-4: `_reconstruct(ndarray, (0,), b"b")` + BUILD state (version, shape, dtype, is_fortran, data),
    // older pickles without the version. Protocol 5: `_frombuffer(buffer, dtype, shape, order)`.
    let s: Vec<Value> = match name.as_str() {
        "_reconstruct" if module.starts_with("numpy") => {
            let state = call
                .state
                .as_ref()
                .and_then(Value::items)
                .ok_or_else(|| bad("has no array state"))?;
            match state.len() {
                5 => state[1..].to_vec(),
                4 => state.to_vec(),
                n => return Err(bad(&format!("has an array state of {n} items"))),
            }
        }
        "_frombuffer" if module.starts_with("numpy") => {
            let a = call.args.items().unwrap_or_default();
            if a.len() != 4 {
                return Err(bad(
                    "has a _frombuffer call without (buffer, dtype, shape, order)",
                ));
            }
            let fortran = Value::Bool(a[3].text().as_deref() == Some("F"));
            vec![a[2].clone(), a[1].clone(), fortran, a[0].clone()]
        }
        _ => {
            return Err(bad(&format!(
                "is built by {module}.{name}, not numpy's array reconstructor"
            )))
        }
    };
    let shape: Vec<i64> = s[0]
        .items()
        .map(|d| {
            d.iter()
                .filter_map(|x| {
                    if let Value::Int(i) = x {
                        Some(*i)
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if shape.len() != 2 || shape[1] != PIXELS as i64 || shape[0] < 1 {
        return Err(bad(&format!("has shape {shape:?}, expected (N, {PIXELS})")));
    }
    let dtype = match &s[1] {
        Value::Call(d) => d.args.items().and_then(|a| a.first()).and_then(Value::text),
        _ => None,
    };
    if dtype.as_deref() != Some("u1") {
        return Err(bad(&format!(
            "has dtype {dtype:?}, expected uint8 (\"u1\")"
        )));
    }
    if s[2] != Value::Bool(false) && s[2] != Value::Int(0) {
        return Err(bad("is stored in Fortran order"));
    }
    let data = s[3]
        .latin1_bytes()
        .ok_or_else(|| bad("has no raw byte payload"))?;
    let rows = usize::try_from(shape[0]).map_err(|_| bad("has a negative row count"))?;
    let expected = rows
        .checked_mul(PIXELS)
        .ok_or_else(|| bad(&format!("has {rows} rows, more than memory can hold")))?;
    if data.len() != expected {
        return Err(bad(&format!(
            "holds {} bytes for shape ({rows}, {PIXELS}) = {expected} bytes",
            data.len()
        )));
    }
    Ok((rows, data))
}

/// The integer list under `key`, each in `0..limit`.
fn labels(root: &Value, key: &str, limit: i64, path: &Path) -> Result<Vec<u16>> {
    let list = root.get(key).and_then(Value::items).ok_or_else(|| {
        DataError::bad(
            path,
            format!("no `{key}` list; is this a CIFAR python batch?"),
        )
    })?;
    list.iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Int(x) if (0..limit).contains(x) => Ok(*x as u16),
            other => Err(DataError::bad(
                path,
                format!("`{key}`[{i}] is {other:?}, expected an integer in 0..{limit}"),
            )),
        })
        .collect()
}

/// Parses one CIFAR python batch into `(HWC pixels, labels)` (fine labels for CIFAR-100).
pub fn parse_cifar_python(
    bytes: &[u8],
    kind: CifarKind,
    path: &Path,
) -> Result<(Vec<u8>, Vec<u16>)> {
    let root = pickle::parse(bytes)
        .map_err(|e| DataError::bad(path, format!("not a readable pickle: {e}")))?;
    if !matches!(root, Value::Dict(_)) {
        return Err(DataError::bad(
            path,
            "the pickle holds no dict; is this a CIFAR python batch?",
        ));
    }
    let data = root
        .get("data")
        .ok_or_else(|| DataError::bad(path, "no `data` entry; is this a CIFAR python batch?"))?;
    let (rows, planes) = numpy_u8_matrix(data, path)?;
    let labels = match kind {
        CifarKind::Cifar10 => labels(&root, "labels", 10, path)?,
        CifarKind::Cifar100 => {
            let fine = labels(&root, "fine_labels", 100, path)?;
            if root.get("coarse_labels").is_some() {
                let coarse = labels(&root, "coarse_labels", 20, path)?;
                if coarse.len() != fine.len() {
                    return Err(DataError::bad(
                        path,
                        format!(
                            "{} fine labels but {} coarse labels",
                            fine.len(),
                            coarse.len()
                        ),
                    ));
                }
                if let Some(i) = (0..fine.len().min(coarse.len()))
                    .find(|&i| CIFAR100_FINE_TO_COARSE[usize::from(fine[i])] != coarse[i] as u8)
                {
                    return Err(DataError::bad(
                        path,
                        format!(
                            "image {i}: coarse label {} does not match fine label {}",
                            coarse[i], fine[i]
                        ),
                    ));
                }
            }
            fine
        }
    };
    if labels.len() != rows {
        return Err(DataError::bad(
            path,
            format!("{rows} images but {} labels", labels.len()),
        ));
    }
    let mut pixels = vec![0u8; rows * PIXELS];
    for (src, out) in planes
        .chunks_exact(PIXELS)
        .zip(pixels.chunks_exact_mut(PIXELS))
    {
        planes_to_hwc(src, out);
    }
    Ok((pixels, labels))
}
