//! Run records written by earlier versions (copies of stored `run.json`
//! files in `tests/data/`) still read, write back unchanged, and their
//! model section rebuilds the parameter and FLOP counts they recorded.

use algoprog_train::RunRecord;

#[test]
fn stored_run_records_read_and_keep_their_counts() {
    for (text, family) in [
        (include_str!("data/run-modern.json"), "modern"),
        (include_str!("data/run-retro.json"), "retro"),
    ] {
        let stored: serde_json::Value = serde_json::from_str(text).unwrap();
        let rec: RunRecord = serde_json::from_str(text).unwrap();
        assert_eq!(rec.family, family);
        // written back, the record (its config included) is the same JSON
        assert_eq!(serde_json::to_value(&rec).unwrap(), stored, "{family}");
        let model = &rec.config.model;
        let vocab = rec.params.embedding / rec.width;
        assert_eq!(model.param_counts(vocab), rec.params, "{family}");
        let report = model.flops(vocab, rec.flops.per_token.seq_len);
        assert_eq!(report, rec.flops.per_token, "{family}");
    }
}
