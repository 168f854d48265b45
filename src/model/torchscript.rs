//! TorchScript interop: score with a model exported from Python.
//!
//! A TorchScript artifact is a directory with `model.pt` (a scripted module)
//! and `features.json` (the [`FeatureSpec`] its inputs are encoded with). The
//! module's signature, documented in docs/model.md:
//!
//! ```text
//! forward(user_cat: Long[n, U], user_dense: Float[n, Ud],
//!         campaign_cat: Long[n, C], campaign_dense: Float[n, Cd],
//!         pair: Float[n, P]) -> Float[n, 5]
//! ```
//!
//! Inputs are the raw encodings of `features` (bucket indices, untransformed
//! dense values: the module normalises them itself); outputs are the five task
//! probabilities in `TASKS` order. `scripts/export_torchscript.py` exports a
//! native artifact this way.

use tch::{CModule, IValue, Tensor};

use super::ModelError;
use super::features::FeatureSpec;
use super::network::{Inputs, TASKS};
use crate::storage::Location;

pub const MODULE_FILE: &str = "model.pt";
pub const FEATURES_FILE: &str = "features.json";

pub struct ScriptedModel {
    pub spec: FeatureSpec,
    module: CModule,
}

impl ScriptedModel {
    pub async fn load(location: &Location) -> Result<ScriptedModel, ModelError> {
        let invalid = |what: String| ModelError::Invalid(format!("TorchScript model {}: {what}", location.url()));
        let spec: FeatureSpec = serde_json::from_slice(&location.join(FEATURES_FILE).read().await?)
            .map_err(|e| invalid(format!("{FEATURES_FILE}: {e}")))?;
        spec.check_compatible().map_err(|e| invalid(e.to_string()))?;
        let bytes = location.join(MODULE_FILE).read().await?;
        let mut module = CModule::load_data(&mut std::io::Cursor::new(bytes))
            .map_err(|e| invalid(format!("{MODULE_FILE} is not a TorchScript module: {e}")))?;
        module.set_eval();
        Ok(ScriptedModel { spec, module })
    }

    /// Probabilities `[n, 5]`.
    pub fn predict(&self, x: &Inputs) -> Result<Tensor, ModelError> {
        let inputs = [&x.user_cat, &x.user_dense, &x.campaign_cat, &x.campaign_dense, &x.pair]
            .map(|t| IValue::Tensor(t.shallow_clone()));
        let output = tch::no_grad(|| self.module.forward_is(&inputs))?;
        match output {
            IValue::Tensor(t) if t.size() == [x.len(), TASKS.len() as i64] => Ok(t),
            IValue::Tensor(t) => Err(ModelError::Invalid(format!(
                "TorchScript model returned shape {:?}, expected [{}, {}]",
                t.size(),
                x.len(),
                TASKS.len()
            ))),
            _ => Err(ModelError::Invalid("TorchScript model did not return a tensor".into())),
        }
    }
}
