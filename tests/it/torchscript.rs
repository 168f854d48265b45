//! TorchScript interop. Always: a module scripted by PyTorch (the committed
//! fixture under tests/data/torchscript, made by
//! scripts/make_torchscript_fixture.py on another CPU) loads through
//! `ScriptedModel` and reproduces the probabilities PyTorch computed, within
//! float32's bound across kernels (`float`). Ignored by the test command, run
//! by scripts/test-ignored.sh where a Python with `torch` and `safetensors` is
//! at hand (`AUDIENCE_PYTHON`): the round trip, a native model exported by
//! scripts/export_torchscript.py scores like the native one.

use std::collections::HashMap;
use std::path::Path;

use audience::model::artifact;
use audience::model::dataset::Dataset;
use audience::model::network::{Architecture, Inputs};
use audience::model::torchscript::ScriptedModel;
use audience::model::train::TrainOptions;
use tch::Tensor;

use crate::float::{assert_tensors_close, fan_ins};
use crate::helpers::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/torchscript");

fn tensors(file: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(Path::new(FIXTURE).join(file)).unwrap().into_iter().collect()
}

#[tokio::test]
async fn a_module_scripted_by_pytorch_scores_as_pytorch_did() {
    let scripted = ScriptedModel::load(&location(Path::new(FIXTURE))).await.unwrap();
    let mut inputs = tensors("inputs.safetensors");
    let mut take = |name: &str| inputs.remove(name).unwrap_or_else(|| panic!("fixture input {name}"));
    let inputs = Inputs {
        user_cat: take("user_cat"),
        user_dense: take("user_dense"),
        campaign_cat: take("campaign_cat"),
        campaign_dense: take("campaign_dense"),
        pair: take("pair"),
    };
    let expected = tensors("expected.safetensors").remove("probabilities").unwrap();
    let actual = scripted.predict(&inputs).unwrap();
    // The fixture's network: the default architecture on the fixture's features.
    let fan_ins = fan_ins(&scripted.spec, &Architecture::default());
    assert_tensors_close(&actual, &expected, &fan_ins, "TorchScript module vs PyTorch's probabilities (another CPU)");
    let spread = actual.std(false).double_value(&[]);
    assert!(spread > 1e-3, "the fixture's probabilities vary ({spread}), so the check means something");
}

#[tokio::test]
#[ignore = "needs AUDIENCE_PYTHON, a Python with torch and safetensors (~4.7 GB with CUDA): run scripts/test-ignored.sh"]
async fn torchscript_export_scores_like_the_native_model() {
    let python = std::env::var_os("AUDIENCE_PYTHON")
        .expect("AUDIENCE_PYTHON names a Python with torch and safetensors (scripts/test-ignored.sh finds one)");
    let (dir, root) = small_world().await;
    let native_dir = dir.path().join("native");
    let options = TrainOptions { max_epochs: 1, validation_days: 1, test_days: 1, ..TrainOptions::default() };
    crate::helpers::train(&location(&root), &location(&native_dir), &options).await;
    let scripted_dir = dir.path().join("scripted");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/export_torchscript.py");
    let export = std::process::Command::new(python)
        .args([script, native_dir.to_str().unwrap(), scripted_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));

    let (native, _) = artifact::load(&location(&native_dir)).await.unwrap();
    let scripted = ScriptedModel::load(&location(&scripted_dir)).await.unwrap();
    assert_eq!(scripted.spec, native.spec);
    let data = Dataset::load(&location(&root), &native.spec).await.unwrap();
    let rows = Tensor::arange(data.len() as i64, (tch::Kind::Int64, tch::Device::Cpu));
    let inputs = data.inputs.select(&rows);
    let expected = native.network.predict(&inputs);
    let actual = scripted.predict(&inputs).unwrap();
    let fan_ins = fan_ins(&native.spec, &native.architecture);
    assert_tensors_close(&actual, &expected, &fan_ins, "exported TorchScript vs the native model");
}
