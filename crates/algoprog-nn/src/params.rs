//! Named, role-tagged trainable parameters and the seeded builder that creates them.

use crate::init::{Init, InitKind, InitScheme, Initializer};
use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a parameter is for: drives initialisation and weight-decay masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamRole {
    /// Token embedding (also the output layer when tied).
    Embedding,
    /// Learned absolute position table.
    PositionalEmbedding,
    /// Fused query/key/value projection.
    AttentionQkv,
    /// Attention output projection.
    AttentionOut,
    /// Feed-forward input projections (up and gate).
    MlpIn,
    /// Feed-forward output (down) projection.
    MlpOut,
    /// Norm gains and shifts.
    Norm,
    /// Biases of linear layers.
    Bias,
    /// Untied output (unembedding) matrix.
    Output,
    /// Hidden-to-hidden recurrent matrices.
    Recurrent,
    /// Input-to-hidden recurrent matrices.
    RecurrentInput,
    /// Anything else a user component adds.
    Other,
}

/// One trainable parameter. `name` is its safetensors key.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub role: ParamRole,
    pub var: Var,
}

/// Every trainable parameter of a model, in creation order.
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    params: Vec<Param>,
}

impl ParamStore {
    pub fn new(params: Vec<Param>) -> Self {
        Self { params }
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Param> {
        self.params.iter()
    }
    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.params.len()
    }
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
    /// Number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.params.iter().map(|p| p.var.elem_count()).sum()
    }
    /// Scalar parameters with the given role.
    pub fn num_elements_with_role(&self, role: ParamRole) -> usize {
        self.params
            .iter()
            .filter(|p| p.role == role)
            .map(|p| p.var.elem_count())
            .sum()
    }
    /// The variables (cheap clones sharing storage), in creation order.
    pub fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|p| p.var.clone()).collect()
    }
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
    /// Every parameter under its name, serialised as a safetensors file in memory.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        let map: HashMap<String, Tensor> = self
            .params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .collect();
        Ok(safetensors::serialize(&map, None)?)
    }
    /// Writes every parameter under its name to exactly `path` (no hidden
    /// sibling temporary file: callers that need atomicity write to their own
    /// temporary path and rename it).
    pub fn save_safetensors<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        std::fs::write(path, self.to_safetensors_bytes()?)?;
        Ok(())
    }
    /// Copies values from a safetensors file into the existing variables.
    ///
    /// Errors name the key that is missing, has the wrong shape, or is not a
    /// parameter of this model. Values are converted to each variable's dtype.
    pub fn load_safetensors<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        let path = path.as_ref();
        let Some(first) = self.params.first() else {
            return Ok(());
        };
        let loaded = candle_core::safetensors::load(path, first.var.device())?;
        for p in &self.params {
            let t = loaded.get(&p.name).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "checkpoint {} has no tensor `{}` (expected shape {:?}); it was saved from a different model configuration",
                    path.display(), p.name, p.var.dims()
                ))
            })?;
            if t.dims() != p.var.dims() {
                return Err(candle_core::Error::Msg(format!(
                    "checkpoint {}: tensor `{}` has shape {:?}, the model expects {:?}; it was saved from a different model configuration",
                    path.display(), p.name, t.dims(), p.var.dims()
                )));
            }
        }
        if let Some(extra) = loaded.keys().find(|k| self.get(k).is_none()) {
            return Err(candle_core::Error::Msg(format!(
                "checkpoint {}: tensor `{extra}` is not a parameter of this model; it was saved from a different model configuration",
                path.display()
            )));
        }
        for p in &self.params {
            let t = loaded[&p.name].to_dtype(p.var.dtype())?;
            p.var.set(&t)?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ParamStore {
    type Item = &'a Param;
    type IntoIter = std::slice::Iter<'a, Param>;
    fn into_iter(self) -> Self::IntoIter {
        self.params.iter()
    }
}

struct Inner {
    params: Vec<Param>,
    rng: ChaCha8Rng,
    device: Device,
    dtype: DType,
    init: Arc<dyn Initializer>,
    /// In view mode, parameters are looked up here and handed out detached.
    source: Option<ParamStore>,
}

/// Creates named parameters with seeded initialisation (a VarBuilder for training).
///
/// All randomness comes from one ChaCha8 stream seeded with the model seed,
/// consumed in creation order, so two builds with the same seed and the
/// same architecture are bit-identical (candle's global RNG is not used).
/// Values are drawn in f64 and then cast to the builder's dtype.
///
/// `pp(name)` returns a builder whose parameters are prefixed `name.`; the
/// dotted names are the safetensors keys.
#[derive(Clone)]
pub struct ParamBuilder {
    prefix: String,
    inner: Arc<Mutex<Inner>>,
}

impl ParamBuilder {
    /// A builder using the default [`InitKind::TransformerScaled`] scheme for a 1-layer model.
    pub fn new(seed: u64, device: &Device, dtype: DType) -> Self {
        Self::with_initializer(
            seed,
            device,
            dtype,
            Arc::new(InitScheme {
                kind: InitKind::TransformerScaled,
                n_layers: 1,
            }),
        )
    }

    pub fn with_initializer(
        seed: u64,
        device: &Device,
        dtype: DType,
        init: Arc<dyn Initializer>,
    ) -> Self {
        Self {
            prefix: String::new(),
            inner: Arc::new(Mutex::new(Inner {
                params: Vec::new(),
                rng: ChaCha8Rng::seed_from_u64(seed),
                device: device.clone(),
                dtype,
                init,
                source: None,
            })),
        }
    }

    /// A builder that creates nothing: each `param` call returns the parameter
    /// of the same name in `store`, **detached** (no autograd tracking) but
    /// sharing its storage. A model built through it is an evaluation view of
    /// the trained model: optimiser updates (in-place `Var::set`) show through,
    /// and its forward pass records no graph. Names and shapes must match.
    pub fn view_of(store: &ParamStore, device: &Device, dtype: DType) -> Self {
        let b = Self::new(0, device, dtype);
        b.inner.lock().unwrap().source = Some(store.clone());
        b
    }

    /// A builder for the sub-module `name`.
    pub fn pp(&self, name: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Self {
            prefix,
            inner: self.inner.clone(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn device(&self) -> Device {
        self.inner.lock().unwrap().device.clone()
    }
    pub fn dtype(&self) -> DType {
        self.inner.lock().unwrap().dtype
    }

    /// A parameter initialised by the builder's [`Initializer`] for `role`.
    pub fn param(&self, name: &str, shape: &[usize], role: ParamRole) -> Result<Tensor> {
        let init = self.inner.lock().unwrap().init.init(role, shape);
        self.param_with(name, shape, role, init)
    }

    /// A parameter with an explicit initialisation.
    pub fn param_with(
        &self,
        name: &str,
        shape: &[usize],
        role: ParamRole,
        init: Init,
    ) -> Result<Tensor> {
        let full = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        let mut inner = self.inner.lock().unwrap();
        if inner.params.iter().any(|p| p.name == full) {
            return Err(candle_core::Error::Msg(format!(
                "parameter `{full}` is created twice"
            )));
        }
        if let Some(source) = &inner.source {
            let p = source.get(&full).cloned().ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "view of a model: the source has no parameter `{full}`"
                ))
            })?;
            if p.var.dims() != shape {
                return Err(candle_core::Error::Msg(format!(
                    "view of a model: `{full}` has shape {:?} in the source, {shape:?} requested",
                    p.var.dims()
                )));
            }
            let out = p.var.as_tensor().detach();
            inner.params.push(p);
            return Ok(out);
        }
        let n: usize = shape.iter().product();
        let values: Vec<f64> = match init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Constant(c) => vec![c; n],
            Init::Normal { std } => {
                let normal = Normal::new(0.0, std)
                    .map_err(|e| candle_core::Error::Msg(format!("init of `{full}`: {e}")))?;
                (0..n).map(|_| normal.sample(&mut inner.rng)).collect()
            }
            Init::Uniform { bound } => (0..n)
                .map(|_| {
                    if bound > 0.0 {
                        inner.rng.random_range(-bound..bound)
                    } else {
                        0.0
                    }
                })
                .collect(),
        };
        let t = Tensor::from_vec(values, shape, &inner.device)?.to_dtype(inner.dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        inner.params.push(Param {
            name: full,
            role,
            var,
        });
        Ok(out)
    }

    /// Takes the parameters created so far (through this builder or any `pp` of it).
    pub fn finish(&self) -> ParamStore {
        ParamStore::new(std::mem::take(&mut self.inner.lock().unwrap().params))
    }
}
