//! Loading curves: column mapping, located errors for bad CSVs, run records.

use std::path::Path;

use algoprog_scaling::{
    fit_frontier, load_csv, load_csv_with, load_curves, load_run_record, load_run_records,
    ColumnMap, FrontierOptions, Irreducible, LoadOptions, NonFinitePolicy, PowerLawOptions,
};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn generic() -> ColumnMap {
    ColumnMap {
        compute: "C".into(),
        loss: "L".into(),
        params: Some("N".into()),
        tokens: None,
        family: Some("fam".into()),
        run: None,
        seed: Some("seed".into()),
        step: None,
    }
}

#[test]
fn generic_csv_groups_runs_and_orders_by_compute() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "x.csv",
        "fam,N,seed,C,L\nmodern,1e6,0,2e12,3.5\nmodern,1e6,0,1e12,4.0\nretro,1e6,0,1e12,4.2\nmodern,2e6,0,4e12,3.1\n",
    );
    let curves = load_csv(&p, &generic()).unwrap();
    assert_eq!(curves.len(), 3);
    assert_eq!(curves[0].meta.run_id, "modern/N=1000000/seed=0");
    assert_eq!(curves[0].meta.params, Some(1e6));
    assert_eq!(curves[0].meta.seed, Some(0));
    // no step column: ordered by compute, numbered 0, 1, ...
    let p0: Vec<(u64, f64, f64)> = curves[0]
        .points
        .iter()
        .map(|p| (p.step, p.flops, p.loss))
        .collect();
    assert_eq!(p0, vec![(0, 1e12, 4.0), (1, 2e12, 3.5)]);
    assert!(curves[0].points[0].tokens.is_nan());
    assert_eq!(curves[1].meta.family, "retro");
}

#[test]
fn algoprog_curve_csv_loads_with_default_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "curve.csv", "step,tokens,flops,train_loss,val_loss,lr\n0,0,0,10.9,10.8,0\n100,12800,1.5e12,6.1,6.0,0.001\n200,25600,3e12,5.2,5.1,0.001\n");
    let c = load_csv(&p, &ColumnMap::default()).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].points.len(), 3);
    assert_eq!(c[0].points[2].step, 200);
    assert_eq!(c[0].points[2].tokens, 25600.0);
    assert_eq!(c[0].points[2].loss, 5.1);
}

fn err(text: &str, cols: &ColumnMap) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.csv", text);
    load_csv(&p, cols).unwrap_err().to_string()
}

#[test]
fn missing_column_names_file_line_column_and_flag() {
    let e = err(
        "step,tokens,flops,train_loss,lr\n1,2,3,4,5\n",
        &ColumnMap::default(),
    );
    assert!(
        e.contains("bad.csv, line 1") && e.contains("`val_loss`") && e.contains("--loss-col"),
        "{e}"
    );
    assert!(e.contains("`train_loss`"), "lists the header: {e}");
}

#[test]
fn text_in_numeric_column_names_file_line_and_column() {
    let e = err(
        "step,tokens,flops,train_loss,val_loss,lr\n1,10,1e12,5,4.5,0\n2,20,2e12,4,oops,0\n",
        &ColumnMap::default(),
    );
    assert!(
        e.contains("bad.csv, line 3, column `val_loss`") && e.contains("`oops` is not a number"),
        "{e}"
    );
    let e = err("fam,N,seed,C,L\nm,big,0,1,2\n", &generic());
    assert!(
        e.contains("line 2, column `N`") && e.contains("`big`"),
        "{e}"
    );
    let e = err("fam,N,seed,C,L\nm,1e6,0.5,1,2\n", &generic());
    assert!(
        e.contains("line 2, column `seed`") && e.contains("integer"),
        "{e}"
    );
}

#[test]
fn empty_file_and_header_only_are_errors() {
    let e = err("", &ColumnMap::default());
    assert!(e.contains("bad.csv") && e.contains("empty"), "{e}");
    let e = err(
        "step,tokens,flops,train_loss,val_loss,lr\n",
        &ColumnMap::default(),
    );
    assert!(e.contains("bad.csv") && e.contains("no data rows"), "{e}");
}

