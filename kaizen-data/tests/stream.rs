//! Task stream, label fraction, replay and shuffling: determinism, partitions and class balance.

use anyhow::Result;
use kaizen_data::{
    labelled_mask, shuffled_batches, ClassOrder, DataError, ImageShape, ReplayMemory, ReplaySize,
    Split, TaskStream,
};
use std::collections::{BTreeMap, BTreeSet};

/// A split of 1x1 images whose label pattern is `labels`.
fn split_with_labels(labels: Vec<u16>) -> Split {
    let n = labels.len();
    Split::new(
        ImageShape {
            channels: 1,
            height: 1,
            width: 1,
        },
        vec![0; n],
        labels,
    )
    .expect("valid tiny split")
}

/// 10 classes, class c has 20 + c images, interleaved.
fn uneven_split() -> Split {
    let mut labels = Vec::new();
    for round in 0..30u16 {
        for c in 0..10u16 {
            if round < 20 + c {
                labels.push(c);
            }
        }
    }
    split_with_labels(labels)
}

#[test]
fn seeded_order_is_a_fixed_permutation_and_tasks_partition_classes() -> Result<()> {
    let a = TaskStream::new(100, 10, ClassOrder::Seeded(5))?;
    let b = TaskStream::new(100, 10, ClassOrder::Seeded(5))?;
    let c = TaskStream::new(100, 10, ClassOrder::Seeded(6))?;
    assert_eq!(a.class_order(), b.class_order());
    assert_ne!(a.class_order(), c.class_order());
    let mut sorted = a.class_order().to_vec();
    sorted.sort();
    assert_eq!(sorted, (0..100).collect::<Vec<u16>>());
    assert_ne!(
        a.class_order(),
        &sorted[..],
        "a seeded order should not be the identity"
    );
    assert_eq!(a.num_tasks(), 10);
    let mut seen = BTreeSet::new();
    for t in 0..10 {
        assert_eq!(a.task_classes(t).len(), 10);
        for &cl in a.task_classes(t) {
            assert!(seen.insert(cl), "class {cl} in two tasks");
            assert_eq!(a.task_of_class(cl), Some(t));
        }
    }
    assert_eq!(seen.len(), 100);
    assert_eq!(a.task_of_class(100), None);
    Ok(())
}

#[test]
fn explicit_order_and_invalid_streams() -> Result<()> {
    let s = TaskStream::new(4, 2, ClassOrder::Explicit(vec![3, 1, 0, 2]))?;
    assert_eq!(s.task_classes(0), &[3, 1]);
    assert_eq!(s.task_classes(1), &[0, 2]);
    assert_eq!(s.task_of_class(2), Some(1));
    let bad = |r: Result<TaskStream, DataError>| matches!(r, Err(DataError::InvalidStream { .. }));
    assert!(bad(TaskStream::new(10, 3, ClassOrder::Seeded(0))));
    assert!(bad(TaskStream::new(10, 0, ClassOrder::Seeded(0))));
    assert!(bad(TaskStream::new(
        4,
        2,
        ClassOrder::Explicit(vec![0, 1, 1, 2])
    )));
    assert!(bad(TaskStream::new(
        4,
        2,
        ClassOrder::Explicit(vec![0, 1, 2, 4])
    )));
    assert!(bad(TaskStream::new(
        4,
        2,
        ClassOrder::Explicit(vec![0, 1, 2])
    )));
    let e = TaskStream::new(10, 3, ClassOrder::Seeded(0)).unwrap_err();
    assert!(
        e.to_string()
            .contains("10 classes cannot be split evenly into 3 tasks"),
        "{e}"
    );
    Ok(())
}

