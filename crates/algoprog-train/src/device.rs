//! Where a run trains: `device = "cpu" | "cuda" | "cuda:N"` in a run config.
//!
//! The CPU path uses the fused kernels of `algoprog_nn::fused`; on a GPU
//! every op runs through candle's CUDA backend with the composite ops (the
//! fused kernels fall back automatically). CUDA needs a build with the
//! `cuda` cargo feature (`cargo build --release --features cuda`) and the
//! CUDA toolkit; without it, asking for `cuda` fails with that instruction.

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

#[cfg(test)]
mod tests {
    use super::*;

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
