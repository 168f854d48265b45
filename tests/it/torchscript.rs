//! TorchScript interop: a native model exported by scripts/export_torchscript.py
//! scores exactly like the native one when loaded back. Runs when
//! `AUDIENCE_PYTHON` names a Python with `torch` and `safetensors` (scripts/test.sh
//! sets it when such a Python is at ~/.cache/audience/pyenv); says so and
//! passes otherwise.

use audience::model::artifact;
use audience::model::dataset::Dataset;
use audience::model::torchscript::ScriptedModel;
use audience::model::train::TrainOptions;
use audience::model::workflow::train_and_save;
use tch::Tensor;

use crate::helpers::*;

#[tokio::test]
async fn torchscript_export_scores_like_the_native_model() {
    let Some(python) = std::env::var_os("AUDIENCE_PYTHON") else {
        eprintln!("skipped: AUDIENCE_PYTHON is not set (a Python with torch and safetensors)");
        return;
    };
    let (dir, root) = small_world().await;
    let native_dir = dir.path().join("native");
    let options = TrainOptions { max_epochs: 1, validation_days: 1, test_days: 1, ..TrainOptions::default() };
    train_and_save(&location(&root), &location(&native_dir), &options, None).await.unwrap();
    let scripted_dir = dir.path().join("scripted");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/export_torchscript.py");
    let export = std::process::Command::new(python).args([script, native_dir.to_str().unwrap(), scripted_dir.to_str().unwrap()]).output().unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));

    let (native, _) = artifact::load(&location(&native_dir)).await.unwrap();
    let scripted = ScriptedModel::load(&location(&scripted_dir)).await.unwrap();
    assert_eq!(scripted.spec, native.spec);
    let data = Dataset::load(&location(&root), &native.spec).await.unwrap();
    let rows = Tensor::arange(data.len() as i64, (tch::Kind::Int64, tch::Device::Cpu));
    let inputs = data.inputs.select(&rows);
    let expected = native.network.predict(&inputs);
    let actual = scripted.predict(&inputs).unwrap();
    let worst = (expected - actual).abs().max().double_value(&[]);
    assert!(worst < 1e-5, "largest difference {worst}");
}
