//! The CIFAR python version (pickled numpy arrays, what torchvision downloads) is read by parsing the pickle, never
//! executing it: the fixtures (the same real CIFAR test images as the binary fixtures, pickled by
//! scripts/make_cifar_python_fixtures.py at protocols 2 and 5) give the binary version's dataset; a Python 2 style
//! pickle written by hand reads too; and pickles that name anything but numpy's array pieces, are truncated, or
//! hold the wrong dtype or labels are errors naming the file.

use anyhow::Result;
use kaizen_data::cifar::CifarKind;
use kaizen_data::cifar_python::parse_cifar_python;
use kaizen_data::{load_dataset, pickle, DataError, DatasetName};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn python_batches_give_the_binary_version_s_dataset() -> Result<()> {
    for (name, bin, py) in [
        (
            DatasetName::Cifar10,
            "cifar-10-batches-bin",
            "cifar-10-batches-py",
        ),
        (
            DatasetName::Cifar100,
            "cifar-100-binary",
            "cifar-100-python",
        ),
    ] {
        let a = load_dataset(name, Some(&fixtures().join(bin)))?;
        let b = load_dataset(name, Some(&fixtures().join(py)))?;
        assert_eq!(a.train.labels(), b.train.labels(), "{name}");
        assert_eq!(a.test.labels(), b.test.labels(), "{name}");
        assert_eq!(a.train.pixels(), b.train.pixels(), "{name}");
        assert_eq!(a.test.pixels(), b.test.pixels(), "{name}");
        assert_eq!(
            (a.mean.clone(), a.std.clone()),
            (b.mean.clone(), b.std.clone())
        );
        // Found from the parent folder too, when it holds only the python version.
        let t = tempfile::tempdir()?;
        let dst = t.path().join(py);
        std::fs::create_dir_all(&dst)?;
        for e in std::fs::read_dir(fixtures().join(py))? {
            let p = e?.path();
            std::fs::copy(&p, dst.join(p.file_name().unwrap_or_default()))?;
        }
        let c = load_dataset(name, Some(t.path()))?;
        assert_eq!(c.test.labels(), a.test.labels());
    }
    Ok(())
}

/// A Python 2 style batch (what the official tarball holds): `str` keys as SHORT_BINSTRING, the array payload as
/// BINSTRING, numpy's `_reconstruct` + `dtype('u1')` + BUILD, one image of label 3.
fn python2_batch(label: u8, dtype: &[u8], payload_len: usize) -> Vec<u8> {
    let mut b = b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01K\x01M\x00\x0c\x86cnumpy\ndtype\nU".to_vec();
    b.push(dtype.len() as u8);
    b.extend_from_slice(dtype);
    b.extend_from_slice(
        b"K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T",
    );
    b.extend_from_slice(&(payload_len as u32).to_le_bytes());
    b.extend((0..payload_len).map(|i| (i % 251) as u8));
    b.extend_from_slice(b"tbU\x06labels]q\x04K");
    b.push(label);
    b.extend_from_slice(b"au.");
    b
}

#[test]
fn a_python2_style_batch_reads_with_planes_to_hwc() -> Result<()> {
    let p = Path::new("data_batch_1");
    let (pixels, labels) =
        parse_cifar_python(&python2_batch(3, b"u1", 3072), CifarKind::Cifar10, p)?;
    assert_eq!(labels, [3]);
    // Pixel (0, 1): R at plane offset 1, G at 1025, B at 2049.
    assert_eq!(&pixels[3..6], &[1, (1025 % 251) as u8, (2049 % 251) as u8]);
    Ok(())
}

fn err(bytes: &[u8]) -> String {
    let e =
        parse_cifar_python(bytes, CifarKind::Cifar10, Path::new("/data/bad_batch")).unwrap_err();
    assert!(matches!(e, DataError::BadFile { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("/data/bad_batch"), "{msg}");
    msg
}

#[test]
fn bad_or_hostile_pickles_are_errors_naming_the_file() {
    // A call of os.system is recorded, never made, and refused.
    let hostile = b"\x80\x02}q\x00(U\x04dataq\x01cposix\nsystem\nU\x05touch\x85Ru.";
    assert!(err(hostile).contains("posix.system"), "{}", err(hostile));
    let not_dict = b"\x80\x02cos\nsystem\nU\x02ls\x85R.";
    assert!(err(not_dict).contains("no dict"));
    let good = python2_batch(3, b"u1", 3072);
    assert!(err(&good[..good.len() / 2]).contains("truncated"));
    assert!(err(&python2_batch(3, b"f4", 3072)).contains("dtype"));
    assert!(err(&python2_batch(3, b"u1", 3000)).contains("3000 bytes"));
    assert!(err(&python2_batch(10, b"u1", 3072)).contains("0..10"));
    let unknown_opcode = b"\x80\x02}q\x00\xffu.";
    assert!(err(unknown_opcode).contains("opcode 0xff"));
    assert!(err(b"").contains("needs 1 more bytes"));
    // The parser alone: what it makes of a call (a record, with the name kept) and of protocol 6.
    match pickle::parse(b"cos\nsystem\n(tR.") {
        Ok(pickle::Value::Call(c)) => {
            assert_eq!(
                c.func,
                pickle::Value::Global(std::rc::Rc::new(("os".into(), "system".into())))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(pickle::parse(b"\x80\x06N.")
        .unwrap_err()
        .to_string()
        .contains("protocol 6"));
    // A million nested tuples would exhaust the stack when dropped: refused past the depth limit.
    let mut deep = b"N".to_vec();
    deep.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    deep.push(b'.');
    let e = pickle::parse(&deep).unwrap_err().to_string();
    assert!(e.contains("deeper than 100"), "{e}");
    // A memoized list fetched and re-extended over and over would cost the square of the file's size.
    let mut quad = b"\x80\x02](".to_vec();
    quad.extend(std::iter::repeat_n(b'N', 20_000));
    quad.extend_from_slice(b"eq\x00");
    for _ in 0..20_000 {
        quad.extend_from_slice(b"h\x00(e");
    }
    quad.push(b'.');
    let e = pickle::parse(&quad).unwrap_err().to_string();
    assert!(e.contains("over and over"), "{e}");
    let mut ok = b"N".to_vec();
    ok.extend(std::iter::repeat_n(0x85u8, 100));
    ok.push(b'.');
    assert!(pickle::parse(&ok).is_ok());
}