#[test]
fn description_serialises_and_round_trips() -> Result<()> {
    let s = TaskStream::new(6, 3, ClassOrder::Seeded(1))?;
    let j = serde_json::to_value(s.describe())?;
    assert_eq!(j["class_order"].as_array().map(|a| a.len()), Some(6));
    assert_eq!(j["tasks"].as_array().map(|a| a.len()), Some(3));
    let text = serde_json::to_string(&s)?;
    let back: TaskStream = serde_json::from_str(&text)?;
    assert_eq!(back, s);
    // A tampered description is rejected.
    let mut d = s.describe();
    d.tasks.swap(0, 1);
    assert!(serde_json::from_str::<TaskStream>(&serde_json::to_string(&d)?).is_err());
    Ok(())
}

#[test]
fn task_indices_follow_dataset_order_and_cover_the_split() -> Result<()> {
    let split = uneven_split();
    let s = TaskStream::new(10, 5, ClassOrder::Seeded(3))?;
    let mut all = Vec::new();
    for t in 0..5 {
        let idx = s.indices(&split, t);
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "dataset order");
        assert!(idx
            .iter()
            .all(|&i| s.task_classes(t).contains(&split.label(i as usize))));
        all.extend(idx);
    }
    all.sort();
    assert_eq!(all, (0..split.len() as u32).collect::<Vec<_>>());
    assert_eq!(s.indices_up_to(&split, 4).len(), split.len());
    Ok(())
}

fn count_by_class(split: &Split, idx: &[u32]) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for &i in idx {
        *m.entry(split.label(i as usize)).or_insert(0) += 1;
    }
    m
}

#[test]
fn labelled_mask_is_seeded_and_per_class_rounded() -> Result<()> {
    let split = uneven_split();
    let idx: Vec<u32> = (0..split.len() as u32).collect();
    let m1 = labelled_mask(&split, &idx, 0.1, 9, 2);
    assert_eq!(m1, labelled_mask(&split, &idx, 0.1, 9, 2));
    assert_ne!(m1, labelled_mask(&split, &idx, 0.1, 10, 2));
    assert_ne!(m1, labelled_mask(&split, &idx, 0.1, 9, 3));
    let chosen: Vec<u32> = idx
        .iter()
        .zip(&m1)
        .filter(|(_, &m)| m)
        .map(|(&i, _)| i)
        .collect();
    for (c, n) in count_by_class(&split, &chosen) {
        let avail = 20 + c as usize;
        assert_eq!(n, (0.1 * avail as f64).round() as usize, "class {c}");
    }
    assert!(labelled_mask(&split, &idx, 1.0, 0, 0).iter().all(|&m| m));
    assert!(labelled_mask(&split, &idx, 0.0, 0, 0).iter().all(|&m| !m));
    Ok(())
}

