//! A short fuzz run of every target, so every test run tries a fresh sample of inputs.

#[test]
fn every_target_survives_a_smoke_run() {
    // 20k inputs per target keeps the run to seconds in debug builds; CYFR_FUZZ_SEED
    // picks another sample.
    let seed = std::env::var("CYFR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut crashed = Vec::new();
    for t in cyfr_fuzz::targets::ALL {
        let r = cyfr_fuzz::run(t, 20_000, seed);
        assert_eq!(r.inputs, 20_000);
        if r.crashes > 0 {
            crashed.push(format!(
                "{}: {} crashes, first {:?}",
                r.target,
                r.crashes,
                r.failures.first()
            ));
        }
    }
    assert!(
        crashed.is_empty(),
        "fuzz crashes (seed {seed}):\n{}",
        crashed.join("\n")
    );
}

#[test]
fn a_crash_is_caught_and_reported_with_its_input() {
    let t = cyfr_fuzz::targets::Target {
        name: "always-panics",
        run: |d| assert!(d.len() > usize::MAX / 2, "boom"),
        corpus: Vec::new,
    };
    let r = cyfr_fuzz::run(&t, 10, 1);
    assert_eq!(r.crashes, 10);
    assert_eq!(r.failures[0].1, "boom");
}
