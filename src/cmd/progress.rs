//! Progress of one run on a terminal (indicatif), shared by `train` and `run`.

use algoprog_train::{EvalRow, Observer, RunRecord, StepInfo};
use indicatif::{ProgressBar, ProgressStyle};

/// indicatif progress: step, loss, tokens/s; one line per evaluation.
pub struct BarObserver {
    bar: ProgressBar,
}

impl BarObserver {
    pub fn new(quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} steps {msg}",
            )
            .expect("valid template"),
        );
        Self { bar }
    }
}

impl Observer for BarObserver {
    fn on_start(&mut self, r: &RunRecord) {
        self.bar.set_length(r.planned_steps);
        self.bar.set_prefix(format!("{} ({})", r.name, r.run_id));
        self.bar.println(format!(
            "{}: {} params ({} embedding, {} non-embedding), {:.3e} training FLOPs/token, {} steps × {} tokens; unigram entropy {:.3} nats",
            r.run_id,
            r.total_params,
            r.params.embedding,
            r.params.non_embedding,
            r.flops.per_token.train_per_token,
            r.planned_steps,
            r.flops.tokens_per_step,
            r.data.unigram_entropy
        ));
    }
    fn on_step(&mut self, s: &StepInfo) {
        self.bar.set_position(s.step);
        self.bar.set_message(format!(
            "loss {:.4}  lr {:.2e}  {:.0} tok/s",
            s.loss, s.lr, s.tokens_per_second
        ));
    }
    fn on_eval(&mut self, r: &EvalRow) {
        self.bar.println(format!(
            "step {:>6}  tokens {:>10}  flops {:.3e}  train {:.4}  val {:.4}",
            r.step, r.tokens, r.flops, r.train_loss, r.val_loss
        ));
    }
    fn on_finish(&mut self, _r: &RunRecord) {
        self.bar.finish_and_clear();
    }
}
