//! Microbenchmarks of the poll path's pure core: [`ciba::evaluate_poll`] for the three verdicts
//! a poll usually gets (pending, too soon, approved) and [`ciba::record_poll`] building the
//! bookkeeping transition. Run with `cargo bench -p assent-core --bench poll`.

use std::hint::black_box;
use std::time::Duration;

use assent_core::ciba::{self, PollVerdict};
use assent_core::{
    ApplicationId, CibaRequest, CibaStatus, Decision, DecisionChannel, DecisionOutcome,
    DeliveryMode, Timestamp,
};
use criterion::{Criterion, criterion_group, criterion_main};

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn pending() -> CibaRequest {
    CibaRequest {
        auth_req_id: "a1b2c3d4-e5f6-4789-abcd-0123456789ab".into(),
        environment_id: "0f1e2d3c-4b5a-4697-8877-665544332211".into(),
        application_id: "11223344-5566-4778-899a-abbccddeeff0".into(),
        user_id: "99887766-5544-4332-a110-ffeeddccbbaa".into(),
        scope: "openid profile offline_access".into(),
        binding_message: Some("Pay 42 EUR".into()),
        acr_values: None,
        authorization_details: None,
        delivery_mode: DeliveryMode::Poll,
        client_notification_token: None,
        created_at: T0,
        expires_at: T0.plus_secs(300),
        interval_seconds: 5,
        last_polled_at: None,
        status: CibaStatus::Pending,
        decision: None,
        redeemed_at: None,
    }
}

fn bench_poll(c: &mut Criterion) {
    let client: ApplicationId = "11223344-5566-4778-899a-abbccddeeff0".into();
    let pending = pending();
    let polled = CibaRequest {
        last_polled_at: Some(T0.plus_secs(10)),
        ..pending.clone()
    };
    let approved = CibaRequest {
        status: CibaStatus::Approved,
        decision: Some(Decision {
            outcome: DecisionOutcome::Approve,
            channel: DecisionChannel::Sandbox,
            device_id: None,
            amr: vec!["sim".into()],
            evidence: None,
            decided_at: T0.plus_secs(5),
        }),
        ..pending.clone()
    };

    let mut group = c.benchmark_group("evaluate_poll");
    // Pending, first poll: authorization_pending with a poll update.
    group.bench_function("pending", |b| {
        b.iter(|| ciba::evaluate_poll(black_box(&pending), black_box(&client), T0.plus_secs(10)))
    });
    // Polled 1 s after the previous poll with a 5 s interval: slow_down.
    group.bench_function("too_soon", |b| {
        b.iter(|| ciba::evaluate_poll(black_box(&polled), black_box(&client), T0.plus_secs(11)))
    });
    group.bench_function("approved", |b| {
        b.iter(|| ciba::evaluate_poll(black_box(&approved), black_box(&client), T0.plus_secs(10)))
    });
    group.finish();

    let PollVerdict::Refuse {
        update: Some(update),
        ..
    } = ciba::evaluate_poll(&pending, &client, T0.plus_secs(10))
    else {
        // A pending request's first poll always carries an update; benchmark nothing otherwise.
        return;
    };
    c.bench_function("record_poll", |b| {
        b.iter(|| ciba::record_poll(black_box(&pending), black_box(update)))
    });
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_poll
}
criterion_main!(benches);
