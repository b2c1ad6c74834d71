//! Learning rates at the start, end of warmup, middle of the decay and end,
//! from the formulas in `algoprog_nn::schedule`, with T = 101 steps and
//! 10 % warmup: W = round(10.1) = 10, decay denominator T − 1 − W = 90.

use algoprog_nn::{LrSchedule, ScheduleConfig};

const T: usize = 101;
const PEAK: f64 = 2.0;

fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} != {b}");
}

#[test]
fn cosine_with_warmup_and_floor() {
    let s = ScheduleConfig::Cosine {
        warmup_frac: 0.1,
        min_ratio: 0.1,
    };
    close(s.lr(0, T, PEAK), PEAK / 10.0); // (0+1)/10
    close(s.lr(4, T, PEAK), PEAK * 0.5); // (4+1)/10
    close(s.lr(9, T, PEAK), PEAK); // end of warmup
    close(s.lr(10, T, PEAK), PEAK); // p = 0
    close(s.lr(55, T, PEAK), PEAK * 0.55); // p = 45/90 = 1/2: 0.1 + 0.9·½
    close(s.lr(100, T, PEAK), PEAK * 0.1); // last step: floor
    close(s.lr(500, T, PEAK), PEAK * 0.1); // past the end
    assert_eq!(ScheduleConfig::default(), s);
}

#[test]
fn inverse_sqrt() {
    let s = ScheduleConfig::InverseSqrt { warmup_frac: 0.1 };
    close(s.lr(0, T, PEAK), PEAK / 10.0);
    close(s.lr(9, T, PEAK), PEAK); // √(10/10)
    close(s.lr(39, T, PEAK), PEAK * 0.5); // √(10/40)
    close(s.lr(100, T, PEAK), PEAK * (10.0f64 / 101.0).sqrt());
    // without warmup: η/√(s+1)
    let s0 = ScheduleConfig::InverseSqrt { warmup_frac: 0.0 };
    close(s0.lr(0, T, PEAK), PEAK);
    close(s0.lr(3, T, PEAK), PEAK / 2.0);
}

#[test]
fn linear_warmup_linear_decay() {
    let s = ScheduleConfig::LinearDecay {
        warmup_frac: 0.1,
        min_ratio: 0.0,
    };
    close(s.lr(0, T, PEAK), PEAK / 10.0);
    close(s.lr(9, T, PEAK), PEAK);
    close(s.lr(55, T, PEAK), PEAK * 0.5);
    close(s.lr(100, T, PEAK), 0.0);
    let s = ScheduleConfig::LinearDecay {
        warmup_frac: 0.1,
        min_ratio: 0.1,
    };
    close(s.lr(55, T, PEAK), PEAK * 0.55);
    close(s.lr(100, T, PEAK), PEAK * 0.1);
}

#[test]
fn linear_decay_defaults_to_zero_and_cosine_to_a_tenth() {
    // linear decay goes to 0 (the authors' runs), cosine to 0.1× (the papers' table 2)
    let lin: ScheduleConfig = toml::from_str("name = \"linear_decay\"").unwrap();
    assert_eq!(lin, ScheduleConfig::linear_decay());
    assert_eq!(
        lin,
        ScheduleConfig::LinearDecay {
            warmup_frac: 0.1,
            min_ratio: 0.0
        }
    );
    close(lin.lr(55, T, PEAK), PEAK * 0.5); // p = ½: half the peak
    close(lin.lr(99, T, PEAK), PEAK / 90.0); // p = 89/90
    assert_eq!(lin.lr(100, T, PEAK), 0.0); // the last step trains at rate 0
    let cos: ScheduleConfig = toml::from_str("name = \"cosine\"").unwrap();
    assert_eq!(cos, ScheduleConfig::cosine());
    close(cos.lr(100, T, PEAK), PEAK * 0.1);
    // an explicit floor is still honoured
    let lin: ScheduleConfig = toml::from_str("name = \"linear_decay\"\nmin_ratio = 0.1").unwrap();
    close(lin.lr(100, T, PEAK), PEAK * 0.1);
}

#[test]
fn constant() {
    let s = ScheduleConfig::Constant { warmup_frac: 0.0 };
    for step in [0, 9, 50, 100] {
        close(s.lr(step, T, PEAK), PEAK);
    }
    let s = ScheduleConfig::Constant { warmup_frac: 0.1 };
    close(s.lr(0, T, PEAK), PEAK / 10.0);
    close(s.lr(9, T, PEAK), PEAK);
    close(s.lr(100, T, PEAK), PEAK);
}

#[test]
fn warmup_stable_decay() {
    // decay steps round(0.21·101) = 21 → decay starts at S = 80, denominator 100 − 80 = 20
    let s = ScheduleConfig::Wsd {
        warmup_frac: 0.1,
        decay_frac: 0.21,
        min_ratio: 0.1,
    };
    close(s.lr(0, T, PEAK), PEAK / 10.0);
    close(s.lr(9, T, PEAK), PEAK);
    close(s.lr(50, T, PEAK), PEAK); // stable
    close(s.lr(80, T, PEAK), PEAK); // decay start
    close(s.lr(90, T, PEAK), PEAK * 0.55); // q = ½
    close(s.lr(100, T, PEAK), PEAK * 0.1);
}

#[test]
fn configs_parse_from_toml_with_defaults_and_reject_unknown_keys() {
    let s: ScheduleConfig = toml::from_str("name = \"cosine\"").unwrap();
    assert_eq!(
        s,
        ScheduleConfig::Cosine {
            warmup_frac: 0.1,
            min_ratio: 0.1
        }
    );
    let s: ScheduleConfig = toml::from_str("name = \"wsd\"\ndecay_frac = 0.3").unwrap();
    assert_eq!(
        s,
        ScheduleConfig::Wsd {
            warmup_frac: 0.1,
            decay_frac: 0.3,
            min_ratio: 0.1
        }
    );
    let s: ScheduleConfig = toml::from_str("name = \"constant\"").unwrap();
    assert_eq!(s, ScheduleConfig::Constant { warmup_frac: 0.0 });
    assert!(toml::from_str::<ScheduleConfig>("name = \"cosine\"\nwarmup = 0.1").is_err());
    let e = ScheduleConfig::Cosine {
        warmup_frac: 1.5,
        min_ratio: 0.1,
    }
    .validate()
    .unwrap_err();
    assert_eq!(e.key, "train.schedule.warmup_frac");
    assert!(e.to_string().contains("1.5"));
    let e = ScheduleConfig::Wsd {
        warmup_frac: 0.5,
        decay_frac: 0.6,
        min_ratio: 0.1,
    }
    .validate()
    .unwrap_err();
    assert_eq!(e.key, "train.schedule.decay_frac");
}
