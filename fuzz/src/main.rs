//! `cyfr-fuzz --target NAME|all --inputs N --seed S`: a bounded fuzz run; exits 1 on any crash.

use cyfr_fuzz::targets;

fn main() {
    let mut target = "all".to_string();
    let mut inputs: u64 = 100_000;
    let mut seed: u64 = 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--target" => target = val(),
            "--inputs" => {
                inputs = val()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| usage("--inputs takes a number"))
            }
            "--seed" => {
                seed = val()
                    .parse()
                    .unwrap_or_else(|_| usage("--seed takes a number"))
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    let chosen: Vec<_> = if target == "all" {
        targets::ALL.iter().collect()
    } else {
        target
            .split(',')
            .map(|t| targets::find(t).unwrap_or_else(|| usage(&format!("no target `{t}`"))))
            .collect()
    };
    let mut total_crashes = 0;
    println!(
        "{:<10} {:>12} {:>8} {:>10} {:>12}",
        "target", "inputs", "crashes", "seconds", "inputs/s"
    );
    for t in chosen {
        let r = cyfr_fuzz::run(t, inputs, seed);
        let secs = r.elapsed.as_secs_f64();
        println!(
            "{:<10} {:>12} {:>8} {:>10.1} {:>12.0}",
            r.target,
            r.inputs,
            r.crashes,
            secs,
            r.inputs as f64 / secs.max(1e-9)
        );
        for (hex, msg) in &r.failures {
            println!("  crash: {msg}\n  input (hex): {hex}");
        }
        total_crashes += r.crashes;
    }
    if total_crashes > 0 {
        std::process::exit(1);
    }
}

fn usage(why: &str) -> ! {
    let names: Vec<_> = targets::ALL.iter().map(|t| t.name).collect();
    eprintln!(
        "{why}\nusage: cyfr-fuzz [--target NAME[,NAME]|all] [--inputs N] [--seed S]\ntargets: {}",
        names.join(", ")
    );
    std::process::exit(2);
}
