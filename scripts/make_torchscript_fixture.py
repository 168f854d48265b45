#!/usr/bin/env python3
"""Make the committed TorchScript fixture under tests/data/torchscript/.

The fixture lets the TorchScript interop test run on every CI run without a
Python with torch: a module scripted by PyTorch, the feature spec it encodes,
fixed inputs, and the probabilities PyTorch computed for them. The Rust test
(tests/it/torchscript.rs) loads the module through `ScriptedModel` and must
reproduce those probabilities.

Made with (any small native model will do; this is what was committed):

    audience generate --out /tmp/fx/world --users 600 --podcasts 150 --campaigns 30 \\
        --impressions 3000 --days 3 --seed 7
    audience train --data /tmp/fx/world --out /tmp/fx/model --epochs 1 \\
        --validation-days 1 --test-days 1
    python3 scripts/make_torchscript_fixture.py /tmp/fx/model tests/data/torchscript

Needs `torch` and `safetensors` (scripts/test.sh finds such a Python at
~/.cache/audience/pyenv).
"""

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROWS = 64


def inputs_for(features, generator):
    """Deterministic encoded inputs: bucket indices (the padding row included)
    and raw dense values in a plausible range, per side of the feature spec."""

    def side(spec):
        cat_columns = []
        for c in spec["categorical"]:
            cat_columns.append(torch.randint(0, c["buckets"] + 1, (ROWS, c["slots"]), generator=generator))
        cat = torch.cat(cat_columns, 1) if cat_columns else torch.zeros((ROWS, 0), dtype=torch.int64)
        dense = torch.rand((ROWS, len(spec["dense"])), generator=generator) * 3.0
        return cat.to(torch.int64), dense.to(torch.float32)

    user_cat, user_dense = side(features["user"])
    campaign_cat, campaign_dense = side(features["campaign"])
    pair = torch.rand((ROWS, len(features["pair"]["dense"])), generator=generator).to(torch.float32)
    return {
        "user_cat": user_cat,
        "user_dense": user_dense,
        "campaign_cat": campaign_cat,
        "campaign_dense": campaign_dense,
        "pair": pair,
    }


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    model_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    exporter = Path(__file__).with_name("export_torchscript.py")
    subprocess.run([sys.executable, str(exporter), str(model_dir), str(out_dir)], check=True)
    features = json.loads((out_dir / "features.json").read_text())
    module = torch.jit.load(str(out_dir / "model.pt"))
    module.eval()
    generator = torch.Generator().manual_seed(2601_02306)
    inputs = inputs_for(features, generator)
    with torch.no_grad():
        expected = module(
            inputs["user_cat"], inputs["user_dense"], inputs["campaign_cat"], inputs["campaign_dense"], inputs["pair"]
        )
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(out_dir / "inputs.safetensors"))
    save_file({"probabilities": expected.contiguous()}, str(out_dir / "expected.safetensors"))
    (out_dir / "README.md").write_text(
        "A TorchScript module scripted by PyTorch "
        f"{torch.__version__} from a small native model, its feature spec, {ROWS} fixed "
        "input rows and the probabilities PyTorch computed for them. Made by "
        "scripts/make_torchscript_fixture.py; used by tests/it/torchscript.rs.\n"
    )
    print(out_dir)


if __name__ == "__main__":
    main()
