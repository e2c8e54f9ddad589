//! Store throughput with 64 concurrent writers, every acknowledgement durable
//! (`synchronous = FULL`, answered after COMMIT).
//!
//! Run: `cargo bench -p pdchannels-store --bench store_throughput`
//! Criterion reports the time per batch of 64 x 100 messages and the throughput in messages/s.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pdchannels_model::{AddChannel, Channels, Limits, ReceiveMessage};
use pdchannels_store::Store;
use serde_json::json;

const WRITERS: usize = 64;
const PER_WRITER: usize = 100;

fn message(writer: usize, n: u64) -> ReceiveMessage {
    ReceiveMessage::parse(
        &json!({
            "id": format!("w{writer}-{n}"), "channel_id": "bench", "sender_id": format!("s{writer}"),
            "conversation_id": format!("c{}", n % 500), "message": "Hello, is this still available?",
            "status": "sent", "created_at": "2024-05-01T10:20:30.000Z",
        }),
        &Limits::default(),
    )
    .unwrap()
}

fn concurrent_receive(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = runtime.block_on(async {
        let store = Store::open(&dir.path().join("bench.db")).await.unwrap();
        let channel = AddChannel::parse(
            &json!({"name": "Bench", "provider_channel_id": "bench"}),
            &Limits::default(),
        )
        .unwrap();
        store.add_channel(channel).await.unwrap();
        store
    });

    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements((WRITERS * PER_WRITER) as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    let mut round = 0u64;
    group.bench_function("receive_64_writers_durable", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                round += 1;
                // Messages are built before the clock starts: this measures the store.
                let batches: Vec<Vec<ReceiveMessage>> = (0..WRITERS)
                    .map(|w| {
                        (0..PER_WRITER as u64)
                            .map(|i| message(w, round * PER_WRITER as u64 + i))
                            .collect()
                    })
                    .collect();
                let start = Instant::now();
                runtime.block_on(async {
                    let tasks: Vec<_> = batches
                        .into_iter()
                        .map(|batch| {
                            let store = store.clone();
                            tokio::spawn(async move {
                                for m in batch {
                                    store.receive_message(m).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                });
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
    runtime.block_on(store.close());
}

criterion_group!(benches, concurrent_receive);
criterion_main!(benches);
