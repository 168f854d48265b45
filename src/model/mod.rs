//! The multi-task model (DESIGN.md section 4): features, network, training,
//! evaluation, the artifact format, experiments and TorchScript interop.
//!
//! Dependencies within: `features` → `network` → `dataset` → `train` /
//! `evaluate` → `artifact` → `experiment`. Scoring uses `features`, `network` and
//! `artifact` only.

pub mod artifact;
pub mod dataset;
pub mod evaluate;
pub mod experiment;
pub mod features;
pub mod metrics;
pub mod network;
pub mod torchscript;
pub mod train;
pub mod workflow;

use tch::nn::VarStore;
use tch::{Device, TchError};

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
    /// A bad artifact, option or experiment setting.
    #[error("{0}")]
    Invalid(String),
}