#[test]
fn replay_is_class_balanced_seeded_and_drawn_without_repeats() -> Result<()> {
    let split = uneven_split();
    let idx: Vec<u32> = (0..split.len() as u32).collect();
    let mut m = ReplayMemory::new();
    assert!(m.is_empty());
    m.add_task(&split, &idx, ReplaySize::Count(25), 4, 0);
    assert_eq!(m.len(), 25);
    let counts = count_by_class(&split, m.indices());
    let (lo, hi) = (
        counts.values().min().copied(),
        counts.values().max().copied(),
    );
    assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{counts:?}");
    assert_eq!(counts.len(), 10);
    // Same seed: same memory; different seed: different memory.
    let mut m2 = ReplayMemory::new();
    m2.add_task(&split, &idx, ReplaySize::Count(25), 4, 0);
    assert_eq!(m, m2);
    let mut m3 = ReplayMemory::new();
    m3.add_task(&split, &idx, ReplaySize::Count(25), 5, 0);
    assert_ne!(m, m3);
    // Fraction: 10% of 245 labelled images = round(24.5) = 25 (round half away from zero).
    let mut mf = ReplayMemory::new();
    mf.add_task(&split, &idx, ReplaySize::Fraction(0.1), 4, 0);
    assert_eq!(mf.len(), 25);
    // The fraction is of the task, not of its labelled part: with only half of the images labelled,
    // 10% of the task is still 25 images, all of them labelled ones.
    let half = labelled_mask(&split, &idx, 0.5, 2, 0);
    let labelled: Vec<u32> = idx
        .iter()
        .zip(&half)
        .filter(|(_, &m)| m)
        .map(|(&i, _)| i)
        .collect();
    let mut mh = ReplayMemory::new();
    mh.add_task(&split, &labelled, ReplaySize::Fraction(0.1), 4, 0);
    assert_eq!(mh.len(), 25);
    assert!(mh.indices().iter().all(|i| labelled.contains(i)));
    let mut mc = ReplayMemory::new();
    mc.add_task(&split, &labelled[..10], ReplaySize::Fraction(0.5), 4, 0);
    assert_eq!(mc.len(), 10, "capped at the labelled images");
    // A second task appends.
    let sub: Vec<u32> = idx
        .iter()
        .copied()
        .filter(|&i| split.label(i as usize) < 2)
        .collect();
    m.add_task(&split, &sub, ReplaySize::Count(4), 4, 1);
    assert_eq!(m.len(), 29);
    assert_eq!(
        count_by_class(&split, &m.indices()[25..])
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![2, 2]
    );

    let s1 = m.sample(10, 1, 1, 7);
    assert_eq!(s1.len(), 10);
    assert_eq!(s1, m.sample(10, 1, 1, 7));
    assert_ne!(s1, m.sample(10, 1, 1, 8));
    assert_eq!(
        s1.iter().collect::<BTreeSet<_>>().len(),
        10,
        "no repeats within a call"
    );
    assert!(s1.iter().all(|i| m.indices().contains(i)));
    // Asking for more than stored returns every stored entry once (a permutation of the memory).
    let mut all = m.sample(1000, 1, 1, 7);
    all.sort();
    let mut stored = m.indices().to_vec();
    stored.sort();
    assert_eq!(all, stored);
    assert_eq!(ReplayMemory::from_indices(m.indices().to_vec()), m);
    assert!(ReplayMemory::new().sample(5, 0, 0, 0).is_empty());
    Ok(())
}

#[test]
fn replay_water_fills_when_a_class_is_scarce() -> Result<()> {
    // Class 0 has 2 images, class 1 has 50: a budget of 20 gives 2 + 18.
    let mut labels = vec![1u16; 50];
    labels[10] = 0;
    labels[30] = 0;
    let split = split_with_labels(labels);
    let idx: Vec<u32> = (0..52).filter(|&i| i < 50).collect();
    let mut m = ReplayMemory::new();
    m.add_task(&split, &idx, ReplaySize::Count(20), 0, 0);
    let c = count_by_class(&split, m.indices());
    assert_eq!(c.get(&0), Some(&2));
    assert_eq!(c.get(&1), Some(&18));
    Ok(())
}

#[test]
fn items_for_hides_unlabelled_labels() {
    let split = split_with_labels(vec![4, 5, 6]);
    let it = kaizen_data::items_for(&split, &[2, 0, 1], |i| i != 0);
    assert_eq!(
        it.iter().map(|x| (x.index, x.label)).collect::<Vec<_>>(),
        vec![(2, 6), (0, -1), (1, 5)]
    );
}

#[test]
fn shuffled_batches_are_seeded_permutations() {
    let idx: Vec<u32> = (100..200).collect();
    let b = shuffled_batches(&idx, 32, 1, 0, 0, false);
    assert_eq!(
        b.iter().map(|x| x.len()).collect::<Vec<_>>(),
        vec![32, 32, 32, 4]
    );
    let mut flat: Vec<u32> = b.concat();
    assert_ne!(flat, idx);
    flat.sort();
    assert_eq!(flat, idx);
    assert_eq!(b, shuffled_batches(&idx, 32, 1, 0, 0, false));
    assert_ne!(b, shuffled_batches(&idx, 32, 1, 0, 1, false));
    assert_ne!(b, shuffled_batches(&idx, 32, 1, 1, 0, false));
    let d = shuffled_batches(&idx, 32, 1, 0, 0, true);
    assert_eq!(d.len(), 3);
    assert_eq!(d[..], b[..3]);
    assert!(shuffled_batches(&idx, 0, 1, 0, 0, false).is_empty());
}