#[test]
fn empty_cell_and_ragged_row_are_located() {
    let e = err(
        "step,tokens,flops,train_loss,val_loss,lr\n1,10,,5,4.5,0\n",
        &ColumnMap::default(),
    );
    assert!(
        e.contains("line 2, column `flops`") && e.contains("empty value"),
        "{e}"
    );
    let e = err(
        "step,tokens,flops,train_loss,val_loss,lr\n1,10,1e12,5,4.5,0\n2,20,2e12\n",
        &ColumnMap::default(),
    );
    assert!(
        e.contains("bad.csv, line 3") && e.contains("malformed"),
        "{e}"
    );
}

#[test]
fn unsorted_steps_are_an_error() {
    let e = err(
        "step,tokens,flops,train_loss,val_loss,lr\n100,1,1e12,5,4.5,0\n50,2,2e12,4,4.0,0\n",
        &ColumnMap::default(),
    );
    assert!(
        e.contains("line 3, column `step`")
            && e.contains("step 50")
            && e.contains("previous step 100"),
        "{e}"
    );
}

#[test]
fn nan_loss_is_an_error_or_marks_the_run_diverged() {
    let text = "step,tokens,flops,train_loss,val_loss,lr\n1,1,1e12,5,4.5,0\n2,2,2e12,5,4.0,0\n3,3,3e12,5,NaN,0\n4,4,4e12,5,3.0,0\n";
    let e = err(text, &ColumnMap::default());
    assert!(
        e.contains("line 4, column `val_loss`") && e.contains("non-finite"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "d.csv", text);
    let opts = LoadOptions {
        non_finite: NonFinitePolicy::MarkDiverged,
        ..Default::default()
    };
    let (c, rep) = load_csv_with(&p, &ColumnMap::default(), &opts).unwrap();
    assert!(c[0].meta.diverged);
    assert_eq!(c[0].points.len(), 2);
    assert_eq!(rep.rows_after_divergence, 2);
    assert_eq!(rep.diverged_runs, 1);
}

#[test]
fn run_records_load_with_missing_and_extra_fields() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("runs/a");
    let b = dir.path().join("runs/b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    write(
        &a,
        "run.json",
        r#"{"run_id":"abc","family":"modern","seed":3,"config":{"width":128,"lr":0.003},
        "params":{"embedding":6400000,"non_embedding":1600000},"flops":{"per_token":1e7},"status":"finished","extra":[1,2]}"#,
    );
    write(&a, "curve.csv", "step,tokens,flops,train_loss,val_loss,lr\n0,0,0,10.9,10.8,0\n50,100,1e9,7.0,,0.001\n100,200,2e9,6.1,6.0,0.001\n");
    write(
        &b,
        "run.json",
        r#"{"run_id":"def","family":"retro","status":"diverged"}"#,
    );
    write(
        &b,
        "curve.csv",
        "step,tokens,flops,train_loss,val_loss,lr\n0,0,0,10.9,10.8,0\n100,200,2e9,nan,nan,0.001\n",
    );
    let (c, rep) = load_run_records(dir.path()).unwrap();
    assert_eq!(c.len(), 2);
    let m = &c[0].meta;
    assert_eq!(
        (m.run_id.as_str(), m.family.as_str(), m.seed, m.width, m.lr),
        ("abc", "modern", Some(3), Some(128), Some(0.003))
    );
    // N is the total parameter count (embedding + non-embedding), as the papers fit on.
    assert_eq!(m.params, Some(8.0e6));
    assert_eq!(m.token_budget, None);
    assert!(!m.diverged);
    assert_eq!(
        c[0].points.iter().map(|p| p.step).collect::<Vec<_>>(),
        vec![0, 100]
    );
    assert_eq!(rep.empty_loss_rows, 1);
    assert!(c[1].meta.diverged);
    assert_eq!((c[1].meta.seed, c[1].meta.params), (None, None));
    // load_curves dispatches on directories
    assert_eq!(
        load_curves(dir.path(), &ColumnMap::default(), &LoadOptions::default())
            .unwrap()
            .0
            .len(),
        2
    );
    let e = load_run_records(dir.path().join("runs/a/..").join("nonexistent"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nonexistent"), "{e}");
}

#[test]
fn invalid_run_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "run.json", "{\"run_id\": ");
    write(
        dir.path(),
        "curve.csv",
        "step,tokens,flops,train_loss,val_loss,lr\n1,1,1,1,1,1\n",
    );
    let e = load_run_records(dir.path()).unwrap_err().to_string();
    assert!(e.contains("run.json") && e.contains("invalid JSON"), "{e}");
}

