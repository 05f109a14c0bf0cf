//! In which order `emanager-synth` reads, computes and writes: the original tool's
//! `Interleave_Option` (task.c, see docs/skeleton.md#classic-interleave). Pure: sizes in,
//! a list of steps out; `synth` performs them.
//!
//! A task's I/O is a sequence of `read()` calls (one per read buffer of each input, in
//! input order) and `write()` calls (one per write buffer of each output); its length is
//! split in equal shares between the steps it interleaves with:
//!
//! | mode | order |
//! |---|---|
//! | 0 | every read, then the whole computation, then every write |
//! | 1 | each read followed by 1/R of the computation, then every write |
//! | 2 | every read, then each write preceded by 1/W of the computation |
//! | 3 | each read followed by 1/R of the computation and by its share of the writes (the writes left divided by the reads left, rounded up) |
//!
//! Where task.c would compute nothing (mode 1 without inputs, 2 without outputs, 3 without
//! inputs: it divides the length by zero reads or writes and never enters its loop; mode 3
//! then writes nothing either), the length is computed anyway, so every task takes its
//! length and writes its outputs: at once (modes 1 and 2), or before each write (mode 3
//! without inputs, as mode 2). Empty inputs take no `read()` call (task.c counts one for
//! its share but makes none, so it computes less).

/// One step of a synthetic task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// One `read()` of `bytes` from input `input`.
    Read { input: usize, bytes: u64 },
    /// Compute this share of the task's length (the shares of a task add up to 1).
    Compute(f64),
    /// One `write()` of `bytes` to output `output`.
    Write { output: usize, bytes: u64 },
}

/// The modes task.c knows (`Interleave_Option`).
pub const MODES: std::ops::RangeInclusive<u32> = 0..=3;

/// One call per `buffer` bytes (the last one shorter); none for an empty file.
fn calls(sizes: &[u64], buffer: u64, step: impl Fn(usize, u64) -> Step) -> Vec<Step> {
    let buffer = buffer.max(1);
    let mut out = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let mut left = size;
        while left > 0 {
            let n = left.min(buffer);
            out.push(step(i, n));
            left -= n;
        }
    }
    out
}

/// The steps of a task with inputs of `input_sizes` and outputs of `output_sizes` in
/// interleave `mode` (a mode outside 0..=3 is read as 0).
pub fn schedule(
    mode: u32,
    input_sizes: &[u64],
    read_buffer: u64,
    output_sizes: &[u64],
    write_buffer: u64,
) -> Vec<Step> {
    let reads = calls(input_sizes, read_buffer, |input, bytes| Step::Read {
        input,
        bytes,
    });
    let writes = calls(output_sizes, write_buffer, |output, bytes| Step::Write {
        output,
        bytes,
    });
    let (r, w) = (reads.len(), writes.len());
    let mut out = Vec::with_capacity(2 * (r + w) + 1);
    match mode {
        1 if r > 0 => {
            for read in reads {
                out.extend([read, Step::Compute(1.0 / r as f64)]);
            }
            out.extend(writes);
        }
        2 | 3 if w > 0 && (mode == 2 || r == 0) => {
            out.extend(reads);
            for write in writes {
                out.extend([Step::Compute(1.0 / w as f64), write]);
            }
        }
        3 if r > 0 => {
            let mut writes = writes.into_iter();
            let mut writes_left = w;
            for (k, read) in reads.into_iter().enumerate() {
                out.extend([read, Step::Compute(1.0 / r as f64)]);
                let now = writes_left.div_ceil(r - k);
                out.extend(writes.by_ref().take(now));
                writes_left -= now;
            }
        }
        _ => {
            out.extend(reads);
            out.push(Step::Compute(1.0));
            out.extend(writes);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Step::{Compute, Read, Write};

    fn r(input: usize, bytes: u64) -> Step {
        Read { input, bytes }
    }

    fn w(output: usize, bytes: u64) -> Step {
        Write { output, bytes }
    }

    #[test]
    fn mode_0_reads_computes_then_writes() {
        assert_eq!(
            schedule(0, &[10, 4], 8, &[9], 8),
            [r(0, 8), r(0, 2), r(1, 4), Compute(1.0), w(0, 8), w(0, 1)]
        );
    }

    #[test]
    fn mode_1_computes_a_share_after_each_read_then_writes() {
        assert_eq!(
            schedule(1, &[10, 4], 8, &[9], 8),
            [
                r(0, 8),
                Compute(1.0 / 3.0),
                r(0, 2),
                Compute(1.0 / 3.0),
                r(1, 4),
                Compute(1.0 / 3.0),
                w(0, 8),
                w(0, 1)
            ]
        );
    }

    #[test]
    fn mode_2_reads_then_computes_a_share_before_each_write() {
        assert_eq!(
            schedule(2, &[10], 8, &[9, 3], 8),
            [
                r(0, 8),
                r(0, 2),
                Compute(1.0 / 3.0),
                w(0, 8),
                Compute(1.0 / 3.0),
                w(0, 1),
                Compute(1.0 / 3.0),
                w(1, 3)
            ]
        );
    }

    #[test]
    fn mode_3_spreads_the_writes_over_the_reads_like_task_c() {
        // 2 reads, 5 writes: ceil(5/2) = 3 after the first read, the 2 left after the second.
        assert_eq!(
            schedule(3, &[16], 8, &[40], 8),
            [
                r(0, 8),
                Compute(0.5),
                w(0, 8),
                w(0, 8),
                w(0, 8),
                r(0, 8),
                Compute(0.5),
                w(0, 8),
                w(0, 8)
            ]
        );
        // More reads than writes: one write after each of the first reads.
        let s = schedule(3, &[24], 8, &[10], 8);
        assert_eq!(
            s,
            [
                r(0, 8),
                Compute(1.0 / 3.0),
                w(0, 8),
                r(0, 8),
                Compute(1.0 / 3.0),
                w(0, 2),
                r(0, 8),
                Compute(1.0 / 3.0)
            ]
        );
    }

    #[test]
    fn every_mode_reads_and_writes_everything_and_computes_the_whole_length() {
        for mode in 0..=5 {
            for (ins, outs) in [
                (vec![], vec![]),
                (vec![0, 17], vec![]),
                (vec![], vec![33, 0]),
                (vec![100, 1, 64], vec![5, 200]),
            ] {
                let s = schedule(mode, &ins, 16, &outs, 16);
                let read: u64 = s
                    .iter()
                    .map(|x| {
                        if let Read { bytes, .. } = x {
                            *bytes
                        } else {
                            0
                        }
                    })
                    .sum();
                let written: u64 = s
                    .iter()
                    .map(|x| {
                        if let Write { bytes, .. } = x {
                            *bytes
                        } else {
                            0
                        }
                    })
                    .sum();
                let share: f64 = s
                    .iter()
                    .map(|x| if let Compute(f) = x { *f } else { 0.0 })
                    .sum();
                assert_eq!(read, ins.iter().sum::<u64>(), "mode {mode} {ins:?}");
                assert_eq!(written, outs.iter().sum::<u64>(), "mode {mode} {outs:?}");
                assert!((share - 1.0).abs() < 1e-9, "mode {mode}: {share}");
                // Each file's calls stay in order.
                let order: Vec<usize> = s
                    .iter()
                    .filter_map(|x| {
                        if let Write { output, .. } = x {
                            Some(*output)
                        } else {
                            None
                        }
                    })
                    .collect();
                assert!(order.windows(2).all(|p| p[0] <= p[1]), "mode {mode}");
            }
        }
    }
}
