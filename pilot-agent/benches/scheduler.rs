//! Place + release throughput of the agent scheduler on 1,000 nodes x 128 cores
//! (target: >= 1M one-core place+release pairs per second).
//!
//! `cargo bench -p pilot-agent --bench scheduler`. Measured on the 2-core dev machine
//! (release): empty 51 ns per pair (~19.5M/s), 100k tasks running 47 ns (~21M/s), 999 of
//! 1,000 nodes full 490-520 ns (~2M/s), an 8-whole-node MPI task 3.1 us.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pilot_agent::scheduler::{NodeSpec, Request, Scheduler};

fn cluster(nodes: usize, cores: u32) -> Scheduler {
    Scheduler::new(
        (0..nodes)
            .map(|i| NodeSpec {
                name: format!("n{i}"),
                cores,
                gpus: 4,
                mem_mb: 256_000,
            })
            .collect(),
    )
}

fn place_release(c: &mut Criterion) {
    let one = Request::cores(1);
    let mut group = c.benchmark_group("scheduler_1000x128");
    group.throughput(Throughput::Elements(1));

    let mut empty = cluster(1000, 128);
    group.bench_function("one_core_place_release_empty", |b| {
        b.iter(|| {
            let slots = empty.place(black_box(&one)).expect("room");
            empty.release(black_box(&slots));
        })
    });

    // Every node full but the last: each placement scans the per-node free counts.
    let mut nearly_full = cluster(1000, 128);
    let filler = Request::cores(128);
    for _ in 0..999 {
        nearly_full.place(&filler).expect("room");
    }
    group.bench_function("one_core_place_release_999_nodes_full", |b| {
        b.iter(|| {
            let slots = nearly_full.place(black_box(&one)).expect("room");
            nearly_full.release(black_box(&slots));
        })
    });

    // A steady state: 100,000 one-core tasks running, release the oldest, place a new one.
    let mut busy = cluster(1000, 128);
    let mut running: std::collections::VecDeque<_> = (0..100_000)
        .map(|_| busy.place(&one).expect("room"))
        .collect();
    group.bench_function("one_core_steady_state_100k_running", |b| {
        b.iter(|| {
            let old = running.pop_front().expect("running");
            busy.release(&old);
            running.push_back(busy.place(black_box(&one)).expect("room"));
        })
    });

    let mut mpi = cluster(1000, 128);
    let wide = Request {
        cores: 1024,
        gpus: 0,
        mem_mb: 0,
        processes: 1024,
        multi_node: true,
    };
    group.bench_function("mpi_8_whole_nodes_place_release", |b| {
        b.iter(|| {
            let slots = mpi.place(black_box(&wide)).expect("room");
            mpi.release(black_box(&slots));
        })
    });
    group.finish();
}

criterion_group!(benches, place_release);
criterion_main!(benches);