/// A store-like directory: `runs/<id>/run.json` + `curve.csv`.
fn record(root: &Path, id: &str, json: &str, curve: &str) {
    let d = root.join("runs").join(id);
    std::fs::create_dir_all(&d).unwrap();
    write(&d, "run.json", json);
    write(&d, "curve.csv", curve);
}

#[test]
fn a_run_diverged_before_its_first_evaluation_is_kept_without_points() {
    let dir = tempfile::tempdir().unwrap();
    let header = "step,tokens,flops,train_loss,val_loss,lr\n";
    for (i, n) in [(0, 1.0e6), (1, 2.0e6), (2, 4.0e6)] {
        let rows: String = (1..=6)
            .map(|k| {
                let c = 1e12 * (k * (i + 1)) as f64;
                format!(
                    "{k},{},{c:e},5,{},0.001\n",
                    k * 100,
                    2.0 + 1e3 * c.powf(-0.2)
                )
            })
            .collect();
        record(
            dir.path(),
            &format!("ok{i}"),
            &format!(
                r#"{{"run_id":"ok{i}","family":"modern","status":"finished","total_params":{n}}}"#
            ),
            &format!("{header}{rows}"),
        );
    }
    // lr = 10: NaN at the first step, so the curve has its header only.
    record(
        dir.path(),
        "boom",
        r#"{"run_id":"boom","family":"modern","status":"diverged","total_params":1e6}"#,
        header,
    );
    let (curves, rep) = load_run_records(dir.path()).unwrap();
    assert_eq!(curves.len(), 4);
    let boom = curves.iter().find(|c| c.meta.run_id == "boom").unwrap();
    assert!(boom.meta.diverged && boom.points.is_empty());
    assert_eq!(rep.runs_without_points, 1);
    // The analyses go on: a frontier over the store fits the three good runs.
    let opts = PowerLawOptions {
        irreducible: Irreducible::Fixed(2.0),
        ..Default::default()
    };
    let f = fit_frontier(&curves, &FrontierOptions::default(), &opts).unwrap();
    assert!(f.points.iter().all(|p| p.run_id != "boom"));
    assert!((f.fit.law.gamma - 0.2).abs() < 1e-6, "{:?}", f.fit.law);
    // A single run record loads too.
    let (c, r) = load_run_record(dir.path().join("runs/boom")).unwrap();
    assert!(c.points.is_empty() && c.meta.diverged && r.runs_without_points == 1);
}

#[test]
fn total_params_field_wins_and_plain_numbers_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let curve = "step,tokens,flops,train_loss,val_loss,lr\n1,10,1e9,5,4.5,0\n";
    record(
        dir.path(),
        "a",
        r#"{"run_id":"a","total_params":50144,"params":{"embedding":16384,"non_embedding":33760}}"#,
        curve,
    );
    record(dir.path(), "b", r#"{"run_id":"b","params":12345}"#, curve);
    record(
        dir.path(),
        "c",
        r#"{"run_id":"c","params":{"embedding":16384,"non_embedding":33760}}"#,
        curve,
    );
    let (c, _) = load_run_records(dir.path()).unwrap();
    assert_eq!(
        c.iter().map(|c| c.meta.params).collect::<Vec<_>>(),
        vec![Some(50144.0), Some(12345.0), Some(50144.0)]
    );
}

#[test]
fn negative_compute_and_tokens_are_errors_that_say_so() {
    let e = err(
        "step,tokens,flops,train_loss,val_loss,lr\n1,10,-1e9,5,4.5,0\n",
        &ColumnMap::default(),
    );
    assert!(
        e.contains("line 2, column `flops`")
            && e.contains("negative compute")
            && !e.contains("non-finite"),
        "{e}"
    );
    let e = err(
        "step,tokens,flops,train_loss,val_loss,lr\n1,-10,1e9,5,4.5,0\n",
        &ColumnMap::default(),
    );
    assert!(
        e.contains("line 2, column `tokens`") && e.contains("negative token count"),
        "{e}"
    );
}
