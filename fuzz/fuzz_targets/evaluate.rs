//! Evaluation with arbitrary attributes against arbitrary compiled policies: the compiled
//! evaluator must agree with the reference interpreter on every decision, keep Istio's
//! decision order, and decide the same from only the attributes it says it needs.
#![no_main]

use arbitrary::Unstructured;
use cordon_engine::Workload;
use cordon_fuzz::{options, policy, record, Compiled};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mut options) = options(&mut u) else {
        return;
    };
    let Ok(count) = u.int_in_range(1..=6usize) else {
        return;
    };
    let mut policies = Vec::with_capacity(count);
    for position in 0..count {
        match policy(&mut u, position) {
            Ok(policy) => policies.push(policy),
            Err(_) => return,
        }
    }
    // One workload per input, so one compilation serves every request.
    let Ok(first) = record(&mut u) else { return };
    options.workload = Workload {
        namespace: first.destination_namespace.clone(),
        labels: first.destination_labels.clone(),
    };
    let Some(compiled) = Compiled::new(&policies, options) else {
        return;
    };
    compiled.check(&first);
    for _ in 0..5 {
        let Ok(record) = record(&mut u) else { return };
        compiled.check(&record);
    }
});
