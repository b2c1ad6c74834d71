//! algoprog-train: the training loop with an exact FLOP ledger, evaluation,
//! run records and (as they land) checkpoints and sweeps.
//!
//! ```text
//! RunConfig (TOML, presets resolved) ──► Dataset::prepare ──► ModelConfig::build
//!      └─► train_on: steps × (grad-accumulated backward, clip, optimiser step)
//!              every eval_interval: validation loss ──► curve.csv + run.json
//! ```

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod executor;
pub mod fault;
pub mod record;
pub mod runtime;
pub mod store;
pub mod study;
pub mod suite;
pub mod trainer;

pub use config::{ParamCountKind, RunConfig, TrainConfig, PRESETS};
pub use device::{DeviceSpec, Precision};
pub use error::{Result, TrainError};
pub use record::{EvalRow, FlopLedger, RunDir, RunRecord, RunStatus};
pub use trainer::{
    batch_loss, evaluate, train, train_on, train_on_with, Observer, Silent, StepInfo, TrainOptions,
    TrainOutcome,
};
