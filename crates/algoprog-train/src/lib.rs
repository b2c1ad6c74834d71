//! algoprog-train: the training loop with an exact FLOP ledger, evaluation,
//! run records, checkpoints, run stores, studies and sweeps.
//!
//! ```text
//! RunConfig (TOML, presets resolved) ──check──► CheckedRunConfig
//!      ├─► Dataset::prepare
//!      ├─► registry::build_model (built-in kinds, or a registered custom builder)
//!      └─► train_model(model, schedule, optimiser, data, checked config):
//!              steps × (grad-accumulated backward, clip, optimiser step)
//!              every eval_interval: validation loss ──► checkpoint, curve.csv, run.json
//!              ──► Termination (finished | diverged at step | stopped)
//! ```

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod executor;
pub mod fault;
pub mod record;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod study;
pub mod suite;
pub mod trainer;

pub use config::{CheckedRunConfig, ParamCountKind, RunConfig, TrainConfig, PRESETS};
pub use device::{DeviceSpec, Precision};
pub use error::{Result, TrainError};
pub use record::{EvalRow, FlopLedger, RunDir, RunRecord, RunStatus, Termination};
pub use registry::{build_model, register_model, registered_models, BuildContext};
pub use trainer::{
    batch_loss, evaluate, train, train_model, train_on, train_on_with, Observer, Silent, StepInfo,
    TrainOptions, TrainOutcome, TrainParts, TrainState,
};
