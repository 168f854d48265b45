//! The multi-task model (docs/design.md §4): features, network, training,
//! evaluation, the artifact format, experiments and TorchScript interop.
//!
//! Dependencies within: `features` → `network` → `dataset` → `train` /
//! `evaluate` → `diagnostics` → `artifact` → `report` / `experiment`. Scoring
//! uses `features`, `network` and `artifact` only.

pub mod artifact;
pub mod dataset;
pub mod diagnostics;
pub mod evaluate;
pub mod experiment;
pub mod features;
pub mod fused;
pub mod metrics;
pub mod network;
pub mod report;
pub mod torchscript;
pub mod train;
pub mod workflow;

use tch::nn::VarStore;
use tch::{Device, TchError};

use crate::exit_code::ExitCode;
use features::{FeatureError, FeatureSpec};
use network::{Architecture, Network};

/// A network with its variables and the feature spec it reads.
pub struct Model {
    pub spec: FeatureSpec,
    pub architecture: Architecture,
    pub vs: VarStore,
    pub network: Network,
}

impl Model {
    /// A model with freshly initialised weights (seed with `tch::manual_seed`).
    pub fn new(spec: FeatureSpec, architecture: Architecture) -> Model {
        let vs = VarStore::new(Device::Cpu);
        let network = Network::new(&vs.root(), &spec, &architecture);
        Model { spec, architecture, vs, network }
    }

    /// An independent copy (its own variables).
    pub fn copy(&self) -> Result<Model, ModelError> {
        let mut copy = Model::new(self.spec.clone(), self.architecture.clone());
        copy.vs.copy(&self.vs)?;
        Ok(copy)
    }

    /// All variables (weights and batch-norm statistics), serialised in memory.
    pub fn weights(&self) -> Result<Vec<u8>, ModelError> {
        let mut bytes = Vec::new();
        self.vs.save_to_stream(&mut bytes)?;
        Ok(bytes)
    }

    pub fn load_weights(&mut self, bytes: &[u8]) -> Result<(), ModelError> {
        Ok(self.vs.load_from_stream(std::io::Cursor::new(bytes))?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Feature(#[from] FeatureError),
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
    #[error("local scratch file: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Precision(#[from] fused::PrecisionError),
    /// A bad artifact, option or experiment setting.
    #[error("{0}")]
    Invalid(String),
}

impl ModelError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ModelError::Feature(_) | ModelError::Invalid(_) | ModelError::Precision(_) => ExitCode::Invalid,
            ModelError::Storage(e) => e.exit_code(),
            ModelError::Dataset(e) => e.exit_code(),
            ModelError::Torch(_) | ModelError::Io(_) => ExitCode::Internal,
        }
    }
}

/// What libtorch sees on this machine (`audience info`).
pub struct LibtorchProbe {
    /// Sum of a 2×2 ones matrix product on the CPU: 8 when libtorch computes.
    pub matmul_sum: f64,
    pub intra_op_threads: i32,
    pub cuda_available: bool,
}

/// Loads libtorch and runs a small product on the CPU.
pub fn probe_libtorch() -> LibtorchProbe {
    let ones = || tch::Tensor::ones([2, 2], (tch::Kind::Float, tch::Device::Cpu));
    LibtorchProbe {
        matmul_sum: ones().matmul(&ones()).sum(tch::Kind::Float).double_value(&[]),
        intra_op_threads: tch::get_num_threads(),
        cuda_available: tch::Cuda::is_available(),
    }
}
