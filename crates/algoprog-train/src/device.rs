//! Where a run trains: `device = "cpu" | "cuda" | "cuda:N"` in a run config.
//!
//! The CPU path uses the fused kernels of `algoprog_nn::fused`; on a GPU
//! every op runs through candle's CUDA backend with the composite ops (the
//! fused kernels fall back automatically). CUDA needs a build with the
//! `cuda` cargo feature (`cargo build --release --features cuda`) and the
//! CUDA toolkit; without it, asking for `cuda` fails with that instruction.
//!
//! `precision = "bf16"` (GPU only) multiplies in bf16 and keeps everything
//! else in f32 (see `algoprog_nn::precision`).

use crate::error::TrainError;
use candle_core::Device;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A device named in a config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal (`cuda` = `cuda:0`).
    Cuda(usize),
}

impl DeviceSpec {
    pub fn is_cpu(&self) -> bool {
        *self == DeviceSpec::Cpu
    }

    /// Parses `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => match t.strip_prefix("cuda:").map(|n| n.parse::<usize>()) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!("device = {s:?} is not a device: use \"cpu\", \"cuda\" or \"cuda:N\" (N the GPU ordinal)")),
            },
        }
    }

    /// Opens the device; a CUDA device in a build without the `cuda`
    /// feature, or without a GPU, is a config error naming the fix.
    pub fn open(&self) -> Result<Device, TrainError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(TrainError::config(
                        "device",
                        format!("device = \"cuda:{n}\" but this binary was built without CUDA support"),
                        "rebuild with `cargo build --release --features cuda` (needs the CUDA toolkit), or set device = \"cpu\"".into(),
                    ));
                }
                Device::new_cuda(*n).map_err(|e| {
                    TrainError::config(
                        "device",
                        format!("device = \"cuda:{n}\" could not be opened: {e}"),
                        "check the GPU ordinal with nvidia-smi, or set device = \"cpu\"".into(),
                    )
                })
            }
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Matmul precision (`precision = "f32" | "bf16"` in a run config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in f32 (the default; the only choice on the CPU).
    #[default]
    F32,
    /// Linear layers and the output layer multiply in bf16; parameters,
    /// optimiser state, norms, softmax, attention scores and the loss stay f32.
    Bf16,
}

impl Precision {
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// bf16 needs a GPU: on the CPU the fused f32 kernels are faster.
    pub fn validate(&self, device: DeviceSpec) -> Result<(), TrainError> {
        if *self == Precision::Bf16 && device.is_cpu() {
            return Err(TrainError::config(
                "precision",
                "precision = \"bf16\" with device = \"cpu\"".into(),
                "bf16 matmuls are for GPUs: set device = \"cuda\", or precision = \"f32\" on the CPU (its fused kernels are f32)".into(),
            ));
        }
        Ok(())
    }
}

/// Sets this thread's matmul precision for its lifetime, restoring the
/// previous setting on drop.
pub struct PrecisionGuard(bool);

impl PrecisionGuard {
    pub fn new(p: Precision) -> Self {
        Self(algoprog_nn::precision::set_matmul_bf16(
            p == Precision::Bf16,
        ))
    }
}

impl Drop for PrecisionGuard {
    fn drop(&mut self) {
        algoprog_nn::precision::set_matmul_bf16(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_is_refused_on_the_cpu_and_the_guard_restores() {
        let e = Precision::Bf16
            .validate(DeviceSpec::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("precision") && e.contains("cuda"), "{e}");
        assert!(Precision::Bf16.validate(DeviceSpec::Cuda(0)).is_ok());
        assert!(Precision::F32.validate(DeviceSpec::Cpu).is_ok());
        {
            let _g = PrecisionGuard::new(Precision::Bf16);
            assert!(algoprog_nn::precision::matmul_bf16());
        }
        assert!(!algoprog_nn::precision::matmul_bf16());
    }

    #[test]
    fn parses_and_round_trips() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse("CUDA").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::parse("cuda:3").unwrap(), DeviceSpec::Cuda(3));
        for d in [DeviceSpec::Cpu, DeviceSpec::Cuda(2)] {
            assert_eq!(DeviceSpec::parse(&d.to_string()).unwrap(), d);
        }
        let e = DeviceSpec::parse("tpu").unwrap_err();
        assert!(e.contains("\"tpu\"") && e.contains("cuda:N"), "{e}");
        assert!(DeviceSpec::parse("cuda:x").is_err());
    }

    #[test]
    fn cuda_without_support_names_the_feature() {
        if candle_core::utils::cuda_is_available() {
            return; // a CUDA build: nothing to check here
        }
        let e = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
        assert!(e.contains("--features cuda") && e.contains("device"), "{e}");
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
    }
}
